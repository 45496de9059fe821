"""Example tests for the retention planner: each rule, each reason, each shape of image."""

from __future__ import annotations

import gc
from collections import Counter
from datetime import timedelta

import pytest

from tagkeeper.errors import UsageError
from tagkeeper.inventory import DOCKER_LIST, ManifestInfo, Version
from tagkeeper.retention.planner import (
    Channel,
    Decision,
    Plan,
    Policy,
    classify,
    format_duration,
    plan,
    referrer_subject,
)
from tests.unit.fakes import FakeRegistry, at, digest_of, sig_tag

NOW = at(10_000)  # every image below is days older than NOW unless said otherwise


def run(reg: FakeRegistry, policy: Policy | None = None, **kw: object) -> Plan:
    return plan(reg.versions(), policy or Policy.uniform(2), now=NOW, reader=reg, **kw)  # type: ignore[arg-type]


def decision(p: Plan, name: str) -> Decision:
    digest = name if name.startswith("sha256:") else digest_of(name)
    (found,) = [d for d in p.decisions if d.version.digest == digest]
    return found


def kept_names(p: Plan, names: list[str]) -> set[str]:
    return {n for n in names if decision(p, n).keep}


def multiarch(reg: FakeRegistry, name: str, tags: list[str], created: float) -> list[str]:
    """A buildx image: index -> amd64, arm64, and an attestation manifest per platform."""
    parts = [f"{name}-amd64", f"{name}-arm64", f"{name}-att-amd64", f"{name}-att-arm64"]
    for part in parts:
        reg.add(part, created=created)
    reg.add(name, tags=tags, created=created + 0.5, children=[digest_of(p) for p in parts])
    return [name, *parts]


# ------------------------------------------------------------------ classify


@pytest.mark.parametrize(
    ("tag", "channel"),
    [
        ("dev-abc1234", Channel.DEV),
        ("dev-" + "a" * 40, Channel.DEV),
        ("dev-abc", None),  # fewer than 4 hex digits
        ("dev-latest", None),  # not hex
        ("dev-ABC1234", None),  # git shas are lowercase
        ("pr-12", Channel.PR),
        ("pr-x", None),
        ("v1.2.3", Channel.RELEASE),
        ("1.2.3", Channel.RELEASE),
        ("v1.2.3_build.5", Channel.RELEASE),  # build metadata written with '_'
        ("v2.0.0-rc.1", Channel.PRERELEASE),
        ("1.0.0-1", Channel.PRERELEASE),
        ("1.2", None),
        ("v1", None),
        ("latest", None),
        ("nightly", None),
        (sig_tag(digest_of("x")), None),
    ],
)
def test_classify(tag: str, channel: Channel | None) -> None:
    assert classify(tag) == channel


def test_referrer_subject_reads_cosign_and_schema_tags() -> None:
    subject = digest_of("img")
    for kind in ("sig", "att", "sbom", ""):
        assert referrer_subject(sig_tag(subject, kind)) == subject
    assert referrer_subject("sha256-abc.sig") is None  # not a digest
    assert referrer_subject("v1.2.3") is None


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=1)) == "1h"
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(days=2, hours=3, minutes=4)) == "2d3h"
    assert format_duration(timedelta(0)) == "0s"


# ------------------------------------------------------------------ policy


def test_policy_uniform_and_validation() -> None:
    policy = Policy.uniform(7, untagged="keep")
    assert (policy.keep_dev, policy.keep_pr, policy.keep_release, policy.keep_prerelease) == (
        7,
        7,
        7,
        7,
    )
    assert policy.untagged == "keep"
    with pytest.raises(UsageError, match="--keep-dev"):
        Policy(keep_dev=-1)
    with pytest.raises(UsageError, match="min-age"):
        Policy(min_age=timedelta(minutes=-5))
    with pytest.raises(UsageError, match="untagged"):
        Policy(untagged="maybe")  # type: ignore[arg-type]


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        plan([], Policy(), now=NOW.replace(tzinfo=None), reader=FakeRegistry())


# ------------------------------------------------------------------ channels


def test_dev_keeps_newest_n_by_push_time_with_reasons() -> None:
    reg = FakeRegistry()
    names = [f"dev{i}" for i in range(7)]
    for i, name in enumerate(names):
        reg.add(name, tags=[f"dev-{i:07x}"], created=i * 10)
    p = run(reg, Policy.uniform(5))
    assert kept_names(p, names) == set(names[2:])
    newest = decision(p, "dev6")
    assert newest.rule == "newest-dev"
    assert newest.reason == "newest 5 of dev (#1: dev-0000006)"
    oldest = decision(p, "dev0")
    assert oldest.rule == "old-dev"
    assert oldest.reason == "older than the newest 5 dev images (#7: dev-0000000)"
    assert decision(p, "dev1").reason == "older than the newest 5 dev images (#6: dev-0000001)"


def test_pr_channel_counted_apart_from_dev() -> None:
    reg = FakeRegistry()
    for i in range(3):
        reg.add(f"pr{i}", tags=[f"pr-{i + 1}"], created=100 + i)
        reg.add(f"dev{i}", tags=[f"dev-{i:07x}"], created=i)  # older than every pr image
    p = run(reg, Policy(keep_dev=1, keep_pr=2))
    assert kept_names(p, ["pr0", "pr1", "pr2"]) == {"pr1", "pr2"}
    assert kept_names(p, ["dev0", "dev1", "dev2"]) == {"dev2"}
    assert decision(p, "pr0").rule == "old-pr"
    assert decision(p, "pr0").reason.startswith("older than the newest 2 pr images (#3: pr-1)")


def test_releases_ordered_by_semver_not_by_date() -> None:
    reg = FakeRegistry()
    # pushed in this order: 1.10.0 first (oldest), then 1.9.0, 1.2.0 and a hotfix 1.0.1 last
    reg.add("r1100", tags=["v1.10.0"], created=1)
    reg.add("r190", tags=["v1.9.0"], created=2)
    reg.add("r120", tags=["1.2.0"], created=3)
    reg.add("r101", tags=["v1.0.1"], created=4)
    reg.add("rc", tags=["v2.0.0-rc.1"], created=5)  # a prerelease: does not count as release
    p = run(reg, Policy.uniform(2))
    assert kept_names(p, ["r1100", "r190", "r120", "r101"]) == {"r1100", "r190"}
    assert decision(p, "r1100").reason == "newest 2 of release (#1: v1.10.0)"
    assert decision(p, "r101").rule == "old-release"
    assert decision(p, "r101").reason == "below the newest 2 releases (#4: v1.0.1)"
    assert decision(p, "rc").rule == "newest-prerelease"


def test_prerelease_counted_apart_and_by_precedence() -> None:
    reg = FakeRegistry()
    # 1.0.0-1 is a prerelease below 1.0.0 (PEP 440 would call it a post-release)
    reg.add("pre-num", tags=["1.0.0-1"], created=50)
    reg.add("final", tags=["1.0.0"], created=1)
    reg.add("alpha", tags=["v1.0.0-alpha"], created=40)
    reg.add("alpha1", tags=["v1.0.0-alpha.1"], created=30)
    reg.add("beta", tags=["v1.0.0-beta"], created=20)
    reg.add("rc1", tags=["v1.0.0-rc.1"], created=10)
    p = run(reg, Policy(keep_release=1, keep_prerelease=2))
    assert decision(p, "final").rule == "newest-release"
    # precedence: alpha < alpha.1 < beta < rc.1 ; numeric "1" < any alphanumeric identifier
    assert kept_names(p, ["pre-num", "alpha", "alpha1", "beta", "rc1"]) == {"rc1", "beta"}
    assert decision(p, "pre-num").reason == "below the newest 2 prereleases (#5: 1.0.0-1)"


def test_count_images_not_tags() -> None:
    reg = FakeRegistry()
    # one image with three dev tags must count once
    reg.add("multi", tags=["dev-aaaa111", "dev-aaaa222", "dev-aaaa333"], created=30)
    reg.add("second", tags=["dev-bbbb111"], created=20)
    reg.add("third", tags=["dev-cccc111"], created=10)
    p = run(reg, Policy.uniform(2))
    assert kept_names(p, ["multi", "second", "third"]) == {"multi", "second"}
    assert decision(p, "second").reason == "newest 2 of dev (#2: dev-bbbb111)"


def test_same_time_ties_broken_by_digest() -> None:
    reg = FakeRegistry()
    names = ["a", "b", "c"]
    for i, name in enumerate(names):
        reg.add(name, tags=[f"dev-{i:04d}"], created=5)
    p = run(reg, Policy.uniform(1))
    kept = kept_names(p, names)
    assert kept == {min(names, key=digest_of)}


def test_version_in_several_channels_is_kept_if_any_keeps_it_and_says_which_tag() -> None:
    reg = FakeRegistry()
    reg.add("release", tags=["v1.4.0", "dev-abc1234"], created=1)  # old as a dev image
    for i in range(3):
        reg.add(f"dev{i}", tags=[f"dev-{i:07x}"], created=10 + i)
    p = run(reg, Policy.uniform(2))
    d = decision(p, "release")
    assert d.keep
    assert d.rule == "newest-release"
    assert d.reason == "newest 2 of release (#1: v1.4.0); dev-abc1234 shares its digest"


# ------------------------------------------------------------------ other roots


def test_unmatched_tags_keep_by_default_and_delete_on_request() -> None:
    reg = FakeRegistry()
    reg.add("latest", tags=["latest", "nightly"], created=1)
    reg.add("dl", tags=["dev-latest"], created=2)
    reg.add("short", tags=["1.2"], created=3)
    p = run(reg)
    assert decision(p, "latest").rule == "unmatched-tag"
    assert decision(p, "latest").reason == (
        "latest, nightly match no retention channel (unmatched tags are kept)"
    )
    assert kept_names(p, ["dl", "short"]) == {"dl", "short"}
    p = run(reg, Policy.uniform(2, unmatched="delete"))
    assert kept_names(p, ["latest", "dl", "short"]) == set()
    assert decision(p, "dl").rule == "unmatched-delete"
    assert "dev-latest matches no retention channel" in decision(p, "dl").reason


def test_grace_period_protects_tagged_and_untagged() -> None:
    reg = FakeRegistry()
    for i in range(4):
        reg.add(f"dev{i}", tags=[f"dev-{i:07x}"], created=10_000 - 100 + i * 30)
    reg.add("fresh-garbage", created=10_000 - 20)
    reg.add("old-garbage", created=10_000 - 200)
    p = run(reg, Policy.uniform(1, min_age=timedelta(hours=1)))
    # dev0 (100 min old) goes; dev1 (70 min) goes; dev2 (40 min) is young; dev3 newest
    assert kept_names(p, ["dev0", "dev1", "dev2", "dev3"]) == {"dev2", "dev3"}
    assert decision(p, "dev2").rule == "grace-period"
    assert decision(p, "dev2").reason == "younger than the grace period of 1h (pushed 40m ago)"
    assert decision(p, "fresh-garbage").keep
    assert decision(p, "fresh-garbage").rule == "grace-period"
    assert decision(p, "old-garbage").rule == "garbage"


def test_protect_patterns_are_case_sensitive_globs() -> None:
    reg = FakeRegistry()
    reg.add("v1", tags=["v1.0.0"], created=1)
    reg.add("v2", tags=["v2.0.0"], created=2)
    reg.add("v3", tags=["v3.0.0"], created=3)
    reg.add("keepme", tags=["Keep-me"], created=4)
    p = run(reg, Policy.uniform(0, protect=("v1.*", "keep-*"), unmatched="delete"))
    assert decision(p, "v1").rule == "protect-pattern"
    assert decision(p, "v1").reason == "tag v1.0.0 matches protect pattern 'v1.*'"
    assert not decision(p, "v2").keep
    assert not decision(p, "keepme").keep  # 'keep-*' does not match 'Keep-me'


def test_protected_map_by_digest_and_by_tag() -> None:
    reg = FakeRegistry()
    for i in range(4):
        reg.add(f"r{i}", tags=[f"v1.{i}.0"], created=i)
    protected = {digest_of("r0"): "deployed to prod", "v1.1.0": "rollback target of prod"}
    p = run(reg, Policy.uniform(1), protected=protected)
    assert kept_names(p, ["r0", "r1", "r2", "r3"]) == {"r0", "r1", "r3"}
    assert decision(p, "r0").rule == "protected"
    assert decision(p, "r0").reason == "protected: deployed to prod"
    assert decision(p, "r1").reason == "protected: rollback target of prod (v1.1.0)"


def test_untagged_keep_or_delete() -> None:
    reg = FakeRegistry()
    reg.add("garbage", created=1)
    p = run(reg)
    assert decision(p, "garbage").rule == "garbage"
    assert decision(p, "garbage").reason == "untagged and unreachable from any kept image"
    p = run(reg, Policy.uniform(2, untagged="keep"))
    assert decision(p, "garbage").keep
    assert decision(p, "garbage").rule == "untagged-keep"


# ------------------------------------------------------------------ reachability


def test_multiarch_index_keeps_platforms_and_attestations() -> None:
    reg = FakeRegistry()
    new = multiarch(reg, "new", ["dev-0000002"], created=20)
    old = multiarch(reg, "old", ["dev-0000001"], created=10)
    p = run(reg, Policy.uniform(1))
    assert kept_names(p, new) == set(new)
    assert kept_names(p, old) == set()
    assert decision(p, "new-arm64").rule == "reachable"
    assert decision(p, "new-arm64").reason == f"child of {digest_of('new')[:19]} (dev-0000002)"
    assert decision(p, "old-amd64").rule == "garbage"
    # manifests are read for the kept index only; platform manifests need no read
    assert reg.manifest_reads == [digest_of("new")]


def test_index_without_media_type_in_listing_is_read_once() -> None:
    reg = FakeRegistry()
    reg.add("child", created=1, hide_media_type=True)
    reg.add("idx", tags=["v1.0.0"], created=2, children=[digest_of("child")], hide_media_type=True)
    p = run(reg)
    assert decision(p, "child").keep
    assert Counter(reg.manifest_reads) == {digest_of("idx"): 1, digest_of("child"): 1}
    assert Counter(reg.referrer_reads) == {digest_of("idx"): 1, digest_of("child"): 1}


def test_nested_index() -> None:
    reg = FakeRegistry()
    reg.add("leaf", created=1)
    reg.add("inner", created=2, children=[digest_of("leaf")], media_type=DOCKER_LIST)
    reg.add("outer", tags=["v1.0.0"], created=3, children=[digest_of("inner")])
    reg.add("stray", created=1)
    p = run(reg)
    assert kept_names(p, ["leaf", "inner", "outer", "stray"]) == {"leaf", "inner", "outer"}
    assert decision(p, "leaf").reason == f"child of {digest_of('inner')[:19]} (v1.0.0)"


def test_shared_child_between_kept_and_deleted_index_stays() -> None:
    reg = FakeRegistry()
    reg.add("shared", created=1)
    reg.add("only-old", created=1)
    reg.add(
        "old",
        tags=["dev-0000001"],
        created=2,
        children=[digest_of("shared"), digest_of("only-old")],
    )
    reg.add("new", tags=["dev-0000002"], created=3, children=[digest_of("shared")])
    p = run(reg, Policy.uniform(1))
    assert kept_names(p, ["shared", "only-old", "old", "new"]) == {"shared", "new"}


def test_cosign_tags_follow_their_subject() -> None:
    reg = FakeRegistry()
    keep = multiarch(reg, "keep", ["v2.0.0"], created=20)
    gone = multiarch(reg, "gone", ["v1.0.0"], created=10)
    for base, t in (("keep", 21), ("gone", 11)):
        subject = digest_of(base)
        reg.add(f"{base}-sig", tags=[sig_tag(subject)], created=t)
        reg.add(f"{base}-att", tags=[sig_tag(subject, "att")], created=t)
        reg.add(f"{base}-sbom", tags=[sig_tag(subject, "sbom")], created=t)
    # a signature of a platform manifest of the kept image (cosign sign --recursive)
    reg.add("keep-amd64-sig", tags=[sig_tag(digest_of("keep-amd64"))], created=21)
    p = run(reg, Policy.uniform(1))
    assert kept_names(p, keep) == set(keep)
    assert kept_names(p, gone) == set()
    for suffix in ("sig", "att", "sbom"):
        assert decision(p, f"keep-{suffix}").rule == "reachable"
        assert decision(p, f"gone-{suffix}").rule == "orphan-referrer"
    assert decision(p, "keep-amd64-sig").keep
    assert decision(p, "gone-sig").reason == f"signature of deleted {digest_of('gone')[:19]}"
    assert decision(p, "gone-att").reason == f"attestation of deleted {digest_of('gone')[:19]}"
    # delete order: referrer tags first, then the tagged subject, then untagged garbage
    order = [d.version.digest for d in p.delete]
    assert order.index(digest_of("gone-sig")) < order.index(digest_of("gone"))
    assert order.index(digest_of("gone")) < order.index(digest_of("gone-amd64"))


def test_signature_of_untagged_image_kept_by_policy_stays() -> None:
    reg = FakeRegistry()
    reg.add("untagged", created=1)
    reg.add("its-sig", tags=[sig_tag(digest_of("untagged"))], created=2)
    p = run(reg, Policy.uniform(2, untagged="keep"))
    assert decision(p, "untagged").rule == "untagged-keep"
    assert decision(p, "its-sig").keep
    assert decision(p, "its-sig").reason == f"referrer tag of kept {digest_of('untagged')[:19]}"
    p = run(reg, Policy.uniform(2, untagged="delete"))
    assert decision(p, "its-sig").rule == "orphan-referrer"
    assert decision(p, "its-sig").reason == f"signature of deleted {digest_of('untagged')[:19]}"


def test_orphan_signature_of_missing_subject() -> None:
    reg = FakeRegistry()
    reg.add("sig", tags=[sig_tag(digest_of("nowhere"))], created=1)
    p = run(reg)
    assert decision(p, "sig").rule == "orphan-referrer"
    assert "which is not in the repository" in decision(p, "sig").reason


def test_signature_of_a_signature_is_deleted_first() -> None:
    reg = FakeRegistry()
    reg.add("img", tags=["dev-0000001"], created=1)
    reg.add("newer", tags=["dev-0000002"], created=2)
    reg.add("sig", tags=[sig_tag(digest_of("img"))], created=5)
    reg.add("sigsig", tags=[sig_tag(digest_of("sig"))], created=3)  # older, but depends
    p = run(reg, Policy.uniform(1))
    order = [d.version.digest for d in p.delete]
    assert order[:3] == [digest_of("sigsig"), digest_of("sig"), digest_of("img")]


def test_oci_referrers_follow_their_subject() -> None:
    reg = FakeRegistry()
    reg.add("new", tags=["v2.0.0"], created=20)
    reg.add("old", tags=["v1.0.0"], created=10)
    reg.add("sbom-new", created=21, subject=digest_of("new"))
    reg.add("sbom-old", created=11, subject=digest_of("old"))
    p = run(reg, Policy.uniform(1))
    assert decision(p, "sbom-new").rule == "reachable"
    assert decision(p, "sbom-new").reason == f"referrer of {digest_of('new')[:19]} (v2.0.0)"
    assert decision(p, "sbom-old").rule == "garbage"
    # referrers are asked only for kept images
    assert reg.referrer_reads == [digest_of("new"), digest_of("sbom-new")]


def test_missing_child_is_a_warning_not_a_delete() -> None:
    reg = FakeRegistry()
    reg.add("idx", tags=["v1.0.0"], created=2, children=[digest_of("gone-child")])
    p = run(reg)
    assert decision(p, "idx").keep
    assert len(p.decisions) == 1
    assert p.unreadable == ()
    assert p.warnings == (
        f"kept image {digest_of('idx')[:19]} (v1.0.0) references "
        f"{digest_of('gone-child')[:19]} (child), which is not in the repository",
    )


def test_an_unlisted_child_is_read_and_what_it_lists_is_kept() -> None:
    reg = FakeRegistry()
    reg.add("platform", tags=["dev-0000001"], created=1)
    reg.add("hidden", created=1, children=[digest_of("platform")], listed=False)
    reg.add("idx", tags=["v1.0.0"], created=2, children=[digest_of("hidden")])
    p = run(reg, Policy(keep_dev=0, keep_release=1))
    assert decision(p, "platform").keep
    assert decision(p, "platform").rule == "reachable"
    assert p.warnings == (
        f"kept image {digest_of('idx')[:19]} (v1.0.0) references "
        f"{digest_of('hidden')[:19]} (child), which the listing does not show; "
        "what it lists is kept",
    )


def test_unreadable_manifest_fails_closed() -> None:
    reg = FakeRegistry()
    reg.add("child", created=5)
    reg.add("kept", tags=["dev-0000005"], created=6, children=[digest_of("child")])
    reg.add("newer", tags=["dev-0000009"], created=20)
    reg.add("old-dev", tags=["dev-0000001"], created=1)  # could be a child of "kept"
    reg.add("late-dev", tags=["dev-0000007"], created=7)  # pushed after "kept": cannot be
    reg.add("garbage", created=2)
    reg.add("orphan-sig", tags=[sig_tag(digest_of("nowhere"))], created=2)
    reg.unreadable[digest_of("kept")] = "500 Internal Server Error"
    p = run(reg, Policy(keep_dev=1), protected={"dev-0000005": "deployed to prod"})
    assert p.unreadable == (digest_of("kept"),)
    assert any("could not be read: 500 Internal Server Error" in w for w in p.warnings)
    for name in ("child", "garbage", "orphan-sig", "old-dev"):
        assert decision(p, name).keep, name
        assert decision(p, name).rule == "unreadable"
        assert digest_of("kept")[:19] in decision(p, name).reason
    assert decision(p, "late-dev").rule == "old-dev"
    assert [d.version.digest for d in p.delete] == [digest_of("late-dev")]


def test_unreadable_referrers_keep_untagged_and_signatures() -> None:
    reg = FakeRegistry()
    reg.add("kept", tags=["v1.0.0"], created=1)
    reg.add("garbage", created=2)
    reg.add("old-dev", tags=["dev-0000001"], created=0)
    reg.unreadable_referrers[digest_of("kept")] = "timeout"
    p = run(reg, Policy(keep_dev=0))
    assert p.unreadable == (digest_of("kept"),)
    assert decision(p, "garbage").rule == "unreadable"
    # children are known (the manifest was read): tagged images follow their own rules
    assert decision(p, "old-dev").rule == "old-dev"


def test_each_manifest_read_at_most_once_and_only_for_kept() -> None:
    reg = FakeRegistry()
    reg.add("shared", created=1, hide_media_type=True)
    reg.add("a", tags=["v1.0.0"], created=2, children=[digest_of("shared")])
    reg.add("b", tags=["v1.1.0"], created=3, children=[digest_of("shared")])
    reg.add("old", tags=["dev-0000001"], created=0, children=[digest_of("shared")])
    run(reg, Policy(keep_dev=0))
    assert Counter(reg.manifest_reads) == {
        digest_of("a"): 1,
        digest_of("b"): 1,
        digest_of("shared"): 1,
    }
    assert digest_of("old") not in reg.referrer_reads


def test_duplicate_digest_in_listing_is_merged() -> None:
    reg = FakeRegistry()
    v = reg.add("img", tags=["v1.0.0"], created=1)
    twin = Version(v.digest, frozenset({"dev-0000001"}), at(0))
    p = plan([v, twin], Policy.uniform(1), now=NOW, reader=reg)
    (d,) = p.decisions
    assert d.version.tags == {"v1.0.0", "dev-0000001"}
    assert any("listed 2 times" in w for w in p.warnings)


# ------------------------------------------------------------------ plan shape


def test_delete_order_tagged_newest_first_then_untagged() -> None:
    reg = FakeRegistry()
    reg.add("keep", tags=["dev-0000009"], created=100)
    reg.add("g1", created=1)
    reg.add("d1", tags=["dev-0000001"], created=2)
    reg.add("g2", created=3)
    reg.add("d2", tags=["dev-0000002"], created=4)
    p = run(reg, Policy.uniform(1))
    assert [d.version.digest for d in p.delete] == [digest_of(n) for n in ("d2", "d1", "g2", "g1")]
    assert [d.version.digest for d in p.keep] == [digest_of("keep")]


def test_to_json_shape() -> None:
    reg = FakeRegistry()
    reg.add("a", tags=["v1.0.0", "latest"], created=1, key="123")
    reg.add("b", created=0)
    data = run(reg).to_json()
    assert set(data) == {"keep", "delete", "warnings", "unreadable"}
    keep, delete = data["keep"], data["delete"]
    assert isinstance(keep, list)
    assert isinstance(delete, list)
    (kept,) = keep
    assert kept == {
        "digest": digest_of("a"),
        "tags": ["latest", "v1.0.0"],
        "created": "2024-06-01T12:01:00+00:00",
        "rule": "newest-release",
        "reason": "newest 2 of release (#1: v1.0.0)",
        "key": "123",
    }
    (deleted,) = delete
    assert deleted["rule"] == "garbage"
    assert data["warnings"] == []
    assert data["unreadable"] == []


def test_empty_repository() -> None:
    p = run(FakeRegistry())
    assert p.decisions == ()
    assert p.delete == ()
    assert p.to_json()["delete"] == []


def test_at_equal_push_times_a_known_index_is_deleted_before_the_rest() -> None:
    # an OCI registry dates an index by its newest platform image: all three tie
    reg = FakeRegistry()
    names = ("v1-arm64", "v1-amd64")  # v1-arm64's digest sorts before the index's
    for name in names:
        reg.add(name, created=10)
    reg.add("v1", created=10, children=[digest_of(n) for n in names])
    reg.add("list", created=10, children=[digest_of("v1-arm64")], media_type=DOCKER_LIST)
    assert digest_of("v1-arm64") < min(digest_of("v1"), digest_of("list"))
    p = plan(reg.versions(), Policy.uniform(1, min_age=timedelta(0)), now=at(100), reader=reg)
    order = [d.version.digest for d in p.delete]
    # both kinds of index first (between them by digest), then the platform images
    indexes = sorted([digest_of("v1"), digest_of("list")])
    assert order == indexes + sorted(digest_of(n) for n in names)


def test_at_equal_push_times_an_unknown_media_type_falls_back_to_the_digest() -> None:
    # the documented residual risk: GHCR's listing hides media types, so nothing tells
    # the index from its platform images at equal times (the executor re-plans around
    # an index that stays, but cannot undo a child deleted before it)
    reg = FakeRegistry()
    reg.add("v1-arm64", created=10, hide_media_type=True)
    reg.add("v1", created=10, children=[digest_of("v1-arm64")], hide_media_type=True)
    p = plan(reg.versions(), Policy.uniform(1, min_age=timedelta(0)), now=at(100), reader=reg)
    assert [d.version.digest for d in p.delete] == sorted([digest_of("v1"), digest_of("v1-arm64")])
    assert reg.manifest_reads == []  # deleted versions are not read to find out


def test_at_equal_push_times_the_later_push_goes_first_when_the_backend_knows_it() -> None:
    # GHCR: no media type, but version ids grow with every push and an index is pushed
    # after its platform images
    from dataclasses import replace

    reg = FakeRegistry()
    reg.add("v1-arm64", created=10, hide_media_type=True)
    reg.add("v1", created=10, children=[digest_of("v1-arm64")], hide_media_type=True)
    child, index = digest_of("v1-arm64"), digest_of("v1")
    pushed = {child: 41, index: 42}
    versions = [replace(v, sequence=pushed[v.digest]) for v in reg.versions()]
    for ordering in (versions, versions[::-1]):
        p = plan(ordering, Policy.uniform(1, min_age=timedelta(0)), now=at(100), reader=reg)
        assert [d.version.digest for d in p.delete] == [index, child]


def test_equal_push_times_rank_dev_images_by_push_order_when_known() -> None:
    from dataclasses import replace

    reg = FakeRegistry()
    names = ["a", "b", "c"]
    for i, name in enumerate(names):
        reg.add(name, tags=[f"dev-{i:04d}"], created=5)
    # pushed in digest order: the latest push has the highest digest, which a tie broken
    # by digest alone would rank last
    order = sorted(names, key=digest_of)
    versions = [
        replace(v, sequence=order.index(n))
        for n in names
        for v in reg.versions()
        if v.digest == digest_of(n)
    ]
    p = plan(versions, Policy.uniform(1), now=at(100), reader=reg)
    assert kept_names(p, names) == {order[-1]} != {min(names, key=digest_of)}


class _Exploding(FakeRegistry):
    """A reader that fails the way a bug would (not ManifestUnreadable)."""

    def manifest(self, digest: str) -> ManifestInfo:
        assert not gc.isenabled()  # paused while planning
        raise RuntimeError("boom")


@pytest.mark.parametrize("enabled", [True, False])
def test_plan_restores_the_garbage_collector_as_it_found_it(enabled: bool) -> None:
    reg = _Exploding()
    reg.add("idx", tags=["dev-0000001"], created=0, children=[digest_of("x")])
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(RuntimeError, match="boom"):
            plan(reg.versions(), Policy(), now=at(100), reader=reg)
        assert gc.isenabled() is enabled
        ok = FakeRegistry()
        ok.add("idx", tags=["dev-0000001"], created=0)
        plan(ok.versions(), Policy(), now=at(100), reader=ok)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
