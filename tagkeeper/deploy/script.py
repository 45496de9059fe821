"""Deploy and rollback wrappers: check, pin, record, run, record again.

:func:`plan_deploy` is pure: it checks the reference against the environment's tag rules
(``latest`` is refused for prod before anything runs) and returns a :class:`DeployPlan`.
:func:`execute` runs the plan's command (no shell; stdio inherited) with ``IMAGE``,
``IMAGE_DIGEST`` and ``IMAGE_TAG`` in its environment (see :meth:`DeployPlan.environ`
for what ``IMAGE`` holds) and, of tagkeeper's own variables, only those
:func:`command_environment` lets through (never ``GITHUB_TOKEN`` or another secret unless
named), telling each :class:`Recorder` that the deploy started and
how it ended: ``succeeded`` on exit status 0, ``failed`` otherwise, and ``failed`` as
well when tagkeeper is interrupted (SIGINT, SIGTERM, which it forwards to the command).
A deploy killed with SIGKILL never reaches that point, so it stays ``started``.

A library user deploys in a few lines::

    plan = plan_deploy("prod", "ghcr.io/acme/app:v1.4.0", ["./deploy.sh"], digest=digest)
    with Ledger(ledger_path) as ledger:
        outcome = execute(plan, [LedgerRecorder(ledger, Actor.from_environ(os.environ))])

and rolls back to a :class:`~tagkeeper.rollback.resolve.RollbackTarget` with ``IMAGE`` pinned::

    plan = plan_deploy("prod", target.reference(), ["./deploy.sh"], digest=target.digest,
                       rollback=True, replaces=target.current, pin=True)
    plan = resolve_digest(plan, BackendResolver(list_versions))  # when none was recorded
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from tagkeeper.deploy.admit import admit
from tagkeeper.deploy.passenv import CommandEnv, choose
from tagkeeper.errors import RegistryError, TagkeeperError, UsageError
from tagkeeper.refs import ImageRef
from tagkeeper.rollback.resolve import DeployRecord, DeployStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import FrameType

    from tagkeeper.inventory import Version
    from tagkeeper.rollback.github import GitHubDeployments
    from tagkeeper.rollback.ledger import Actor, Ledger


@dataclass(frozen=True, slots=True)
class DeployPlan:
    """What a deploy will run. ``replaces`` is the tag a rollback replaces.

    ``pin_image``: ``IMAGE`` names the digest too (``repo:tag@sha256:...``) once it is
    known. A deploy sets it when the reference it was given is pinned, so ``IMAGE`` is
    the reference as given; a rollback always sets it, so a tag re-pushed since the
    deploy it goes back to cannot change what runs.
    """

    environment: str
    image: ImageRef  # repository and tag, no digest
    digest: str | None
    command: tuple[str, ...]
    rollback: bool = False
    replaces: str | None = None
    notes: tuple[str, ...] = field(default=())
    pin_image: bool = False

    @property
    def repository(self) -> str:
        return self.image.repository

    @property
    def tag(self) -> str:
        return self.image.tag or ""

    @property
    def reference(self) -> str:
        """What ``IMAGE`` holds: ``repo:tag``, or ``repo:tag@digest`` when pinned."""
        if self.pin_image and self.digest:
            return str(self.image.with_digest(self.digest))
        return str(self.image)

    def environ(self) -> dict[str, str]:
        """The variables the command receives.

        ``IMAGE``: see :attr:`reference` (``docker pull`` and ``docker run`` accept both
        forms); ``IMAGE_DIGEST``: the digest, or empty when none is known; ``IMAGE_TAG``:
        the tag.
        """
        return {
            "IMAGE": self.reference,
            "IMAGE_DIGEST": self.digest or "",
            "IMAGE_TAG": self.tag,
        }

    def describe(self) -> str:
        """The command as a shell would read it, with its image variables in front."""
        variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.environ().items() if v)
        return f"{variables} {shlex.join(self.command)}"


def plan_deploy(
    environment: str,
    image: str,
    command: Sequence[str],
    *,
    digest: str | None = None,
    allow_prerelease: bool = False,
    rollback: bool = False,
    replaces: str | None = None,
    pin: bool = False,
) -> DeployPlan:
    """Check ``image`` for ``environment`` and build the plan; raises before anything runs.

    The reference must carry a tag (deploys are recorded by tag); a digest in it
    (``repo:tag@sha256:...``) pins the deploy and must agree with ``digest`` when both
    are given. ``IMAGE`` is pinned (see :class:`DeployPlan`) when ``pin`` is true or
    ``image`` is pinned already.
    """
    if not command:
        raise UsageError(
            "no deploy command given",
            hint="put the command after '--', e.g. tagkeeper deploy --env prod --image "
            "ghcr.io/o/app:v1.2.3 -- ./deploy.sh",
        )
    ref = admit(image, environment, allow_prerelease=allow_prerelease)
    if ref.digest and digest and ref.digest != digest:
        raise UsageError(f"{image} is pinned to {ref.digest}, but the digest given is {digest}")
    return DeployPlan(
        environment=environment,
        image=ImageRef(ref.host, ref.path, ref.tag),
        digest=ref.digest or digest,
        command=tuple(command),
        rollback=rollback,
        replaces=replaces,
        pin_image=pin or ref.digest is not None,
    )


class DigestResolver(Protocol):
    """Finds the digest a tag points at now."""

    def resolve(self, ref: ImageRef) -> str:
        """The digest of ``ref``'s tag: :class:`RegistryError` when the registry fails,
        :class:`UsageError` when the tag does not exist."""
        ...


@dataclass(frozen=True, slots=True)
class BackendResolver:
    """Resolves digests from a repository listing, e.g. ``open_backend(...).versions``."""

    list_versions: Callable[[str], Sequence[Version]]

    def resolve(self, ref: ImageRef) -> str:
        for version in self.list_versions(ref.repository):
            if ref.tag in version.tags:
                return version.digest
        raise UsageError(
            f"{ref} does not exist in the registry",
            hint="push it first, check the tag, or pass --no-resolve-digest to deploy an "
            "image that only exists on the host",
        )


def resolve_digest(
    plan: DeployPlan, resolver: DigestResolver | None, *, required: bool = False
) -> DeployPlan:
    """``plan`` with the digest its tag points at now (unless it has a digest already).

    When the registry cannot be reached, the deploy goes on without a digest and the
    plan's ``notes`` say so, unless ``required``: then the :class:`RegistryError` stands.
    A tag that the registry does not have is an error either way. With no ``resolver``
    (resolving turned off), a plan that should be pinned (a rollback) gets a note, and
    ``required`` is a :class:`UsageError`.
    """
    if plan.digest is not None:
        return plan
    if resolver is None:
        if required:
            raise UsageError(
                f"no digest is known for {plan.image} and resolving it is turned off",
                hint="drop --no-resolve-digest (or --require-digest)",
            )
        if not plan.pin_image:
            return plan
        return _by_tag(plan, "no digest is recorded for it and resolving it is turned off")
    try:
        digest = resolver.resolve(plan.image)
    except RegistryError as exc:
        if required:
            raise
        return _by_tag(plan, f"its digest could not be resolved ({exc.message})")
    return replace(plan, digest=digest)


def _by_tag(plan: DeployPlan, why: str) -> DeployPlan:
    """``plan`` with a note that it runs by tag, and why (``why`` speaks of the image)."""
    verb = "rolling back to" if plan.rollback else "deploying"
    note = (
        f"{plan.image}: {why}; {verb} it by tag, so whatever the tag points at when the "
        "command pulls it is what runs"
    )
    return replace(plan, notes=(*plan.notes, note))


class Recorder(Protocol):
    """Somewhere a deploy is recorded (the ledger, GitHub Deployments)."""

    def started(self, plan: DeployPlan) -> None: ...

    def finished(self, plan: DeployPlan, status: DeployStatus, detail: str) -> None: ...

    def replaced(self, plan: DeployPlan) -> None:
        """After a successful rollback: mark the deploy of ``plan.replaces`` rolled back."""
        ...


class LedgerRecorder:
    """Records a deploy in the embedded ledger."""

    def __init__(self, ledger: Ledger, actor: Actor) -> None:
        self.ledger = ledger
        self.actor = actor
        self.record: DeployRecord | None = None

    def started(self, plan: DeployPlan) -> None:
        self.record = self.ledger.start(
            environment=plan.environment,
            repository=plan.repository,
            tag=plan.tag,
            digest=plan.digest,
            actor=self.actor,
            rollback=plan.rollback,
        )

    def finished(self, plan: DeployPlan, status: DeployStatus, detail: str) -> None:
        if self.record is not None and self.record.id is not None:
            self.record = self.ledger.finish(self.record.id, status, detail=detail)

    def replaced(self, plan: DeployPlan) -> None:
        if plan.replaces is None:
            return
        for record in self.ledger.history(environment=plan.environment, repository=plan.repository):
            if record.tag == plan.replaces and record.status is DeployStatus.SUCCEEDED:
                if record.id is not None:
                    self.ledger.mark_rolled_back(record.id, detail=f"rolled back to {plan.tag}")
                return


class GitHubRecorder:
    """Records a deploy in GitHub Deployments (``ref``: the commit or tag deployed)."""

    def __init__(
        self, deployments: GitHubDeployments, *, ref: str, ci_run_url: str | None = None
    ) -> None:
        self.deployments = deployments
        self.ref = ref
        self.ci_run_url = ci_run_url

    def _record(self, plan: DeployPlan, status: DeployStatus, tag: str) -> None:
        self.deployments.record(
            environment=plan.environment,
            repository=plan.repository,
            tag=tag,
            status=status,
            ref=self.ref,
            digest=plan.digest if tag == plan.tag else None,
            rollback=plan.rollback and tag == plan.tag,
            ci_run_url=self.ci_run_url,
        )

    def started(self, plan: DeployPlan) -> None:
        self._record(plan, DeployStatus.STARTED, plan.tag)

    def finished(self, plan: DeployPlan, status: DeployStatus, detail: str) -> None:
        self._record(plan, status, plan.tag)

    def replaced(self, plan: DeployPlan) -> None:
        if plan.replaces is not None:
            self._record(plan, DeployStatus.ROLLED_BACK, plan.replaces)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True, slots=True)
class DeployOutcome:
    """How a deploy ended. ``problems``: records that could not be written at the end."""

    exit_code: int
    status: DeployStatus
    detail: str
    problems: tuple[str, ...] = ()


class _Forwarder:
    """Catches SIGTERM (and Ctrl-C) for the deploy's lifetime and passes them to the command."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._previous: Any = None
        self._installed = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def __enter__(self) -> _Forwarder:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGTERM, previous)

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        self.proc = proc
        if self.received and proc.poll() is None:  # arrived while it was being started
            proc.send_signal(self.received[-1])
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                self(signal.SIGINT, None)


def _ending(code: int, received: Sequence[int]) -> tuple[int, str]:
    """The exit code and the recorded detail for a command's return code."""
    if code < 0:
        detail = f"the command was killed by {_signal_name(-code)}"
        exit_code = 128 - code
    else:
        detail = f"exit status {code}"
        exit_code = code
    if received:
        detail = f"interrupted by {_signal_name(received[0])}; {detail}"
        if exit_code == 0:
            exit_code = 128 + received[0]
    return exit_code, detail


def command_environment(
    plan: DeployPlan, environ: Mapping[str, str] | None = None, pass_env: Sequence[str] = ()
) -> CommandEnv:
    """What the plan's command gets: ``IMAGE``, ``IMAGE_DIGEST``, ``IMAGE_TAG`` over the
    variables of ``environ`` (default: this process's) that :mod:`~tagkeeper.deploy.passenv`
    lets through: its defaults and ``pass_env`` (names, or ``PREFIX*``). Never a token
    unless ``pass_env`` names it exactly (:attr:`CommandEnv.secrets` then says so)."""
    return choose(os.environ if environ is None else environ, pass_env, setting=plan.environ())


def execute(
    plan: DeployPlan,
    recorders: Sequence[Recorder],
    *,
    environ: Mapping[str, str] | None = None,
    pass_env: Sequence[str] = (),
) -> DeployOutcome:
    """Run the plan's command and record how it ended.

    The command's environment is :func:`command_environment` (``environ`` and
    ``pass_env``): not the whole of tagkeeper's, whose tokens it must not see.

    The exit code is the command's own, or ``128 + N`` when it died of signal ``N`` (or
    when tagkeeper was interrupted by signal ``N`` and the command still exited 0). A
    command that does not exist is a :class:`UsageError`: nothing is run or recorded.
    When a recorder cannot record the start, nothing is run, the recorders that did are
    told it failed, and the error is raised. When one cannot record the end, the others
    still do, and the outcome lists the problem (the command's exit code stands).
    """
    variables = command_environment(plan, environ, pass_env).variables
    program = plan.command[0]
    if shutil.which(program, path=variables.get("PATH")) is None and not os.path.exists(program):
        raise UsageError(
            f"the deploy command {program!r} was not found",
            hint="check the command after '--' (and PATH); nothing was run or recorded",
        )
    with _Forwarder() as signals:
        begun: list[Recorder] = []
        for recorder in recorders:
            try:
                recorder.started(plan)
            except TagkeeperError as exc:
                _finish_all(begun, plan, DeployStatus.FAILED, f"not run: {exc.message}")
                raise
            begun.append(recorder)
        if signals.received:  # stopped before the command could start
            exit_code, detail = 128 + signals.received[0], "interrupted before the command ran"
            problems = _finish_all(recorders, plan, DeployStatus.FAILED, detail)
            return DeployOutcome(exit_code, DeployStatus.FAILED, detail, tuple(problems))
        try:
            proc = subprocess.Popen(  # noqa: S603 - no shell, argv as given
                list(plan.command), env=variables
            )
        except OSError as exc:
            _finish_all(recorders, plan, DeployStatus.FAILED, f"cannot run {program}: {exc}")
            raise UsageError(f"cannot run {program}: {exc}") from None
        exit_code, detail = _ending(signals.wait(proc), signals.received)
        status = DeployStatus.SUCCEEDED if exit_code == 0 else DeployStatus.FAILED
        problems = _finish_all(recorders, plan, status, detail)
    if status is DeployStatus.SUCCEEDED and plan.rollback:
        for recorder in recorders:
            try:
                recorder.replaced(plan)
            except TagkeeperError as exc:
                problems.append(exc.message)
    return DeployOutcome(exit_code, status, detail, tuple(problems))


def _finish_all(
    recorders: Sequence[Recorder], plan: DeployPlan, status: DeployStatus, detail: str
) -> list[str]:
    problems: list[str] = []
    for recorder in recorders:
        try:
            recorder.finished(plan, status, detail)
        except TagkeeperError as exc:
            problems.append(exc.message)
    return problems


__all__ = [
    "BackendResolver",
    "DeployOutcome",
    "DeployPlan",
    "DigestResolver",
    "GitHubRecorder",
    "LedgerRecorder",
    "Recorder",
    "command_environment",
    "execute",
    "plan_deploy",
    "resolve_digest",
]
