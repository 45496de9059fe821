"""Whatever the plan keeps, it keeps with everything it reaches.

Example tests for the rules that keep a version without a tag deciding it: untagged
versions kept by ``--untagged keep`` or by failing closed, and protected digests that
the listing does not show (an OCI registry lists no untagged manifest; a rollback target
pinned by digest is untagged once its tag is re-pushed).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tagkeeper.retention.planner import Plan, Policy, plan
from tests.unit.fakes import FakeRegistry, at, digest_of

NOW = at(10_000)
ZERO = timedelta(0)


def run(reg: FakeRegistry, policy: Policy, **kw: object) -> Plan:
    return plan(reg.versions(), policy, now=NOW, reader=reg, **kw)  # type: ignore[arg-type]


def rule_of(p: Plan, name: str) -> tuple[bool, str]:
    digest = digest_of(name)
    (found,) = [d for d in p.decisions if d.version.digest == digest]
    return found.keep, found.rule


def manifest_list_pattern(reg: FakeRegistry) -> None:
    """``docker manifest create app:latest app:v1.N.0-amd64 app:v1.N.0-arm64`` for three
    releases: the platform images carry their own (prerelease-looking) tags, and the two
    older lists lost ``latest`` to the newest one."""
    for n, minute in ((0, 10), (1, 20), (2, 30)):
        kids = []
        for arch in ("amd64", "arm64"):
            reg.add(f"v1.{n}-{arch}", tags=[f"v1.{n}.0-{arch}"], created=minute)
            kids.append(digest_of(f"v1.{n}-{arch}"))
        tags = ["latest"] if n == 2 else []
        reg.add(f"list{n}", tags=tags, created=minute + 1, children=kids, hide_media_type=True)


def test_untagged_keep_keeps_the_tagged_platform_images_its_lists_reach() -> None:
    reg = FakeRegistry()
    manifest_list_pattern(reg)
    p = run(reg, Policy(keep_prerelease=2, min_age=ZERO, untagged="keep"))
    # the old lists are kept (untagged-keep) and so is every platform image they list
    for n in (0, 1):
        assert rule_of(p, f"list{n}") == (True, "untagged-keep")
        for arch in ("amd64", "arm64"):
            assert rule_of(p, f"v1.{n}-{arch}") == (True, "reachable"), (n, arch)
    assert p.delete == ()
    reason = next(d.reason for d in p.keep if d.version.digest == digest_of("v1.0-amd64"))
    assert digest_of("list0")[:19] in reason


def test_untagged_delete_still_deletes_those_lists_and_their_platform_images() -> None:
    reg = FakeRegistry()
    manifest_list_pattern(reg)
    p = run(reg, Policy(keep_prerelease=2, min_age=ZERO, untagged="delete"))
    deleted = {d.version.digest for d in p.delete}
    for name in ("list0", "list1", "v1.0-amd64", "v1.0-arm64", "v1.1-amd64", "v1.1-arm64"):
        assert digest_of(name) in deleted, name
    # (garbage lists go after the tagged images they list: they are deleted too)
    assert rule_of(p, "list2") == (True, "unmatched-tag")


def test_untagged_keep_reads_only_untagged_versions_that_can_list_a_planned_delete() -> None:
    reg = FakeRegistry()
    # GHCR knows the push order (version ids): an untagged version pushed before every
    # tagged version the plan deletes cannot list any of them
    reg.add("ancient-garbage", created=1, key="1", sequence=1, hide_media_type=True)
    reg.add("old-dev", tags=["dev-0000001"], created=2, key="2", sequence=2)
    reg.add("new-dev", tags=["dev-0000002"], created=3, key="3", sequence=3)
    reg.add("later-garbage", created=4, key="4", sequence=4, hide_media_type=True)
    p = run(reg, Policy(keep_dev=1, min_age=ZERO, untagged="keep"))
    assert rule_of(p, "old-dev") == (False, "old-dev")
    assert digest_of("ancient-garbage") not in reg.manifest_reads
    assert digest_of("later-garbage") in reg.manifest_reads
    assert rule_of(p, "ancient-garbage") == (True, "untagged-keep")


def test_untagged_keep_reads_nothing_more_when_nothing_tagged_is_deleted() -> None:
    reg = FakeRegistry()
    reg.add("garbage", created=1, hide_media_type=True)
    reg.add("dev", tags=["dev-0000001"], created=2)
    run(reg, Policy(keep_dev=1, min_age=ZERO, untagged="keep"))
    assert digest_of("garbage") not in reg.manifest_reads


def test_an_untagged_index_kept_by_failing_closed_keeps_its_newer_tagged_children() -> None:
    reg = FakeRegistry()
    reg.add("broken", tags=["v1.0.0"], created=1, children=[digest_of("x")])
    reg.unreadable[digest_of("broken")] = "500 Internal Server Error"
    reg.add("platform", tags=["dev-0000005"], created=5)
    reg.add("list", created=6, children=[digest_of("platform")])  # untagged
    p = run(reg, Policy(keep_dev=0, keep_release=1, min_age=ZERO))
    assert p.unreadable == (digest_of("broken"),)
    assert rule_of(p, "list") == (True, "unreadable")  # every untagged version stays
    assert rule_of(p, "platform") == (True, "reachable")  # ... whole


# ------------------------------------------------------- protected, not in the listing


def rollback_target_shares_children_with_an_old_dev_index(reg: FakeRegistry) -> None:
    """OCI: v1.0.0@B was re-pushed (B is untagged, so the tag listing does not show it);
    B shares its platform images with an old dev index, which the listing shows with its
    children."""
    reg.add("amd64", created=1)
    reg.add("arm64", created=1)
    reg.add("att", created=1, listed=False)  # only B lists it: invisible
    reg.add("nested", created=1, children=[digest_of("deep")], listed=False)
    reg.add("deep", created=1)  # listed: an old dev index lists it too
    kids = [digest_of(n) for n in ("amd64", "arm64", "deep")]
    reg.add("dev-old", tags=["dev-0000001"], created=2, children=kids)
    b_kids = [digest_of(n) for n in ("amd64", "arm64", "att", "nested")]
    reg.add("B", created=3, children=b_kids, listed=False)
    reg.add("C", tags=["v1.0.0"], created=4)  # the re-pushed tag


def test_a_protected_digest_the_listing_does_not_show_keeps_what_it_reaches() -> None:
    reg = FakeRegistry()
    rollback_target_shares_children_with_an_old_dev_index(reg)
    protected = {
        digest_of("B"): "rollback target for prod (ledger)",
        "v1.0.0": "rollback target for prod (ledger)",
    }
    p = run(reg, Policy(keep_dev=0, min_age=ZERO), protected=protected)
    assert rule_of(p, "dev-old") == (False, "old-dev")
    for name in ("amd64", "arm64", "deep"):  # deep: through B's unlisted nested index
        keep, rule = rule_of(p, name)
        assert (keep, rule) == (True, "reachable"), name
    reason = next(d.reason for d in p.keep if d.version.digest == digest_of("amd64"))
    assert "rollback target for prod (ledger)" in reason
    assert p.unreadable == ()
    assert p.warnings == ()
    # read once each: B, and its unlisted nested index
    reads = Counter(reg.manifest_reads)
    assert reads[digest_of("B")] == 1
    assert reads[digest_of("nested")] == 1


def test_a_protected_digest_that_no_longer_exists_is_a_warning_only() -> None:
    reg = FakeRegistry()
    reg.add("dev-old", tags=["dev-0000001"], created=2)
    reg.add("garbage", created=1)
    gone = digest_of("gone")
    p = run(reg, Policy(keep_dev=0, min_age=ZERO), protected={gone: "current in prod"})
    assert {d.version.digest for d in p.delete} == {digest_of("dev-old"), digest_of("garbage")}
    assert p.unreadable == ()
    assert p.warnings == (
        f"protected {gone[:19]} (current in prod) is not in the repository; "
        "nothing is kept for it",
    )


def test_a_protected_digest_that_cannot_be_read_fails_closed_for_everything() -> None:
    reg = FakeRegistry()
    reg.add("dev-old", tags=["dev-0000001"], created=2)
    reg.add("dev-new", tags=["dev-0000002"], created=2000)
    reg.add("garbage", created=1)
    hidden = digest_of("hidden")
    reg.add("hidden", created=1, children=[digest_of("dev-new")], listed=False)
    reg.unreadable[hidden] = "503 Service Unavailable"
    p = run(reg, Policy(keep_dev=0, min_age=ZERO), protected={hidden: "current in prod"})
    assert p.unreadable == (hidden,)
    assert p.delete == ()  # its push time is unknown: any version could be its child
    assert {d.rule for d in p.keep} == {"unreadable"}


def test_tags_and_listed_digests_are_not_read_again_as_unlisted() -> None:
    reg = FakeRegistry()
    reg.add("v1", tags=["v1.0.0"], created=1)
    p = run(
        reg,
        Policy(keep_release=0, min_age=ZERO),
        protected={"v1.0.0": "current in prod", "v9.9.9": "gone tag", digest_of("v1"): "x"},
    )
    assert p.delete == ()
    assert p.warnings == ()
    assert reg.manifest_reads == []  # a plain image manifest: nothing to read
