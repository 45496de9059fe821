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
from typing import TYPE_CHECKING, Any, Literal, cast

from tagkeeper.errors import ExitCode, TagkeeperError, worst
from tagkeeper.retention import executor as apply
from tagkeeper.retention.executor import ApplyReport, Interrupted, replanner
from tagkeeper.retention.planner import Plan, Policy, plan

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    import httpx

    from tagkeeper.config import Config
    from tagkeeper.inventory import Backend, DeleteResult, ManifestReader, Version
    from tagkeeper.registries.factory import BackendOptions, Kind
    from tagkeeper.rollback.sources import RollbackGuard
    from tagkeeper.versioning import Scheme

__all__ = [
    "PlannedPrune",
    "PruneListener",
    "PruneResult",
    "PruneRun",
    "RunInterrupted",
    "Snapshot",
    "apply_planned",
    "check_images",
    "configured_policy",
    "plan_image",
    "prepare_deletes",
    "prune_image",
    "prune_images",
    "scrubbed",
    "snapshot",
]


Choice = Literal["keep", "delete"]


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


# -- several images ------------------------------------------------------------------------


class PruneListener:
    """What a prune of several images tells its caller, and the one question it asks.

    Every method does nothing by default (and :meth:`confirm` says yes, as ``--yes``
    does); a caller overrides the ones it needs: the CLI prints the plan, asks on a
    terminal and draws a progress line. Images are named as the backend displays them.
    """

    def planned(self, image: str, plan: Plan) -> None:
        """The plan of ``image``, before anything is asked or deleted."""

    def warning(self, image: str, text: str) -> None:
        """Something the plan of ``image`` noticed (also in the plan's ``warnings``)."""

    def skipped(self, image: str, why: str) -> None:
        """Nothing is deleted from ``image``: ``nothing to delete`` or a dry run."""

    def confirm(self, image: str, count: int) -> bool:
        """Whether to delete ``count`` versions of ``image`` (``False``: stop the run)."""
        del image, count
        return True

    def started(self, image: str, total: int) -> None:
        """The deletes of ``image`` begin (``total`` planned)."""

    def progress(self, image: str, result: DeleteResult) -> None:
        """One delete of ``image`` ended, as ``result`` says."""

    def applied(self, image: str, report: ApplyReport) -> None:
        """The deletes of ``image`` ended (completely or not: see ``report``)."""

    def failed(self, image: str, error: TagkeeperError) -> None:
        """The prune of ``image`` ended with ``error`` (the run goes on with the next
        image, unless the error is :class:`~tagkeeper.errors.Aborted`)."""

    def interrupted(self, image: str, report: ApplyReport | None) -> None:
        """Ctrl-C stopped the prune of ``image``: ``report`` says what was deleted and
        what is left (``None``: before any delete)."""

    def not_started(self, image: str) -> None:
        """The run was interrupted before it came to ``image``."""


@dataclass(frozen=True)
class PruneRun:
    """How a prune of several images ended: one :class:`PruneResult` per image, in order.

    ``left``: images a run of many packages did not reach (``stopped`` says why: the
    rate-limit budget; :mod:`tagkeeper.retention.packages`). ``warnings``: what selecting
    the images noticed.
    """

    results: tuple[PruneResult, ...]
    dry_run: bool = False
    interrupted: bool = False  # Ctrl-C stopped the run (the later images did not start)
    left: tuple[str, ...] = ()
    stopped: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        """The worst exit code of the images (:func:`tagkeeper.errors.worst`);
        :attr:`~tagkeeper.errors.ExitCode.INTERRUPTED` when Ctrl-C stopped the run, 10
        when it stopped on the rate-limit budget."""
        code = ExitCode.RATE_LIMITED if self.stopped else ExitCode.OK
        if self.interrupted:
            code = worst(code, ExitCode.INTERRUPTED)
        for result in self.results:
            code = worst(code, result.exit_code)
        return code

    @property
    def planned(self) -> int:
        """Versions the plans delete (what a dry run would delete)."""
        return sum(len(r.plan.delete) for r in self.results if r.plan is not None)

    @property
    def kept(self) -> int:
        return sum(len(r.plan.keep) for r in self.results if r.plan is not None)

    @property
    def deleted(self) -> int:
        """Versions actually deleted (0 in a dry run)."""
        return sum(r.report.deleted for r in self.results if r.report is not None)

    @property
    def requests(self) -> int:
        """Requests the images' backends sent."""
        return sum(sum(r.requests.values()) for r in self.results)

    def totals(self) -> dict[str, int]:
        """The whole run in numbers: images pruned, failed and left, versions kept,
        planned for deletion and deleted, requests sent."""
        return {
            "images": len(self.results),
            "failed": sum(1 for r in self.results if r.exit_code is not ExitCode.OK),
            "left": len(self.left),
            "kept": self.kept,
            "planned": self.planned,
            "deleted": self.deleted,
            "requests": self.requests,
        }

    def to_json(self, scrub: Callable[[str], str] = _same) -> dict[str, Any]:
        """The document ``tagkeeper prune --format json`` prints."""
        return {
            "images": [r.to_json(scrub) for r in self.results],
            "dry_run": self.dry_run,
            "total": self.totals(),
            "left": list(self.left),
            "stopped": scrub(self.stopped) if self.stopped else None,
            "warnings": [scrub(w) for w in self.warnings],
        }


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`prune_images`; ``run`` is what was done: the images pruned,
    the one interrupted (its report lists what was deleted and what is left), none of
    the later ones. Still a ``KeyboardInterrupt``, so a caller that does not know it
    stops as before."""

    def __init__(self, run: PruneRun) -> None:
        super().__init__()
        self.run = run


def check_images(images: Sequence[str], options: BackendOptions) -> dict[str, Kind]:
    """The backend kind of each image; a name no backend takes raises
    :class:`~tagkeeper.errors.UsageError` (before any request is sent)."""
    from tagkeeper.registries import factory

    kinds: dict[str, Kind] = {}
    for image in images:
        kinds[image] = factory.detect_kind(image, options)
        if kinds[image] == "local":
            from tagkeeper.registries.local import engine_repository

            engine_repository(image)
    return kinds


def prune_images(
    images: Sequence[str],
    policy: Policy,
    *,
    options: BackendOptions,
    client: httpx.Client,
    clock: Callable[[], datetime],
    guard: RollbackGuard | None = None,
    dry_run: bool = False,
    listener: PruneListener | None = None,
) -> PruneRun:
    """Prune each of ``images`` in turn, as ``tagkeeper prune`` does; the worst exit
    code of the images is the run's.

    Before any registry is asked: every image name is checked (a bad one raises
    :class:`~tagkeeper.errors.UsageError`), and the deploy history of every image is
    read through ``guard`` (``prune --env``; an environment a user named with no history
    raises :class:`~tagkeeper.rollback.protection.NoHistory`; another failure to read it
    ends that image's prune only). Then, per image: open the backend (``options``,
    ``client``), list, plan (``clock`` says when), check the cap, run the backend's
    delete checks, ``listener.confirm``, apply with re-planning. A declined
    confirmation (:class:`~tagkeeper.errors.Aborted`) stops the run; any other error
    ends that image's prune and the run goes on. Ctrl-C raises :class:`RunInterrupted`
    with what was done, after ``listener.interrupted`` and ``listener.not_started``.
    """
    from tagkeeper.errors import Aborted
    from tagkeeper.rollback.protection import NoHistory

    tell = listener or PruneListener()
    kinds = check_images(images, options)
    # Deploy history first, for every image: an --env with no history for one of
    # them stops the run before any registry is asked (NoHistory is a usage error).
    histories: dict[str, tuple[dict[str, str], list[str]] | TagkeeperError] = {}
    for image in images:
        if guard is None:
            histories[image] = ({}, [])
            continue
        try:
            histories[image] = guard.protected(image)
        except NoHistory:
            raise
        except TagkeeperError as exc:  # e.g. GitHub down: that image is not pruned
            histories[image] = exc
    results: list[PruneResult] = []
    for index, image in enumerate(images):
        result, stop = _prune_one(
            image,
            histories[image],
            policy,
            dataclasses.replace(options, kind=kinds[image]),
            client,
            clock=clock,
            dry_run=dry_run,
            tell=tell,
            aborted=Aborted,
        )
        results.append(result)
        if stop == "interrupted":
            for later in images[index + 1 :]:
                tell.not_started(later)
            raise RunInterrupted(PruneRun(tuple(results), dry_run, interrupted=True))
        if stop:
            break
    return PruneRun(tuple(results), dry_run)


def _prune_one(
    image: str,
    known: tuple[dict[str, str], list[str]] | TagkeeperError,
    policy: Policy,
    options: BackendOptions,
    client: httpx.Client,
    *,
    clock: Callable[[], datetime],
    dry_run: bool,
    tell: PruneListener,
    aborted: type[TagkeeperError],
) -> tuple[PruneResult, str]:
    """One image of :func:`prune_images`: its result, and why the run stops after it
    (``""``: it goes on; ``"aborted"``; ``"interrupted"``: Ctrl-C)."""
    from tagkeeper.registries import factory

    backend: Backend | None = None
    snap: Snapshot | None = None
    planned: PlannedPrune | None = None
    report: ApplyReport | None = None
    error: TagkeeperError | None = None
    why = ""
    try:
        if isinstance(known, TagkeeperError):
            raise known
        history, noticed = known
        backend = factory.open_backend(image, options, client)
        versions = backend.versions()
        # + what the backend itself keeps (the local engine: images containers use)
        snap = snapshot(backend, protected=history, versions=versions)
        # + what the backend noticed (e.g. OCI: unknown creation times), and
        # environments with no known deploy
        planned = snap.plan(policy, now=clock(), notes=noticed)
        name = backend.display
        tell.planned(name, planned.plan)
        for warning in planned.plan.warnings:
            tell.warning(name, warning)
        planned.check_cap()
        if not planned.plan.delete:
            tell.skipped(name, "nothing to delete")
        elif dry_run:
            tell.skipped(name, "dry run, nothing deleted")
        else:
            prepare_deletes(planned)  # e.g. OCI refuses before anything is asked
            count = len(planned.plan.delete)
            if not tell.confirm(name, count):
                raise aborted(
                    f"{name}: nothing was deleted", hint="pass --dry-run to only print the plan"
                )
            tell.started(name, count)
            try:
                report = apply_planned(planned, on_result=lambda r: tell.progress(name, r))
            except Interrupted as stop:
                report = stop.report  # what was deleted and what is left
                raise
            tell.applied(name, report)
    except TagkeeperError as exc:
        error = exc
        tell.failed(backend.display if backend is not None else image, exc)
    except KeyboardInterrupt:  # Ctrl-C: say what was done; the caller stops the run
        why = "interrupted"
        tell.interrupted(backend.display if backend is not None else image, report)
    result = PruneResult(
        image,
        plan=planned.plan if planned is not None else None,
        report=report,
        protected=snap.protected if snap is not None else {},
        error=error,
        requests=dict(backend.stats.by_kind) if backend is not None else {},
    )
    if why:
        return result, why
    return result, "aborted" if isinstance(error, aborted) else ""


def configured_policy(
    config: Config,
    *,
    keep: int | None = None,
    keep_dev: int | None = None,
    keep_pr: int | None = None,
    keep_release: int | None = None,
    keep_prerelease: int | None = None,
    protect: Sequence[str] | None = None,
    min_age: str | None = None,
    untagged: str | None = None,
    unmatched: str | None = None,
    max_delete: int | None = None,
    older_than: str | None = None,
    protect_regex: Sequence[str] | None = None,
    version_scheme: str | None = None,
) -> Policy:
    """The policy ``tagkeeper prune`` applies: each argument given (a flag) wins over
    the configuration's key, which wins over the default (``keep`` 5 for every channel,
    ``min-age`` 1h, untagged deleted, unmatched tags kept, no cap, no ``older-than``,
    no protect regex). ``keep`` is the base of the four per-channel counts."""
    from datetime import timedelta

    from tagkeeper.config import parse_duration, pick

    base = pick(keep, config.keep, 5)
    age = pick(min_age, config.min_age, "1h")
    return Policy(
        keep_dev=pick(keep_dev, config.keep_dev, base),
        keep_pr=pick(keep_pr, config.keep_pr, base),
        keep_release=pick(keep_release, config.keep_release, base),
        keep_prerelease=pick(keep_prerelease, config.keep_prerelease, base),
        protect=tuple(protect) if protect else (config.protect or ()),
        min_age=timedelta(seconds=parse_duration(age)),
        # checked by Policy (a flag's word may be anything)
        untagged=cast("Choice", pick(untagged, config.untagged, "delete")),
        unmatched=cast("Choice", pick(unmatched, config.unmatched, "keep")),
        max_delete=pick(max_delete, config.max_delete, None),
        older_than=timedelta(seconds=parse_duration(older))
        if (older := pick(older_than, config.older_than, None))
        else None,
        protect_regex=tuple(protect_regex) if protect_regex else (config.protect_regex or ()),
        # checked by Policy (a flag's word may be anything)
        version_scheme=cast("Scheme", pick(version_scheme, config.version_scheme, "semver")),
    )
