"""Applying a retention plan to a backend, safely.

The plan already lists deletes in a safe order (tagged images first, referrers before
their subjects, parents before children where known). The executor adds the checks that
need the live repository:

- the safety cap is checked before anything is deleted;
- each version's tags are re-checked just before its delete: a version that is gone
  counts as done, a version whose tags moved (a CI job pushed meanwhile) is skipped;
- when a tagged delete fails, is refused or is skipped because it changed, that image
  stays, and the untagged versions it lists must stay with it. Without a ``replan``
  every untagged delete of the run is held back. With one (:func:`replanner`), a refused
  or changed image is made a protected root and the repository is planned again (the
  same reader: nothing is read twice through a :class:`MemoReader`); only the untagged
  versions that are still garbage in that plan are deleted. A tagged delete that
  *failed* (transient) still holds back every untagged delete: the next run retries it.
  The second plan decides the untagged deletes only; the tagged deletes of the run go
  on (a tagged version is an image of its own; one that is also the child of a refused
  index, as ``imagetools create`` over a single-arch tag makes, is not protected here);
- a rate limit stops the run cleanly; the report says what is done and what is left,
  and the next run continues from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tagkeeper.errors import CapExceeded, RateLimited
from tagkeeper.inventory import (
    Backend,
    DeleteResult,
    DeleteStatus,
    ManifestInfo,
    ManifestReader,
    ManifestUnreadable,
    Version,
)
from tagkeeper.retention import Plan, Policy, plan

__all__ = ["ApplyReport", "MemoReader", "Replan", "apply_plan", "check_cap", "replanner"]

Replan = Callable[[Sequence[Version], Mapping[str, str]], Plan]
"""Plans ``versions`` again with extra protected roots (digest -> reason)."""

CAP_HINT = "raise --max-delete or lower the backlog with a smaller run"


@dataclass(frozen=True)
class ApplyReport:
    """What a run did. ``skipped`` were not attempted: ``stopped`` (rate limit) or
    ``held_back`` (an untagged delete after a tagged one went wrong) says why.
    ``replanned`` says what planning again around refused or changed images decided."""

    results: tuple[DeleteResult, ...]
    skipped: tuple[Version, ...] = ()
    stopped: str | None = None
    held_back: str | None = None
    replanned: str | None = None

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
            "replanned": self.replanned,
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


class MemoReader:
    """A :class:`ManifestReader` that asks ``inner`` about each digest at most once.

    Answers and failures are both remembered, so a second plan of the same run (see
    :func:`replanner`) reads nothing again and sees the same unreadable manifests.
    """

    def __init__(self, inner: ManifestReader) -> None:
        self.inner = inner
        self._manifests: dict[str, ManifestInfo | ManifestUnreadable] = {}
        self._referrers: dict[str, tuple[str, ...] | ManifestUnreadable] = {}

    def manifest(self, digest: str) -> ManifestInfo:
        answer = self._manifests.get(digest)
        if answer is None:
            try:
                answer = self.inner.manifest(digest)
            except ManifestUnreadable as exc:
                answer = exc
            self._manifests[digest] = answer
        if isinstance(answer, ManifestUnreadable):
            raise ManifestUnreadable(answer.digest, answer.reason)
        return answer

    def referrers(self, digest: str) -> Sequence[str]:
        answer = self._referrers.get(digest)
        if answer is None:
            try:
                answer = tuple(self.inner.referrers(digest))
            except ManifestUnreadable as exc:
                answer = exc
            self._referrers[digest] = answer
        if isinstance(answer, ManifestUnreadable):
            raise ManifestUnreadable(answer.digest, answer.reason)
        return answer


def replanner(
    policy: Policy,
    *,
    now: datetime,
    reader: ManifestReader,
    protected: Mapping[str, str] | None = None,
) -> Replan:
    """A :data:`Replan` for :func:`apply_plan`: the planner with the first plan's inputs.

    Pass the ``policy``, ``now``, ``reader`` and ``protected`` the first plan was made
    with; wrap the reader in a :class:`MemoReader` before the first plan so that the
    second one reads nothing twice::

        reader = MemoReader(backend.reader)
        first = plan(versions, policy, now=now, reader=reader, protected=protected)
        report = apply_plan(
            first, backend,
            replan=replanner(policy, now=now, reader=reader, protected=protected),
        )
    """
    base = dict(protected or {})

    def again(versions: Sequence[Version], extra: Mapping[str, str]) -> Plan:
        merged = dict(base)
        for key, why in extra.items():
            merged[key] = f"{merged[key]}; {why}" if key in merged else why
        return plan(versions, policy, now=now, reader=reader, protected=merged)

    return again


def _short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def _name(version: Version) -> str:
    return ", ".join(sorted(version.tags)) or _short(version.digest)


@dataclass
class _Replanned:
    """What planning again around the images that stay decided for the untagged deletes."""

    garbage: frozenset[str]  # untagged digests still unreachable: deleted
    reasons: dict[str, str]  # untagged digest planned for deletion, now kept -> why
    summary: str


def _replan_untagged(
    plan_: Plan,
    replan: Replan,
    results: Sequence[DeleteResult],
    stays: Mapping[str, str],
    labels: Sequence[str],
) -> _Replanned:
    gone = {
        r.version.digest
        for r in results
        if r.status in (DeleteStatus.DELETED, DeleteStatus.ALREADY_GONE)
    }
    remaining = [d.version for d in plan_.decisions if d.version.digest not in gone]
    again = replan(remaining, stays)
    garbage = frozenset(d.version.digest for d in again.delete if not d.version.tags)
    kept = {d.version.digest: d.reason for d in again.keep}
    planned = [d.version.digest for d in plan_.delete if not d.version.tags]
    reasons = {digest: kept.get(digest, "kept") for digest in planned if digest not in garbage}
    summary = (
        f"planned again around {', '.join(labels)}, which stay: of the untagged "
        f"deletes, {len(reasons)} are kept (still reachable), "
        f"{len(planned) - len(reasons)} go ahead"
    )
    if again.unreadable:
        summary += f"; {len(again.unreadable)} manifests could not be read (fail closed)"
    return _Replanned(garbage, reasons, summary)


def apply_plan(
    plan: Plan,
    backend: Backend,
    *,
    max_delete: int | None = None,
    on_result: Callable[[DeleteResult], None] | None = None,
    replan: Replan | None = None,
) -> ApplyReport:
    """Delete what ``plan`` deletes, in its order, re-checking each version first.

    Raises :class:`CapExceeded` before deleting anything when the plan deletes more than
    ``max_delete``. A :class:`RateLimited` from the backend ends the run with
    ``stopped`` set; no exception escapes for it. Other backend errors (authentication,
    network) propagate.

    ``replan`` (see :func:`replanner`): when tagged deletes were refused or skipped as
    changed, the untagged deletes are decided again by a plan that protects those
    images, instead of all being held back.
    """
    todo = plan.delete
    check_cap(plan, max_delete, display=backend.display)
    results: list[DeleteResult] = []
    skipped: list[Version] = []
    held_back: str | None = None
    stopped: str | None = None
    stays: dict[str, str] = {}  # tagged versions refused or changed -> why they stay
    labels: list[str] = []  # the same, for people: "v1.0.0 (refused)"
    second: _Replanned | None = None
    reachable: list[Version] = []  # untagged deletes the second plan keeps
    for index, decision in enumerate(todo):
        version = decision.version
        if replan is not None and stays and not version.tags and second is None and not held_back:
            # the tagged deletes are done: decide the untagged ones again
            second = _replan_untagged(plan, replan, results, stays, labels)
        if not version.tags and held_back is not None:
            skipped.append(version)
            continue
        if not version.tags and second is not None and version.digest not in second.garbage:
            reachable.append(version)
            skipped.append(version)
            continue
        try:
            result = _attempt(backend, version)
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
        if held_back is not None or not _holds_back(version, result.status):
            continue
        stays_now = version.tags and result.status is not DeleteStatus.FAILED
        if replan is not None and stays_now and second is None:
            # refused or changed: the image stays; what it reaches is decided again once
            # the tagged deletes are done
            stays[version.digest] = _stays_reason(result)
            labels.append(f"{_name(version)} ({result.status.value})")
            continue
        held_back = (
            f"untagged deletes held back: {_name(version)} was {result.status.value}, and "
            "untagged versions may be its children"
        )
    replanned = None
    if second is not None:
        replanned = second.summary
        if reachable and held_back is None:
            example = reachable[0]
            held_back = (
                f"{len(reachable)} untagged deletes held back: an image that stays still "
                f"reaches them (e.g. {_short(example.digest)}: "
                f"{second.reasons.get(example.digest, 'kept')})"
            )
    return ApplyReport(tuple(results), tuple(skipped), stopped, held_back, replanned)


def _attempt(backend: Backend, version: Version) -> DeleteResult:
    """Re-check ``version``'s tags, then delete it (unless it is gone or changed)."""
    tags = backend.current_tags(version)
    if tags is None:
        return DeleteResult(version, DeleteStatus.ALREADY_GONE, "already deleted")
    if tags != version.tags:
        return DeleteResult(version, DeleteStatus.CHANGED, _changed_detail(version.tags, tags))
    return backend.delete(version)


def _stays_reason(result: DeleteResult) -> str:
    if result.status is DeleteStatus.REFUSED:
        return f"delete refused: {result.detail}" if result.detail else "delete refused"
    return f"changed since the plan: {result.detail}" if result.detail else "changed since the plan"


def _holds_back(version: Version, status: DeleteStatus) -> bool:
    # A tagged image that stays (failed, refused, changed) may list untagged children.
    # An untagged version that gained a tag is a live image now: same reason.
    if status is DeleteStatus.CHANGED:
        return True
    return bool(version.tags) and status in (DeleteStatus.FAILED, DeleteStatus.REFUSED)
