"""Applying a retention plan to a backend, safely.

The plan already lists deletes in a safe order (tagged images first, referrers before
their subjects, parents before children where known). The executor adds the checks that
need the live repository:

- the safety cap is checked before anything is deleted;
- each version's tags are re-checked just before its delete: a version that is gone
  counts as done, a version whose tags moved (a CI job pushed meanwhile) is skipped;
- when a tagged delete fails, is refused or is skipped because it changed, the untagged
  deletes of the run are held back: they may be children of that image, which stays;
- a rate limit stops the run cleanly; the report says what is done and what is left,
  and the next run continues from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tagkeeper.errors import CapExceeded, RateLimited
from tagkeeper.inventory import Backend, DeleteResult, DeleteStatus, Version
from tagkeeper.retention import Plan

__all__ = ["ApplyReport", "apply_plan", "check_cap"]

CAP_HINT = "raise --max-delete or lower the backlog with a smaller run"


@dataclass(frozen=True)
class ApplyReport:
    """What a run did. ``skipped`` were not attempted: ``stopped`` (rate limit) or
    ``held_back`` (an untagged delete after a tagged one went wrong) says why."""

    results: tuple[DeleteResult, ...]
    skipped: tuple[Version, ...] = ()
    stopped: str | None = None
    held_back: str | None = None

    def _count(self, status: DeleteStatus) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def deleted(self) -> int:
        return self._count(DeleteStatus.DELETED)

    @property
    def already_gone(self) -> int:
        return self._count(DeleteStatus.ALREADY_GONE)

    @property
    def failed(self) -> int:
        return self._count(DeleteStatus.FAILED)

    @property
    def refused(self) -> int:
        return self._count(DeleteStatus.REFUSED)

    @property
    def changed(self) -> int:
        return self._count(DeleteStatus.CHANGED)

    @property
    def complete(self) -> bool:
        """Every planned delete is done (deleted now or already gone)."""
        return (
            not self.skipped
            and self.stopped is None
            and all(
                r.status in (DeleteStatus.DELETED, DeleteStatus.ALREADY_GONE) for r in self.results
            )
        )

    def to_json(self) -> dict[str, object]:
        return {
            "results": [
                {
                    "digest": r.version.digest,
                    "tags": sorted(r.version.tags),
                    "status": r.status.value,
                    "detail": r.detail,
                }
                for r in self.results
            ],
            "skipped": [{"digest": v.digest, "tags": sorted(v.tags)} for v in self.skipped],
            "stopped": self.stopped,
            "held_back": self.held_back,
            "counts": {
                "deleted": self.deleted,
                "already_gone": self.already_gone,
                "changed": self.changed,
                "refused": self.refused,
                "failed": self.failed,
                "skipped": len(self.skipped),
            },
        }


def check_cap(plan: Plan, max_delete: int | None, *, display: str = "the repository") -> None:
    """Raise :class:`CapExceeded` when ``plan`` deletes more than ``max_delete``."""
    if max_delete is not None and len(plan.delete) > max_delete:
        raise CapExceeded(
            f"the plan deletes {len(plan.delete)} versions of {display}, more than "
            f"--max-delete {max_delete}; nothing was deleted",
            hint=CAP_HINT,
        )


def _changed_detail(planned: frozenset[str], now: frozenset[str]) -> str:
    added = sorted(now - planned)
    removed = sorted(planned - now)
    parts = []
    if added:
        parts.append("now tagged " + ", ".join(added))
    if removed:
        parts.append("no longer tagged " + ", ".join(removed))
    return "tags changed since the plan (" + "; ".join(parts) + "): skipped"


def apply_plan(
    plan: Plan,
    backend: Backend,
    *,
    max_delete: int | None = None,
    on_result: Callable[[DeleteResult], None] | None = None,
) -> ApplyReport:
    """Delete what ``plan`` deletes, in its order, re-checking each version first.

    Raises :class:`CapExceeded` before deleting anything when the plan deletes more than
    ``max_delete``. A :class:`RateLimited` from the backend ends the run with
    ``stopped`` set; no exception escapes for it. Other backend errors (authentication,
    network) propagate.
    """
    todo = plan.delete
    check_cap(plan, max_delete, display=backend.display)
    results: list[DeleteResult] = []
    skipped: list[Version] = []
    held_back: str | None = None
    stopped: str | None = None
    for index, decision in enumerate(todo):
        version = decision.version
        if held_back is not None and not version.tags:
            skipped.append(version)
            continue
        try:
            tags = backend.current_tags(version)
            if tags is None:
                result = DeleteResult(version, DeleteStatus.ALREADY_GONE, "already deleted")
            elif tags != version.tags:
                result = DeleteResult(
                    version, DeleteStatus.CHANGED, _changed_detail(version.tags, tags)
                )
            else:
                result = backend.delete(version)
        except RateLimited as exc:
            left = [d.version for d in todo[index:]]
            skipped.extend(left)
            done = sum(
                1 for r in results if r.status in (DeleteStatus.DELETED, DeleteStatus.ALREADY_GONE)
            )
            stopped = (
                f"stopped by the rate limit after {done} deletes, {len(left)} left: "
                f"{exc.message}; rerun to continue"
            )
            break
        results.append(result)
        if on_result is not None:
            on_result(result)
        if held_back is None and _holds_back(version, result.status):
            what = ", ".join(sorted(version.tags)) or version.digest
            held_back = (
                f"untagged deletes held back: {what} was {result.status.value}, and untagged "
                "versions may be its children"
            )
    return ApplyReport(tuple(results), tuple(skipped), stopped, held_back)


def _holds_back(version: Version, status: DeleteStatus) -> bool:
    # A tagged image that stays (failed, refused, changed) may list untagged children.
    # An untagged version that gained a tag is a live image now: same reason.
    if status is DeleteStatus.CHANGED:
        return True
    return bool(version.tags) and status in (DeleteStatus.FAILED, DeleteStatus.REFUSED)
