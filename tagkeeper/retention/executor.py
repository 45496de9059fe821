"""Applying a retention plan to a backend, safely.

The plan already lists deletes in a safe order (tagged images first, referrers before
their subjects, parents before children where known). The executor adds the checks that
need the live repository:

- the safety cap is checked before anything is deleted;
- each version's tags are re-checked just before its delete: a version that is gone
  counts as done, a version whose tags moved (a CI job pushed meanwhile) is skipped;
- when the delete of a tagged version is refused, fails, or is skipped because its tags
  changed (or an untagged version gained a tag), that version still exists, and so must
  everything it reaches: its platform images (tagged ones too, as ``docker manifest
  create v1 v1-amd64 v1-arm64`` makes them), attestations and signatures. With a
  ``replan`` (:func:`replanner`; ``tagkeeper prune`` always passes one) the repository is
  planned again right away with every such version as a protected root (the same
  reader, which reads each manifest once per run: nothing is read twice), and every remaining
  delete, tagged or untagged, that the new plan keeps is skipped and reported with the
  reason. A version whose manifest cannot be read fails closed in that plan, as in the
  first one. Without a ``replan`` (library callers) the executor stays conservative:
  every untagged delete after such a version is held back, and tagged deletes go on;
- a rate limit, or any other :class:`~tagkeeper.errors.TagkeeperError` from the backend
  (network, registry, authentication), stops the run cleanly: the report says what is
  done and what is left, carries the error's exit code, and the next run continues.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagkeeper.errors import CapExceeded, ExitCode, RateLimited, TagkeeperError
from tagkeeper.inventory import (
    Backend,
    DeleteResult,
    DeleteStatus,
    ManifestReader,
    Version,
)
from tagkeeper.retention.planner import Plan, Policy, plan

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["ApplyReport", "Replan", "apply_plan", "check_cap", "replanner"]

Replan = Callable[[Sequence[Version], Mapping[str, str]], Plan]
"""Plans ``versions`` again with extra protected roots (digest -> reason)."""

CAP_HINT = "raise --max-delete or lower the backlog with a smaller run"


@dataclass(frozen=True)
class ApplyReport:
    """What a run did.

    ``skipped`` were not attempted; ``reasons`` says why for each (digest -> reason), and
    ``stopped`` (a rate limit or an error ended the run), ``held_back`` (deletes kept
    back because a version that stays may reach them) and ``replanned`` (what planning
    again around the versions that stay decided) sum it up. ``error_code`` is the exit
    code of the error that stopped the run, ``error_hint`` what to do about it.
    """

    results: tuple[DeleteResult, ...]
    skipped: tuple[Version, ...] = ()
    stopped: str | None = None
    held_back: str | None = None
    replanned: str | None = None
    reasons: Mapping[str, str] = field(default_factory=dict)
    error_code: ExitCode | None = None
    error_hint: str | None = None

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

    @property
    def exit_code(self) -> ExitCode:
        """The error's code when one stopped the run (rate limit 10, auth 4, registry 5),
        else 0 when complete and 6 (partial: rerun) when not."""
        if self.error_code is not None:
            return self.error_code
        return ExitCode.OK if self.complete else ExitCode.PARTIAL

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
            "skipped": [
                {
                    "digest": v.digest,
                    "tags": sorted(v.tags),
                    "reason": self.reasons.get(v.digest, ""),
                }
                for v in self.skipped
            ],
            "stopped": self.stopped,
            "held_back": self.held_back,
            "replanned": self.replanned,
            "error": None
            if self.error_code is None
            else {"code": int(self.error_code), "message": self.stopped, "hint": self.error_hint},
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


def replanner(
    policy: Policy,
    *,
    now: datetime,
    reader: ManifestReader,
    protected: Mapping[str, str] | None = None,
) -> Replan:
    """A :data:`Replan` for :func:`apply_plan`: the planner with the first plan's inputs.

    Pass the ``policy``, ``now``, ``reader`` and ``protected`` the first plan was made
    with; a backend's reader reads each manifest once per run, so the second plan reads
    nothing twice::

        reader = backend.reader
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


_DONE = (DeleteStatus.DELETED, DeleteStatus.ALREADY_GONE)


class _Run:
    """The state of one :func:`apply_plan` run."""

    def __init__(self, plan_: Plan, replan: Replan | None) -> None:
        self.plan = plan_
        self.replan = replan
        self.results: list[DeleteResult] = []
        self.gone: set[str] = set()
        self.skipped: list[Version] = []
        self.reasons: dict[str, str] = {}
        self.stopped: str | None = None
        self.error_code: ExitCode | None = None
        self.error_hint: str | None = None
        self.held_back: str | None = None  # without a replan: why untagged deletes wait
        self.stays: dict[str, str] = {}  # versions that stay after all -> why (roots)
        self.labels: list[str] = []  # the same, for people: "v1.0.0 (refused)"
        self.keep_now: dict[str, str] = {}  # kept by the latest re-plan -> why
        self.kept_back: list[Version] = []  # planned deletes skipped as the re-plan keeps them
        self.unreadable = 0  # manifests the latest re-plan could not read

    def skip(self, version: Version, reason: str) -> None:
        self.skipped.append(version)
        self.reasons[version.digest] = reason

    def record(self, result: DeleteResult) -> None:
        self.results.append(result)
        if result.status in _DONE:
            self.gone.add(result.version.digest)

    def stop(self, left: Sequence[Version], exc: TagkeeperError) -> None:
        done = len(self.gone)
        if isinstance(exc, RateLimited):
            self.stopped = (
                f"stopped by the rate limit after {done} deletes, {len(left)} left: "
                f"{exc.message}; rerun to continue"
            )
            reason = "not attempted: the rate limit stopped the run"
        else:
            self.stopped = (
                f"stopped by an error after {done} deletes, {len(left)} left: {exc.message}"
            )
            reason = "not attempted: an error stopped the run"
        self.error_code = exc.exit_code
        self.error_hint = exc.hint
        for version in left:
            self.skip(version, reason)

    def interrupt(self, left: Sequence[Version], in_flight: Version | None) -> None:
        """Ctrl-C: ``left`` were not attempted; ``in_flight``'s delete was sent and not
        answered (it may or may not have happened)."""
        done = len(self.gone)
        self.stopped = (
            f"interrupted after {done} deletes, {len(left)} left; rerun to continue "
            "(prune plans again from what the registry has then)"
        )
        self.error_code = ExitCode.INTERRUPTED
        for version in left:
            if version is in_flight:
                self.skip(
                    version,
                    "interrupted while its delete was sent: it may have been deleted",
                )
            else:
                self.skip(version, "not attempted: interrupted")

    def stays_after(self, version: Version, result: DeleteResult) -> None:
        """``version`` still exists after ``result``: protect what it reaches."""
        if self.replan is None:
            if self.held_back is None:
                self.held_back = (
                    f"untagged deletes held back: {_name(version)} was "
                    f"{result.status.value}, and untagged versions may be its children"
                )
            return
        self.stays[version.digest] = _stays_reason(result)
        self.labels.append(f"{_name(version)} ({result.status.value})")
        remaining = [d.version for d in self.plan.decisions if d.version.digest not in self.gone]
        again = self.replan(remaining, self.stays)
        self.keep_now = {d.version.digest: d.reason for d in again.keep}
        self.unreadable = len(again.unreadable)

    def report(self) -> ApplyReport:
        replanned = None
        held_back = self.held_back
        if self.labels:
            replanned = (
                f"planned again around {', '.join(self.labels)}, which stay: "
                f"{len(self.kept_back)} of the deletes left are kept (still reachable)"
            )
            if self.unreadable:
                replanned += f"; {self.unreadable} manifests could not be read (fail closed)"
            if self.kept_back:
                example = self.kept_back[0]
                held_back = (
                    f"{len(self.kept_back)} deletes held back: a version that stays still "
                    f"reaches them (e.g. {_name(example)}: "
                    f"{self.keep_now.get(example.digest, 'kept')})"
                )
        return ApplyReport(
            results=tuple(self.results),
            skipped=tuple(self.skipped),
            stopped=self.stopped,
            held_back=held_back,
            replanned=replanned,
            reasons=dict(self.reasons),
            error_code=self.error_code,
            error_hint=self.error_hint,
        )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) during :func:`apply_plan`; ``report`` says what was
    deleted and what is left (``stopped`` says so; ``error_code`` is
    :attr:`~tagkeeper.errors.ExitCode.INTERRUPTED`). Still a ``KeyboardInterrupt``, so
    code that does not know it stops as before."""

    def __init__(self, report: ApplyReport) -> None:
        super().__init__()
        self.report = report


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
    ``max_delete``. Any :class:`TagkeeperError` from the backend (rate limit, network,
    registry, authentication) ends the run: no exception escapes for it; the report has
    ``stopped`` set, lists what was done and what is left, and carries the error's exit
    code (:attr:`ApplyReport.exit_code`).

    ``replan`` (see :func:`replanner`): as soon as a delete of a tagged version is
    refused, fails or is skipped as changed, the repository is planned again with every
    such version as a protected root, and the remaining deletes that plan keeps are
    skipped. Without it, untagged deletes are held back after such a version.
    """
    if max_delete is not None:
        check_cap(plan, max_delete, display=backend.display)
    todo = plan.delete
    run = _Run(plan, replan)
    settled = 0  # todo[:settled] are deleted, skipped or answered
    in_flight: Version | None = None
    try:
        for index, decision in enumerate(todo):
            version = decision.version
            why = run.keep_now.get(version.digest)
            if why is not None:
                run.kept_back.append(version)
                run.skip(version, f"kept when planned again around what stays: {why}")
                settled = index + 1
                continue
            if run.held_back is not None and not version.tags:
                run.skip(version, run.held_back)
                settled = index + 1
                continue
            in_flight = version
            try:
                result = _attempt(backend, version)
            except TagkeeperError as exc:
                run.stop([d.version for d in todo[index:]], exc)
                break
            run.record(result)
            in_flight = None
            settled = index + 1
            if on_result is not None:
                on_result(result)
            if _stays(version, result.status):
                try:
                    run.stays_after(version, result)
                except TagkeeperError as exc:  # the re-plan could not read what it needed
                    run.stop([d.version for d in todo[index + 1 :]], exc)
                    break
    except KeyboardInterrupt:
        run.interrupt([d.version for d in todo[settled:]], in_flight)
        raise Interrupted(run.report()) from None
    return run.report()


def _attempt(backend: Backend, version: Version) -> DeleteResult:
    """Re-check ``version``'s tags, then delete it (unless it is gone or changed)."""
    tags = backend.current_tags(version)
    if tags is None:
        return DeleteResult(version, DeleteStatus.ALREADY_GONE, "already deleted")
    if tags != version.tags:
        return DeleteResult(version, DeleteStatus.CHANGED, _changed_detail(version.tags, tags))
    return backend.delete(version)


def _stays_reason(result: DeleteResult) -> str:
    what = {
        DeleteStatus.REFUSED: "delete refused",
        DeleteStatus.FAILED: "delete failed",
        DeleteStatus.CHANGED: "changed since the plan",
    }[result.status]
    return f"{what}: {result.detail}" if result.detail else what


def _stays(version: Version, status: DeleteStatus) -> bool:
    """Whether ``version`` is an image that still exists and may reach other versions.

    A tagged version whose delete failed, was refused or changed stays an image; so does
    an untagged version that gained a tag. An untagged version whose delete failed or
    was refused is still garbage: nothing kept reaches it, and what it reaches is
    decided by the plan as before.
    """
    if status is DeleteStatus.CHANGED:
        return True
    return bool(version.tags) and status in (DeleteStatus.FAILED, DeleteStatus.REFUSED)
