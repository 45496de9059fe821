"""Pruning one image: list, protect, plan, apply, report.

These are the steps ``tagkeeper prune`` takes for each ``--image``; the CLI adds only
options, confirmation and rendering. In a few lines::

    planned = plan_image(backend, Policy.uniform(5), now=datetime.now(UTC),
                         protected={"v2.3.1": "deployed to prod"})
    planned.check_cap()                      # CapExceeded: nothing deleted
    report = apply_planned(planned)          # re-plans around refused/failed deletes
    result = PruneResult(backend.display, planned.plan, report, planned.protected)
    print(result.exit_code, result.to_json())

or :func:`prune_image` for all of it at once.

The backend's optional hooks (:class:`~tagkeeper.inventory.Backend`: ``protected``,
``warnings``, ``check_delete``, ``expect_deletes``) are called on every backend; their
defaults do nothing. The safety cap is checked once (:meth:`PlannedPrune.check_cap`
before anything is asked, or inside :func:`apply_planned` when the caller did not), and
the delete hooks run once per image (:func:`prepare_deletes`, likewise).

Nothing here prints, reads the environment or the clock: ``now`` is an input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.errors import ExitCode, TagkeeperError
from tagkeeper.retention import executor as apply
from tagkeeper.retention.executor import ApplyReport, replanner
from tagkeeper.retention.planner import Plan, Policy, plan

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from tagkeeper.inventory import Backend, DeleteResult, ManifestReader, Version

__all__ = [
    "PlannedPrune",
    "PruneResult",
    "Snapshot",
    "apply_planned",
    "plan_image",
    "prepare_deletes",
    "prune_image",
    "scrubbed",
    "snapshot",
]


def _same(text: str) -> str:
    return text


@dataclass(frozen=True)
class PlannedPrune:
    """A plan for one image, with what :func:`apply_planned` needs to apply it safely.

    ``reader`` is the reader the plan was made with (the backend's: it reads each
    manifest once per run, so a re-plan during the apply reads nothing twice).
    ``protected`` is every protected reference the plan used (the caller's and the
    backend's own).
    """

    backend: Backend
    policy: Policy
    now: datetime
    plan: Plan
    protected: Mapping[str, str]
    reader: ManifestReader
    _done: set[str] = field(default_factory=set, repr=False, compare=False)

    def check_cap(self) -> None:
        """Raise :class:`~tagkeeper.errors.CapExceeded` when the plan deletes more than
        the policy's ``max_delete`` (checked once; later calls repeat the answer)."""
        if "cap" not in self._done:
            apply.check_cap(self.plan, self.policy.max_delete, display=self.backend.display)
            self._done.add("cap")


@dataclass(frozen=True)
class Snapshot:
    """An image's versions and the references that must stay, ready to plan.

    Made by :func:`snapshot`; :meth:`plan` plans it (any number of policies).
    """

    backend: Backend
    versions: Sequence[Version]
    protected: Mapping[str, str]

    def plan(self, policy: Policy, *, now: datetime, notes: Sequence[str] = ()) -> PlannedPrune:
        """Plan the snapshot; ``notes`` are warnings to add to the plan's own (after the
        backend's ``warnings``), e.g. an environment with no known deploy."""
        reader = self.backend.reader  # reads each manifest once: a re-plan reads nothing again
        the_plan = plan(self.versions, policy, now=now, reader=reader, protected=self.protected)
        noticed = (*self.backend.warnings, *notes)
        if noticed:
            the_plan = dataclasses.replace(the_plan, warnings=the_plan.warnings + noticed)
        return PlannedPrune(self.backend, policy, now, the_plan, self.protected, reader)


def snapshot(
    backend: Backend,
    *,
    protected: Mapping[str, str] | None = None,
    versions: Sequence[Version] | None = None,
) -> Snapshot:
    """List ``backend`` (unless ``versions`` already are its listing) and complete
    ``protected`` (reference -> reason) with the backend's ``protected`` hook."""
    listed = backend.versions() if versions is None else versions
    return Snapshot(backend, listed, backend.protected(dict(protected or {})))


def plan_image(
    backend: Backend,
    policy: Policy,
    *,
    now: datetime,
    protected: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> PlannedPrune:
    """List, protect and plan one image: ``snapshot(...).plan(...)``."""
    return snapshot(backend, protected=protected).plan(policy, now=now, notes=notes)


def prepare_deletes(planned: PlannedPrune) -> None:
    """Run the backend's ``check_delete`` and ``expect_deletes`` hooks, once per plan.

    Raises (e.g. deletes switched off) before anything is deleted. :func:`apply_planned`
    calls it when the caller did not; call it yourself to fail before asking anyone to
    confirm.
    """
    if "deletes" in planned._done:
        return
    planned.backend.check_delete()
    planned.backend.expect_deletes(d.version for d in planned.plan.delete)
    planned._done.add("deletes")


def apply_planned(
    planned: PlannedPrune,
    *,
    on_result: Callable[[DeleteResult], None] | None = None,
) -> ApplyReport:
    """Apply ``planned`` with the cap of its policy, re-planning around any version
    whose delete is refused, fails or finds it changed (see
    :func:`tagkeeper.retention.executor.apply_plan`). A backend error ends the run inside the
    report; :class:`~tagkeeper.errors.CapExceeded` and the backend's ``check_delete``
    raise before anything is deleted."""
    planned.check_cap()
    if planned.plan.delete:
        prepare_deletes(planned)
    return apply.apply_plan(  # looked up on the module, so tests can wrap it
        planned.plan,
        planned.backend,
        max_delete=None,  # checked above, once
        on_result=on_result,
        replan=replanner(
            planned.policy, now=planned.now, reader=planned.reader, protected=planned.protected
        ),
    )


def scrubbed(report: ApplyReport, scrub: Callable[[str], str]) -> ApplyReport:
    """``report`` with ``scrub`` applied to the words of the error that stopped it."""
    if report.stopped is None:
        return report
    return dataclasses.replace(
        report,
        stopped=scrub(report.stopped),
        error_hint=scrub(report.error_hint) if report.error_hint else None,
    )


@dataclass(frozen=True)
class PruneResult:
    """How pruning one image ended: its plan, what was applied, or the error.

    ``plan`` is None when the image could not be planned, ``report`` when nothing was
    applied (dry run, nothing to delete, or an error first). ``error`` is an error that
    ended this image's prune (a backend error during the apply is in ``report``).
    ``requests`` counts the backend's requests by kind.
    """

    image: str
    plan: Plan | None = None
    report: ApplyReport | None = None
    protected: Mapping[str, str] = field(default_factory=dict)
    error: TagkeeperError | None = None
    requests: Mapping[str, int] = field(default_factory=dict)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.plan.warnings if self.plan is not None else ()

    @property
    def exit_code(self) -> ExitCode:
        """The error's code, else the apply's (0 done, 6 partial, ...), else 0."""
        if self.error is not None:
            return self.error.exit_code
        return self.report.exit_code if self.report is not None else ExitCode.OK

    def to_json(self, scrub: Callable[[str], str] = _same) -> dict[str, Any]:
        """The per-image entry of ``tagkeeper prune --format json``.

        ``scrub`` is applied to error words (they may quote what a server said), e.g.
        ``Secret.scrub`` of the token in use.
        """
        entry: dict[str, Any] = {
            "image": self.image,
            "keep": [],
            "delete": [],
            "warnings": [],
            "unreadable": [],
            "applied": None,
            "error": None,
            "requests": dict(self.requests),
            "protected": dict(self.protected),
        }
        if self.plan is not None:
            entry.update(self.plan.to_json())
        if self.report is not None:
            report = scrubbed(self.report, scrub)
            entry["applied"] = report.to_json()
            if report.error_code not in (None, ExitCode.RATE_LIMITED):
                entry["error"] = entry["applied"]["error"]  # what was done is kept too
        if self.error is not None:
            entry["error"] = {
                "code": int(self.error.exit_code),
                "message": scrub(self.error.message),
                "hint": scrub(self.error.hint) if self.error.hint else None,
            }
        return entry


def prune_image(
    backend: Backend,
    policy: Policy,
    *,
    now: datetime,
    protected: Mapping[str, str] | None = None,
    dry_run: bool = False,
    on_result: Callable[[DeleteResult], None] | None = None,
) -> PruneResult:
    """Plan and (unless ``dry_run``) apply one image, as ``tagkeeper prune --yes`` does.

    Raises what planning raises and :class:`~tagkeeper.errors.CapExceeded` (nothing
    deleted); a backend error during the deletes ends up in the result's report.
    """
    planned = plan_image(backend, policy, now=now, protected=protected)
    planned.check_cap()
    report = None
    if planned.plan.delete and not dry_run:
        report = apply_planned(planned, on_result=on_result)
    return PruneResult(
        backend.display,
        planned.plan,
        report,
        planned.protected,
        requests=dict(backend.stats.by_kind),
    )
