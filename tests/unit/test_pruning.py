"""Pruning one image through the library, as ``tagkeeper prune`` does, on the fake registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import pytest

from tagkeeper.errors import AuthError, CapExceeded, ExitCode, RegistryError
from tagkeeper.retention.planner import Policy
from tagkeeper.retention.runner import PruneResult, apply_planned, plan_image, prune_image, snapshot
from tests.unit.fakes import FakeRegistry, at, digest_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tagkeeper.inventory import DeleteResult, Version
    from tagkeeper.retention.planner import Plan

R = TypeVar("R", bound=FakeRegistry)
NOW = at(10_000)  # every image is far past the one-hour grace period
ENTRY_KEYS = [
    "image",
    "keep",
    "delete",
    "warnings",
    "unreadable",
    "applied",
    "error",
    "requests",
    "protected",
]


def dev(i: int) -> str:
    return f"dev-{i:07x}"


class HookedRegistry(FakeRegistry):
    """The fake registry plus every optional hook a backend may offer, logged in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.in_use: dict[str, str] = {}
        self.notes: tuple[str, ...] = ()
        self.deletes_off: AuthError | None = None
        self.expected: list[str] = []

    def protected(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        self.calls.append("protected")
        return {**self.in_use, **(extra or {})}

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.notes

    def check_delete(self) -> None:
        self.calls.append("check_delete")
        if self.deletes_off is not None:
            raise self.deletes_off

    def expect_deletes(self, versions: Iterable[Version]) -> None:
        self.calls.append("expect_deletes")
        self.expected = sorted(v.digest for v in versions)

    def delete(self, version: Version) -> DeleteResult:
        self.calls.append("delete")
        return super().delete(version)


def five_dev_images(reg: R) -> R:
    for i in range(5):
        reg.add(dev(i), tags=[dev(i)], created=i)
    return reg


def refused_release() -> FakeRegistry:
    """An old multi-arch release the registry refuses to delete, a kept one, garbage."""
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
    reg.add("garbage", created=20)
    reg.refuse[digest_of("old")] = "the package has more than 5,000 downloads"
    return reg


def test_a_library_user_prunes_in_a_few_lines_and_the_apply_replans() -> None:
    reg = refused_release()
    planned = plan_image(reg, Policy(keep_release=1), now=NOW)
    report = apply_planned(planned)
    result = PruneResult(reg.display, planned.plan, report, planned.protected)
    left = {v.digest for v in reg.versions()}
    # the refused index stays, so its platform images must stay with it...
    assert reg.closure([digest_of("old")]) <= left
    # ...while unrelated garbage still goes: only a re-plan can tell the two apart (without
    # one, every untagged delete after the refusal is held back)
    assert reg.deleted == [digest_of("garbage")]
    assert report.replanned is not None
    assert "v1.0.0 (refused)" in report.replanned
    assert result.exit_code is ExitCode.PARTIAL  # a refusal: rerun (or look) later
    entry = result.to_json()
    assert list(entry) == ENTRY_KEYS  # the per-image entry of `prune --format json`
    assert entry["applied"]["counts"]["refused"] == 1
    assert entry["applied"]["counts"]["skipped"] == 2  # the two platform images
    assert entry["error"] is None
    assert {d["tags"][0] for d in entry["keep"] if d["tags"]} == {"v2.0.0"}


def test_prune_image_deletes_all_but_the_newest_and_a_dry_run_nothing() -> None:
    reg = five_dev_images(FakeRegistry())
    dry = prune_image(reg, Policy(keep_dev=2), now=NOW, dry_run=True)
    assert dry.report is None
    assert reg.deleted == []
    assert dry.exit_code is ExitCode.OK
    planned_deletes = {d["digest"] for d in dry.to_json()["delete"]}
    assert planned_deletes == {digest_of(dev(i)) for i in (0, 1, 2)}
    done = prune_image(reg, Policy(keep_dev=2), now=NOW)
    assert set(reg.deleted) == planned_deletes  # the dry run showed what the real run does
    assert done.exit_code is ExitCode.OK
    entry = done.to_json()
    assert entry["applied"]["counts"]["deleted"] == 3
    assert entry["requests"]["delete"] == 3


def test_the_backend_hooks_protect_warn_and_are_told_before_any_delete() -> None:
    reg = five_dev_images(HookedRegistry())
    reg.in_use = {digest_of(dev(1)): "used by container web (running)"}
    reg.notes = ("creation times of 2 images are unknown",)
    planned = plan_image(
        reg,
        Policy(keep_dev=1),
        now=NOW,
        protected={dev(2): "current in prod (ledger)"},
        notes=["nothing is known to be deployed to staging"],
    )
    assert dict(planned.protected) == {
        digest_of(dev(1)): "used by container web (running)",
        dev(2): "current in prod (ledger)",
    }
    kept = {d.version.digest: d.reason for d in planned.plan.keep}
    assert set(kept) == {digest_of(dev(i)) for i in (1, 2, 4)}
    assert "used by container web" in kept[digest_of(dev(1))]
    assert "current in prod" in kept[digest_of(dev(2))]
    # the backend's warnings, then the caller's notes, after the planner's own
    assert planned.plan.warnings[-2:] == (
        "creation times of 2 images are unknown",
        "nothing is known to be deployed to staging",
    )
    report = apply_planned(planned)
    assert report.exit_code is ExitCode.OK
    assert reg.calls == ["protected", "check_delete", "expect_deletes", "delete", "delete"]
    assert reg.expected == sorted(digest_of(dev(i)) for i in (0, 3))
    assert sorted(reg.deleted) == reg.expected


def test_a_backend_that_refuses_deletes_stops_before_the_first() -> None:
    reg = five_dev_images(HookedRegistry())
    reg.deletes_off = AuthError("the token may not delete", hint="grant delete:packages")
    planned = plan_image(reg, Policy(keep_dev=1), now=NOW)
    with pytest.raises(AuthError):
        apply_planned(planned)
    assert reg.delete_calls == []
    assert "expect_deletes" not in reg.calls


def test_the_cap_refuses_before_any_hook_or_delete() -> None:
    reg = five_dev_images(HookedRegistry())
    with pytest.raises(CapExceeded) as caught:
        prune_image(reg, Policy(keep_dev=1, max_delete=3), now=NOW)
    assert caught.value.exit_code is ExitCode.CAP
    assert "4 versions" in caught.value.message
    assert reg.calls == ["protected"]
    assert reg.delete_calls == []


def test_an_error_midway_is_in_the_result_with_its_code_and_scrubbed_words() -> None:
    reg = five_dev_images(FakeRegistry())
    reg.error_after = 1
    reg.error = RegistryError("the registry said: token s3cret expired", hint="renew s3cret")
    result = prune_image(reg, Policy(keep_dev=1), now=NOW, protected={})
    assert result.exit_code is ExitCode.REGISTRY
    entry = result.to_json(lambda text: text.replace("s3cret", "***"))
    assert entry["applied"]["counts"]["deleted"] == 1  # what was done is kept too
    assert entry["error"] == entry["applied"]["error"]
    assert entry["error"]["code"] == int(ExitCode.REGISTRY)
    assert "s3cret" not in str(entry)
    assert "token *** expired" in entry["error"]["message"]


def test_a_rate_limit_is_a_stop_to_rerun_not_an_error_entry() -> None:
    reg = five_dev_images(FakeRegistry())
    reg.rate_limit_after = 2
    result = prune_image(reg, Policy(keep_dev=1), now=NOW)
    assert result.exit_code is ExitCode.RATE_LIMITED
    entry = result.to_json()
    assert entry["error"] is None
    assert entry["applied"]["error"]["code"] == int(ExitCode.RATE_LIMITED)
    assert entry["applied"]["counts"] == {
        "deleted": 2,
        "already_gone": 0,
        "changed": 0,
        "refused": 0,
        "failed": 0,
        "skipped": 2,
    }


def test_an_error_before_planning_makes_an_entry_with_no_plan() -> None:
    result = PruneResult("registry.test/acme/app", error=AuthError("no", hint="log in"))
    assert result.exit_code is ExitCode.AUTH
    assert result.warnings == ()
    entry = result.to_json()
    assert list(entry) == ENTRY_KEYS
    assert entry["keep"] == []
    assert entry["applied"] is None
    assert entry["error"] == {"code": int(ExitCode.AUTH), "message": "no", "hint": "log in"}


def test_a_snapshot_plans_given_versions_without_listing_again() -> None:
    reg = five_dev_images(FakeRegistry())
    versions = reg.versions()
    snap = snapshot(reg, versions=versions, protected={dev(0): "pinned"})
    assert reg.stats.by_kind.get("list") == 1  # only the listing above
    planned = snap.plan(Policy(keep_dev=1), now=NOW)
    assert digest_of(dev(0)) in {d.version.digest for d in planned.plan.keep}
    assert len(planned.plan.delete) == 3


def test_the_cap_and_the_delete_hooks_run_once_however_often_they_are_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as `tagkeeper prune` does: the cap and the hooks before the confirmation, then
    # the apply, which must not ask the backend (or count the plan) again
    from tagkeeper.retention import executor
    from tagkeeper.retention.runner import prepare_deletes

    caps: list[int] = []
    real = executor.check_cap

    def counting(plan: Plan, max_delete: int | None, *, display: str = "") -> None:
        caps.append(len(plan.delete))
        real(plan, max_delete, display=display)

    monkeypatch.setattr(executor, "check_cap", counting)
    reg = five_dev_images(HookedRegistry())
    planned = plan_image(reg, Policy(keep_dev=1, max_delete=10), now=NOW)
    planned.check_cap()
    prepare_deletes(planned)
    report = apply_planned(planned)
    assert report.exit_code is ExitCode.OK
    assert caps == [4]
    assert reg.calls.count("check_delete") == 1
    assert reg.calls.count("expect_deletes") == 1
    assert len(reg.deleted) == 4


def test_a_backend_without_hooks_gets_the_defaults() -> None:
    reg = five_dev_images(FakeRegistry())  # overrides none of the optional hooks
    assert reg.protected({dev(0): "pinned"}) == {dev(0): "pinned"}
    assert reg.warnings == ()
    reg.check_delete()
    reg.expect_deletes(reg.versions())
    assert reg.resolve_tag(dev(3)) == digest_of(dev(3))
    assert reg.resolve_tag("nope") is None
    assert prune_image(reg, Policy(keep_dev=1), now=NOW).exit_code is ExitCode.OK
