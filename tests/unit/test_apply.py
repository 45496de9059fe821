"""The plan executor against the in-memory fake registry."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from tagkeeper.errors import AuthError, CapExceeded, ExitCode, RegistryError, TagkeeperError
from tagkeeper.inventory import DeleteResult, DeleteStatus, Version
from tagkeeper.retention.executor import ApplyReport, apply_plan, replanner
from tagkeeper.retention.planner import Plan, Policy, plan
from tests.unit.fakes import FakeRegistry, ReadOnce, at, digest_of, sig_tag

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

NOW = at(10_000)


def package() -> FakeRegistry:
    """Two multi-arch dev images (one kept), a signature of the old one, two old
    single-arch dev images and some garbage."""
    reg = FakeRegistry()
    for name, t in (("new", 50), ("old", 40)):
        parts = [f"{name}-amd64", f"{name}-arm64"]
        for part in parts:
            reg.add(part, created=t)
        tag = "dev-0000002" if name == "new" else "dev-0000001"
        reg.add(name, tags=[tag], created=t + 1, children=[digest_of(p) for p in parts])
    reg.add("old-sig", tags=[sig_tag(digest_of("old"))], created=42)
    reg.add("older", tags=["dev-000000a"], created=30)
    reg.add("oldest", tags=["pr-7"], created=20)
    reg.add("garbage", created=10)
    return reg


def make_plan(reg: FakeRegistry) -> Plan:
    return plan(reg.versions(), Policy(keep_dev=1, keep_pr=0), now=NOW, reader=reg)


def names(digests: list[str]) -> list[str]:
    table = {
        digest_of(n): n
        for n in (
            "new",
            "old",
            "old-amd64",
            "old-arm64",
            "old-sig",
            "older",
            "oldest",
            "garbage",
        )
    }
    return [table.get(d, d) for d in digests]


def test_deletes_in_plan_order_and_reports_progress() -> None:
    reg = package()
    p = make_plan(reg)
    seen: list[DeleteResult] = []
    report = apply_plan(p, reg, on_result=seen.append)
    # referrer tag, then tagged images newest first, then untagged newest first (the two
    # platform manifests were pushed at the same minute: by digest)
    platforms = sorted(["old-amd64", "old-arm64"], key=digest_of)
    assert names(reg.deleted) == ["old-sig", "old", "older", "oldest", *platforms, "garbage"]
    # each version re-checked just before its delete
    assert reg.checks == reg.delete_calls
    assert [r.version.digest for r in seen] == reg.deleted
    assert report.deleted == 7
    assert report.complete
    assert report.stopped is None
    assert {v.digest for v in reg.versions()} == {
        digest_of(n) for n in ("new", "new-amd64", "new-arm64")
    }


def test_cap_refuses_before_deleting_anything() -> None:
    reg = package()
    p = make_plan(reg)
    with pytest.raises(CapExceeded) as info:
        apply_plan(p, reg, max_delete=6)
    assert info.value.exit_code is ExitCode.CAP
    assert "deletes 7 versions of registry.test/acme/app, more than --max-delete 6" in str(
        info.value
    )
    assert info.value.hint == "raise --max-delete or lower the backlog with a smaller run"
    assert reg.checks == []
    assert reg.delete_calls == []
    assert apply_plan(p, reg, max_delete=7).deleted == 7  # exactly at the cap is fine


def test_changed_tags_are_skipped_and_hold_back_untagged() -> None:
    reg = package()
    p = make_plan(reg)

    def push_between_plan_and_apply(version: Version) -> None:
        if version.digest == digest_of("older") and "v9.0.0" not in version.tags:
            reg.push_tag("v9.0.0", version.digest)  # a CI job re-tagged it meanwhile

    reg.before_check = push_between_plan_and_apply
    report = apply_plan(p, reg)
    changed = [r for r in report.results if r.status is DeleteStatus.CHANGED]
    assert [r.version.digest for r in changed] == [digest_of("older")]
    assert "now tagged v9.0.0" in changed[0].detail
    assert digest_of("older") not in reg.delete_calls
    assert digest_of("older") in {v.digest for v in reg.versions()}
    # tagged deletes go on; untagged ones are held back and reported
    assert names(reg.deleted) == ["old-sig", "old", "oldest"]
    assert sorted(names([v.digest for v in report.skipped])) == [
        "garbage",
        "old-amd64",
        "old-arm64",
    ]
    assert report.held_back is not None
    assert "dev-000000a was changed" in report.held_back
    assert not report.complete


def test_untagged_version_that_gained_a_tag_is_changed() -> None:
    reg = package()
    p = make_plan(reg)
    reg.push_tag("rescued", digest_of("garbage"))
    report = apply_plan(p, reg)
    assert report.changed == 1
    assert digest_of("garbage") in {v.digest for v in reg.versions()}


def test_already_gone_is_success() -> None:
    reg = package()
    p = make_plan(reg)
    reg.remove(digest_of("older"))  # someone deleted it between plan and apply
    report = apply_plan(p, reg)
    gone = [r for r in report.results if r.status is DeleteStatus.ALREADY_GONE]
    assert [r.version.digest for r in gone] == [digest_of("older")]
    assert digest_of("older") not in reg.delete_calls
    assert report.complete
    assert report.deleted == 6
    assert report.already_gone == 1


def test_refused_tagged_delete_is_reported_and_holds_back_untagged() -> None:
    reg = package()
    p = make_plan(reg)
    reg.refuse[digest_of("old")] = "the package has a version with more than 5,000 downloads"
    report = apply_plan(p, reg)
    assert report.refused == 1
    (refused,) = [r for r in report.results if r.status is DeleteStatus.REFUSED]
    assert "5,000 downloads" in refused.detail
    # the index stays, so its platform manifests must stay too
    left = {v.digest for v in reg.versions()}
    assert {digest_of("old"), digest_of("old-amd64"), digest_of("old-arm64")} <= left
    assert names(reg.deleted) == ["old-sig", "older", "oldest"]
    assert report.held_back is not None
    assert len(report.skipped) == 3


def test_failed_untagged_delete_does_not_stop_the_others() -> None:
    reg = package()
    p = make_plan(reg)
    reg.fail[digest_of("old-amd64")] = "502 after 5 attempts"
    report = apply_plan(p, reg)
    assert report.failed == 1
    assert report.held_back is None
    assert digest_of("garbage") in reg.deleted


def test_rate_limit_stops_cleanly_and_a_rerun_finishes() -> None:
    reg = package()
    p = make_plan(reg)
    reg.rate_limit_after = 3
    report = apply_plan(p, reg)
    assert report.deleted == 3
    assert len(report.skipped) == 4
    assert report.stopped is not None
    assert "after 3 deletes, 4 left" in report.stopped
    assert not report.complete
    # the next run plans again on what is left and finishes the job
    reg.rate_limit_after = None
    rerun = apply_plan(make_plan(reg), reg)
    assert rerun.deleted == 4
    assert rerun.complete
    assert len(reg.versions()) == 3


def test_applying_twice_changes_nothing() -> None:
    reg = package()
    p = make_plan(reg)
    apply_plan(p, reg)
    before = reg.versions()
    again = apply_plan(p, reg)
    assert again.already_gone == len(p.delete)
    assert again.deleted == 0
    assert reg.versions() == before


def test_report_json() -> None:
    reg = package()
    reg.refuse[digest_of("oldest")] = "last version of the package"
    data = apply_plan(make_plan(reg), reg).to_json()
    assert data["counts"] == {
        "deleted": 3,  # old-sig, old, older; untagged held back after the refusal
        "already_gone": 0,
        "changed": 0,
        "refused": 1,
        "failed": 0,
        "skipped": 3,
    }
    assert data["stopped"] is None
    results = data["results"]
    assert isinstance(results, list)
    assert results[-1] == {
        "digest": digest_of("oldest"),
        "tags": ["pr-7"],
        "status": "refused",
        "detail": "last version of the package",
    }


def test_empty_plan() -> None:
    report = apply_plan(Plan(decisions=()), FakeRegistry(), max_delete=0)
    assert report == ApplyReport(results=())
    assert report.complete


# -- re-planning around images that stay ---------------------------------------------------


def refused_index_package() -> FakeRegistry:
    """An old multi-arch release (an index and two untagged platform images) that the
    registry will refuse to delete, a kept release, and untagged garbage of its own."""
    reg = FakeRegistry()
    for part in ("old-amd64", "old-arm64"):
        reg.add(part, created=10)
    reg.add(
        "old",
        tags=["v1.0.0"],
        created=11,
        children=[digest_of("old-amd64"), digest_of("old-arm64")],
    )
    reg.add("new", tags=["v2.0.0"], created=30)
    reg.add("older", tags=["v0.9.0"], created=5)
    reg.add("garbage", created=20)
    return reg


def applied_with_replan(reg: FakeRegistry) -> tuple[Plan, ApplyReport, ReadOnce]:
    policy = Policy(keep_release=1)
    versions = reg.versions()
    reader = reg.reader  # reads each digest once this run, as a backend's reader does
    first = plan(versions, policy, now=NOW, reader=reader)
    report = apply_plan(first, reg, replan=replanner(policy, now=NOW, reader=reader))
    return first, report, reader


def test_a_refused_index_keeps_its_children_and_the_other_garbage_goes() -> None:
    reg = refused_index_package()
    reg.refuse[digest_of("old")] = "the package has a version with more than 5,000 downloads"
    first, report, _ = applied_with_replan(reg)
    # the first plan meant to delete the index, its platform images and the garbage
    assert {d.version.digest for d in first.delete} == {
        digest_of(n) for n in ("old", "older", "old-amd64", "old-arm64", "garbage")
    }
    left = {v.digest for v in reg.versions()}
    # the refused index still exists, so both of its platform images must too
    assert {digest_of("old"), digest_of("old-amd64"), digest_of("old-arm64")} <= left
    assert reg.closure([digest_of("old")]) <= left  # v1.0.0 still pulls whole
    # unrelated garbage and the other old release are deleted all the same
    assert digest_of("garbage") in reg.deleted
    assert digest_of("older") in reg.deleted
    assert sorted(v.digest for v in report.skipped) == sorted(
        [digest_of("old-amd64"), digest_of("old-arm64")]
    )
    assert report.refused == 1
    assert not report.complete
    assert report.replanned is not None
    assert "v1.0.0 (refused)" in report.replanned
    assert "2 of the deletes left are kept (still reachable)" in report.replanned
    assert report.held_back is not None
    assert "child of" in report.held_back
    # each skipped version says why: it is a child of the index that stays
    for digest in (digest_of("old-amd64"), digest_of("old-arm64")):
        assert f"child of {digest_of('old')[:19]}" in report.reasons[digest]
    data = report.to_json()
    assert data["replanned"] == report.replanned
    assert data["error"] is None
    skipped = data["skipped"]
    assert isinstance(skipped, list)
    assert all("child of" in s["reason"] for s in skipped)
    assert data["counts"] == {
        "deleted": 2,
        "already_gone": 0,
        "changed": 0,
        "refused": 1,
        "failed": 0,
        "skipped": 2,
    }


def test_a_changed_index_keeps_its_children_and_the_other_garbage_goes() -> None:
    reg = refused_index_package()

    def retag(version: Version) -> None:
        if version.digest == digest_of("old") and "stable" not in version.tags:
            reg.push_tag("stable", version.digest)  # pushed between plan and apply

    reg.before_check = retag
    _, report, _ = applied_with_replan(reg)
    assert report.changed == 1
    left = {v.digest for v in reg.versions()}
    assert {digest_of("old-amd64"), digest_of("old-arm64")} <= left
    assert digest_of("garbage") not in left
    assert report.replanned is not None
    assert "v1.0.0 (changed)" in report.replanned


def test_an_unreadable_refused_index_fails_closed_on_every_untagged_delete() -> None:
    reg = refused_index_package()
    reg.refuse[digest_of("old")] = "refused"
    reg.unreadable[digest_of("old")] = "502 Bad Gateway"
    _, report, _ = applied_with_replan(reg)
    left = {v.digest for v in reg.versions()}
    # nothing tells which untagged versions the index lists: all of them stay, and so
    # does v0.9.0, pushed before the index (it could be one of its platform images)
    assert {digest_of(n) for n in ("old-amd64", "old-arm64", "garbage", "older")} <= left
    assert len(report.skipped) == 4
    assert "unreadable" in report.reasons[digest_of("older")]
    assert report.replanned is not None
    assert "could not be read" in report.replanned


def test_a_failed_tagged_delete_is_planned_around_like_a_refused_one() -> None:
    reg = refused_index_package()
    reg.fail[digest_of("old")] = "502 after 5 attempts"
    _, report, _ = applied_with_replan(reg)
    assert report.failed == 1
    assert report.replanned is not None
    assert "v1.0.0 (failed)" in report.replanned
    left = {v.digest for v in reg.versions()}
    # the index is still there (the next run retries it): its platforms stay with it
    assert reg.closure([digest_of("old")]) <= left
    assert digest_of("garbage") not in left
    assert digest_of("older") not in left
    assert report.exit_code is ExitCode.PARTIAL


def test_without_replan_a_failed_tagged_delete_holds_back_every_untagged_delete() -> None:
    reg = refused_index_package()
    reg.fail[digest_of("old")] = "502 after 5 attempts"
    p = plan(reg.versions(), Policy(keep_release=1), now=NOW, reader=reg)
    report = apply_plan(p, reg)
    assert report.failed == 1
    assert report.replanned is None
    assert digest_of("garbage") in {v.digest for v in reg.versions()}
    assert report.held_back is not None
    assert "v1.0.0 was failed" in report.held_back
    assert len(report.skipped) == 3
    assert all(report.reasons[v.digest] == report.held_back for v in report.skipped)


def test_nothing_to_replan_when_every_tagged_delete_succeeds() -> None:
    calls: list[int] = []
    reg = refused_index_package()
    policy = Policy(keep_release=1)
    first = plan(reg.versions(), policy, now=NOW, reader=reg)
    inner = replanner(policy, now=NOW, reader=reg)

    def counting(versions: Sequence[Version], extra: Mapping[str, str]) -> Plan:
        calls.append(1)
        return inner(versions, extra)

    report = apply_plan(first, reg, replan=counting)
    assert calls == []
    assert report.complete
    assert report.replanned is None
    assert {v.digest for v in reg.versions()} == {digest_of("new")}


# -- tagged platform images (docker manifest create v1.0.0 v1.0.0-amd64 v1.0.0-arm64) ----


def tagged_children_package() -> FakeRegistry:
    """Two multi-arch releases whose platform images carry tags of their own, all of
    one release pushed in the same minute (as a registry with coarse times dates them),
    an old release candidate and some garbage."""
    reg = FakeRegistry()
    for index, release, minute in (("v1", "v1.0.0", 10), ("v2", "v2.0.0", 20)):
        children = []
        for arch in ("amd64", "arm64"):
            reg.add(f"{index}-{arch}", tags=[f"{release}-{arch}"], created=minute)
            children.append(digest_of(f"{index}-{arch}"))
        reg.add(index, tags=[release], created=minute, children=children)
    reg.add("rc", tags=["v0.9.0-rc.1"], created=5)
    reg.add("garbage", created=15)
    return reg


V1_CHILDREN = (digest_of("v1-amd64"), digest_of("v1-arm64"))


def test_an_index_goes_before_its_tagged_children_pushed_in_the_same_minute() -> None:
    reg = tagged_children_package()
    # by digest alone a child would come first: the index must still lead
    assert min(V1_CHILDREN) < digest_of("v1")
    p = plan(reg.versions(), Policy(keep_release=1, keep_prerelease=0), now=NOW, reader=reg)
    order = [d.version.digest for d in p.delete]
    assert set(V1_CHILDREN) | {digest_of("v1")} <= set(order)
    assert all(order.index(digest_of("v1")) < order.index(c) for c in V1_CHILDREN)
    apply_plan(p, reg)
    assert all(
        reg.delete_calls.index(digest_of("v1")) < reg.delete_calls.index(c) for c in V1_CHILDREN
    )


@pytest.mark.parametrize("fault", ["refused", "failed", "changed"])
def test_an_index_that_stays_keeps_its_tagged_children(fault: str) -> None:
    reg = tagged_children_package()
    index = digest_of("v1")
    if fault == "refused":
        reg.refuse[index] = "more than 5,000 downloads"
    elif fault == "failed":
        reg.fail[index] = "502 after 5 attempts"
    else:

        def retag(version: Version) -> None:
            if version.digest == index and "stable" not in version.tags:
                reg.push_tag("stable", index)

        reg.before_check = retag
    policy = Policy(keep_release=1, keep_prerelease=0)
    versions = reg.versions()
    reader = reg.reader
    first = plan(versions, policy, now=NOW, reader=reader)
    assert set(V1_CHILDREN) <= {d.version.digest for d in first.delete}  # old prereleases
    inner = replanner(policy, now=NOW, reader=reader)
    roots: list[dict[str, str]] = []

    def recording(versions: Sequence[Version], extra: Mapping[str, str]) -> Plan:
        roots.append(dict(extra))
        return inner(versions, extra)

    report = apply_plan(first, reg, replan=recording)

    left = {v.digest for v in reg.versions()}
    assert reg.closure([index]) <= left  # v1.0.0 still pulls on both platforms
    assert not set(V1_CHILDREN) & set(reg.delete_calls)  # never even attempted
    # the rest of the plan goes ahead: the old candidate and the garbage are gone
    assert digest_of("rc") in reg.deleted
    assert digest_of("garbage") in reg.deleted
    assert {v.digest for v in report.skipped} == set(V1_CHILDREN)
    why = {"refused": "delete refused", "failed": "delete failed", "changed": "changed"}[fault]
    for child in V1_CHILDREN:
        assert f"child of {index[:19]}" in report.reasons[child]
    assert report.replanned is not None
    assert f"v1.0.0 ({fault})" in report.replanned
    (result,) = [r for r in report.results if r.version.digest == index]
    assert result.status.value == fault
    # planned again once, right after the index stayed, with it as a protected root
    assert len(roots) == 1
    assert list(roots[0]) == [index]
    assert roots[0][index].startswith(why)
    assert report.exit_code is ExitCode.PARTIAL


def test_a_tagged_child_deleted_without_replan_is_the_conservative_old_behaviour() -> None:
    # library callers that pass no replan: untagged deletes are held back, tagged ones
    # go on (the documented limit; prune always passes a replan)
    reg = tagged_children_package()
    reg.refuse[digest_of("v1")] = "refused"
    p = plan(reg.versions(), Policy(keep_release=1, keep_prerelease=0), now=NOW, reader=reg)
    report = apply_plan(p, reg)
    assert digest_of("garbage") in {v.digest for v in report.skipped}
    assert report.held_back is not None


# -- errors mid-run ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RegistryError("connection reset by ghcr.io", hint="check the network"), 5),
        (AuthError("401: the token expired", hint="refresh the token"), 4),
    ],
)
def test_an_error_midway_keeps_the_record_of_what_was_deleted(
    error: TagkeeperError, code: int
) -> None:
    reg = package()
    p = make_plan(reg)
    reg.error_after = 2
    reg.error = error
    report = apply_plan(p, reg)  # no exception: the report says what happened
    assert report.deleted == 2
    assert reg.deleted == [r.version.digest for r in report.results]
    assert len(report.skipped) == len(p.delete) - 2  # the one that raised is left too
    assert [v.digest for v in report.skipped] == [d.version.digest for d in p.delete[2:]]
    assert report.error_code == code
    assert int(report.exit_code) == code
    assert report.stopped is not None
    assert error.message in report.stopped
    assert "after 2 deletes, 5 left" in report.stopped
    assert not report.complete
    data = report.to_json()
    assert data["error"] == {"code": code, "message": report.stopped, "hint": error.hint}
    counts = data["counts"]
    assert isinstance(counts, dict)
    assert counts["deleted"] == 2
    assert counts["skipped"] == 5
    skipped = data["skipped"]
    assert isinstance(skipped, list)
    assert all(s["reason"] == "not attempted: an error stopped the run" for s in skipped)
    # the next run picks up where this one stopped
    reg.error_after = None
    assert apply_plan(make_plan(reg), reg).deleted == 5


def test_a_rate_limit_carries_its_exit_code() -> None:
    reg = package()
    reg.rate_limit_after = 1
    report = apply_plan(make_plan(reg), reg)
    assert report.exit_code is ExitCode.RATE_LIMITED
    assert report.error_hint == "rerun after the reset"


def test_an_error_in_the_replan_stops_before_deleting_anything_it_did_not_decide() -> None:
    reg = refused_index_package()
    reg.refuse[digest_of("old")] = "refused"
    p = plan(reg.versions(), Policy(keep_release=1), now=NOW, reader=reg)

    def broken(versions: Sequence[Version], extra: Mapping[str, str]) -> Plan:
        raise RegistryError("the registry went away while planning again")

    report = apply_plan(p, reg, replan=broken)
    assert report.exit_code is ExitCode.REGISTRY
    assert reg.delete_calls == [digest_of("old")]  # nothing after the refusal
    assert {v.digest for v in report.skipped} == {d.version.digest for d in p.delete[1:]}
    assert report.refused == 1


@pytest.mark.parametrize("kind", ["oci-subject", "cosign-tag"])
def test_a_push_meanwhile_keeps_the_referrers_of_what_it_lists(kind: str) -> None:
    # Garbage: an image and its signature. While the prune runs, CI pushes an index that
    # lists the image (buildx reuses an unchanged platform manifest). The signature is
    # deleted first (referrers go before their subjects): it must stay too, since the
    # image is whole again only with what refers to it.
    reg = FakeRegistry()
    reg.add("image", created=1)
    image = digest_of("image")
    if kind == "oci-subject":
        reg.add("signature", created=2, subject=image)
    else:
        reg.add("signature", created=2, tags=[sig_tag(image)])
    reg.add("kept", tags=["v1.0.0"], created=3)
    policy = Policy(keep_release=1, untagged="delete", min_age=timedelta(0))
    versions = reg.versions()
    first = plan(versions, policy, now=NOW, reader=reg.reader)
    assert {digest_of("signature"), image} <= {d.version.digest for d in first.delete}
    reg.listed_at_plan = frozenset(v.digest for v in versions)

    def ci_pushes(version: Version) -> None:
        del version
        if digest_of("ci") not in {v.digest for v in reg.versions()}:
            reg.add("ci", tags=["dev-00000ff"], created=4, children=[image])

    reg.before_check = ci_pushes
    report = apply_plan(first, reg, replan=replanner(policy, now=NOW, reader=reg.reader))
    left = {v.digest for v in reg.versions()}
    assert {image, digest_of("signature"), digest_of("ci")} <= left
    assert report.exit_code == 6  # skipped as changed: rerun later
