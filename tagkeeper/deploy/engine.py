"""The deploy engine: the named phases every container strategy goes through.

:class:`Engine` takes its collaborators as arguments (the spec, a container runtime, an
``httpx.Client``, the ledger, the lock) and never prints: progress goes to ``on_event``,
the outcome comes back as a :class:`DeployResult`. One deploy:

1. ``check``: the reference against the environment's tag rules (``latest`` and other
   moving tags are refused for prod, exit 3) and against the configured repository; the
   env-file and the smoke checks' ``${VAR}`` are read. Nothing has changed yet.
2. ``lock``: the environment's lock (exit 15 while another deploy holds it); a lock left
   by a deploy that died is taken over, and said so.
3. ``repair``: the strategy puts right what a killed deploy left; throw-away containers
   of ``verify --image`` runs that were killed are removed.
4. ``pull`` (the strategy's ``prepare``), then the deploy is recorded ``started`` with
   its digest, strategy and container.
5. the strategy's ``run``; every step is reported and recorded in the ledger.
6. the deploy is recorded ``succeeded`` or ``failed`` (with a reason such as
   ``pre-check``) and the numbers that decided (``gap_seconds``...). A rollback that
   succeeded marks the deploy it replaced ``rolled_back``.

A deploy interrupted by Ctrl-C or SIGTERM (turned into ``KeyboardInterrupt`` by the CLI)
lets the strategy restore what serves and is recorded ``failed`` (``interrupted``); one
killed outright stays ``started`` until the next deploy repairs it.

A library user deploys in a few lines::

    spec = config.deploy_spec("prod")
    request = plan_request(spec, "ghcr.io/acme/app:v1.4.0")
    with Ledger(path) as ledger, build_client() as client:
        result = Engine(spec, runtime=DockerRuntime.connect(), ledger=ledger, client=client,
                        actor=Actor.from_environ(os.environ)).deploy(request)
    print(result.status, result.numbers.get("gap_seconds"))
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.admit import admit
from tagkeeper.deploy.checks import Masker, load_smoke, render, secret_values
from tagkeeper.deploy.containers import read_env_file
from tagkeeper.deploy.context import LOG_LINES, Context, DeployRequest, OnEvent
from tagkeeper.deploy.spec import PROXY_STRATEGIES
from tagkeeper.deploy.throwaway import reap
from tagkeeper.errors import ExitCode, LedgerError, TagkeeperError, UsageError
from tagkeeper.refs import ImageRef
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    import httpx

    from tagkeeper.deploy.checks import SmokeCheck
    from tagkeeper.deploy.containers import ContainerRuntime
    from tagkeeper.deploy.context import DeployStrategy, Outcome, Prepared, SwitchBack
    from tagkeeper.deploy.lock import DeployLock
    from tagkeeper.deploy.operate import SwitchResult, WatchResult
    from tagkeeper.deploy.proxies.model import Weights
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.deploy.verify import VerifyReport
    from tagkeeper.rollback.ledger import Actor, DeployStep, Ledger
    from tagkeeper.rollback.resolve import RollbackTarget


def plan_request(spec: DeploySpec, image: str, *, allow_prerelease: bool = False) -> DeployRequest:
    """``image`` (``repo:tag[@digest]``) checked for ``spec``'s environment; pure.

    Mutable tags are refused for prod (:class:`PolicyViolation`, exit 3); the reference
    must name a tag (deploys are recorded by tag) and the configured repository.
    """
    ref = admit(image, spec.environment, allow_prerelease=allow_prerelease)
    if spec.image is not None and ref.repository != spec.image:
        raise UsageError(
            f"{image} is not an image of {spec.image}, which [deploy.{spec.environment}] deploys",
            hint=f"deploy {spec.image}:<tag>, or change 'image' in the configuration",
        )
    return DeployRequest(ImageRef(ref.host, ref.path, ref.tag), ref.digest)


def rollback_request(spec: DeploySpec, target: RollbackTarget) -> DeployRequest:
    """The request that deploys a rollback target, by digest when one is known."""
    request = plan_request(spec, target.reference(), allow_prerelease=True)
    return DeployRequest(request.image, target.digest, rollback=True, replaces=target.current)


@dataclass(frozen=True, slots=True)
class DeployResult:
    """How a deploy ended, with what decided it."""

    environment: str
    strategy: str
    container: str | None
    image: str
    digest: str | None
    status: DeployStatus
    message: str
    reason: str | None = None
    rollback: bool = False
    deploy_id: int | None = None
    numbers: Mapping[str, Any] = field(default_factory=dict)
    reports: Mapping[str, VerifyReport] = field(default_factory=dict)
    steps: tuple[DeployStep, ...] = ()
    notes: tuple[str, ...] = ()
    slot: str | None = None
    followup: DeployResult | None = None  # the rollback a watch made (its own record)

    @property
    def exit_code(self) -> int:
        if self.status is DeployStatus.SUCCEEDED:
            return int(ExitCode.OK)
        if self.status is DeployStatus.ROLLED_BACK:
            return int(ExitCode.ROLLED_BACK)
        if self.reason == "watch-no-target":
            return int(ExitCode.NO_TARGET)
        return int(ExitCode.VERIFY)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "strategy": self.strategy,
            "container": self.container,
            "image": self.image,
            "digest": self.digest,
            "rollback": self.rollback,
            "status": str(self.status),
            "reason": self.reason,
            "message": self.message,
            "deploy_id": self.deploy_id,
            "gap_seconds": self.numbers.get("gap_seconds"),
            "numbers": dict(self.numbers),
            "checks": {name: report.as_dict() for name, report in self.reports.items()},
            "steps": [step.as_dict() for step in self.steps],
            "notes": list(self.notes),
            "slot": self.slot,
            "rolled_back_to": None if self.followup is None else self.followup.as_dict(),
            "exit_code": self.exit_code,
        }


class Engine:
    """Runs deploys of one environment's service (see the module docs)."""

    def __init__(
        self,
        spec: DeploySpec,
        *,
        runtime: ContainerRuntime,
        ledger: Ledger,
        client: httpx.Client,
        actor: Actor,
        lock: DeployLock | None = None,
        on_event: OnEvent | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        strategy: DeployStrategy | None = None,
        smoke: Sequence[SmokeCheck] | None = None,
        collaborators: Mapping[str, Any] | None = None,
        log_lines: int = LOG_LINES,
    ) -> None:
        self.spec = spec
        self.runtime = runtime
        self.ledger = ledger
        self.client = client
        self.actor = actor
        self.lock = lock
        self.on_event = on_event
        self.environ = dict(os.environ if environ is None else environ)
        self.clock = clock
        self.sleep = sleep
        self._strategy = strategy
        self._smoke = smoke
        self.collaborators = dict(collaborators or {})
        self.log_lines = log_lines
        if spec.strategy in PROXY_STRATEGIES and "proxy" not in self.collaborators:
            from tagkeeper.deploy.strategies.slotkit import build_tools

            self.collaborators = {**build_tools(spec, client), **self.collaborators}

    @property
    def strategy(self) -> DeployStrategy:
        if self._strategy is None:
            from tagkeeper.deploy.strategies import strategy_for

            self._strategy = strategy_for(self.spec)
        return self._strategy

    def context(self, request: DeployRequest) -> Context:
        """The strategy's context for ``request``: env-file and smoke checks read, masked.

        Raises before anything changes when the env-file or a ``${VAR}`` is missing.
        """
        spec = self.spec
        env: dict[str, str] = {}
        if spec.env_file is not None:
            env.update(read_env_file(spec.env_file, self.environ))
        env.update(spec.env)
        smoke = self._smoke
        if smoke is None:
            smoke = load_smoke(spec.smoke) if spec.smoke is not None else ()
        rendered = render(smoke, self.environ)
        masker: Masker = rendered.masker
        masker.add(*secret_values(env))
        return Context(
            spec=spec,
            request=request,
            runtime=self.runtime,
            client=self.client,
            ledger=self.ledger,
            env=env,
            smoke=rendered.requests,
            masker=masker,
            on_event=self.on_event,
            clock=self.clock,
            sleep=self.sleep,
            collaborators=self.collaborators,
            log_lines=self.log_lines,
        )

    def deploy(self, request: DeployRequest) -> DeployResult:
        """Deploy ``request`` (see :func:`plan_request`); see the module docs."""
        strategy = self.strategy
        ctx = self.context(request)
        notes: list[str] = []
        with self.locked(ctx, notes):
            notes += self.repair(ctx, strategy)
            return self.run_locked(ctx, strategy, notes)

    @contextlib.contextmanager
    def locked(self, ctx: Context, notes: list[str]) -> Iterator[None]:
        """Hold the environment's lock (exit 15 when another deploy holds it)."""
        if self.lock is not None:
            self.lock.acquire()
        try:
            if self.lock is not None:
                taken = self.lock.taken_over
                if taken is not None:
                    text = f"took over the lock of a deploy that is gone: {taken.describe()}"
                    notes.append(text)
                    ctx.event("lock", "warning", text)
                ctx.event("lock", "info", f"holding the lock of {self.lock.what}")
            yield
        finally:
            if self.lock is not None:
                self.lock.release()

    def repair(self, ctx: Context, strategy: DeployStrategy) -> list[str]:
        """Remove what killed ``verify`` runs left, and let the strategy repair."""
        notes: list[str] = []
        for name in reap(self.runtime):
            text = f"removed {name}, left by a verify run that was killed"
            notes.append(text)
            ctx.event("repair", "info", text)
        return notes + strategy.repair(ctx)

    def run_locked(
        self, ctx: Context, strategy: DeployStrategy, notes: list[str]
    ) -> DeployResult:
        """Pull, record, run and finish one deploy; the lock is held and repair done."""
        request = ctx.request
        prepared = strategy.prepare(ctx)
        notes += prepared.notes
        record = self.ledger.start(
            environment=self.spec.environment,
            repository=request.image.repository,
            tag=request.image.tag or "",
            digest=prepared.digest,
            actor=self.actor,
            rollback=request.rollback,
            strategy=strategy.name,
            container=self.spec.container,
        )
        if record.id is None:
            raise LedgerError(f"the ledger {self.ledger.path} gave the deploy no id")
        deploy_id = record.id
        ctx.recorded(record)
        ctx.step("record", "done", f"deploy #{deploy_id}: {request.image}@{prepared.digest}")
        outcome = self._run(ctx, strategy, prepared, deploy_id)
        if outcome.slot is not None:
            self.ledger.set_slot(deploy_id, outcome.slot)
        followup: DeployResult | None = None
        status, reason, message = outcome.status, outcome.reason, outcome.message
        back = outcome.switch_back
        if back is not None and back.target is not None:
            # the old slot did not hold the previous version: deploy it now, as a rollback
            followup = self.run_locked(
                self.context(rollback_request(self.spec, back.target)), strategy, []
            )
            if followup.status is not DeployStatus.SUCCEEDED:
                status, reason = DeployStatus.FAILED, "watch-rollback-failed"
                message += f"; deploying {back.target.reference()} failed: {followup.message}"
        self.ledger.finish(
            deploy_id, status, detail=message, reason=reason, numbers=outcome.numbers
        )
        ctx.step("finish", str(status), message)
        if back is not None and back.slot is not None:
            followup = self.record_switch_back(back, replaced=request.image.tag or "")
        if request.rollback and status is DeployStatus.SUCCEEDED:
            notes += self._mark_replaced(request)
        return DeployResult(
            environment=self.spec.environment,
            strategy=strategy.name,
            container=self.spec.container,
            image=str(request.image),
            digest=prepared.digest,
            status=status,
            message=ctx.masker.scrub(message),
            reason=reason,
            rollback=request.rollback,
            deploy_id=deploy_id,
            numbers=dict(outcome.numbers),
            reports=dict(outcome.reports),
            steps=tuple(self.ledger.steps(deploy_id)),
            notes=tuple(notes),
            slot=outcome.slot,
            followup=followup,
        )

    def record_switch_back(self, back: SwitchBack, *, replaced: str) -> DeployResult:
        """Record a switch back to the slot that holds the previous version: a rollback
        that succeeded (the deploy it replaced is recorded ``rolled_back`` by the caller)."""
        spec = self.spec
        tag = back.tag or ""
        record = self.ledger.start(
            environment=spec.environment,
            repository=spec.repository,
            tag=tag,
            digest=back.digest,
            actor=self.actor,
            rollback=True,
            strategy=str(spec.strategy),
            container=spec.container,
            slot=back.slot,
        )
        if record.id is None:
            raise LedgerError(f"the ledger {self.ledger.path} gave the rollback no id")
        for phase, status, detail in back.steps:
            self.ledger.add_step(record.id, phase, status, detail)
        message = f"slot {back.slot} serves {tag} again: {replaced} was rolled back ({back.reason})"
        self.ledger.finish(record.id, DeployStatus.SUCCEEDED, detail=message, reason="watch",
                           numbers=back.numbers)  # fmt: skip
        return DeployResult(
            environment=spec.environment,
            strategy=str(spec.strategy),
            container=spec.container,
            image=f"{spec.repository}:{tag}",
            digest=back.digest,
            status=DeployStatus.SUCCEEDED,
            message=message,
            reason="watch",
            rollback=True,
            deploy_id=record.id,
            numbers=dict(back.numbers),
            steps=tuple(self.ledger.steps(record.id)),
            slot=back.slot,
        )

    def watch(
        self, *, duration: float | None = None, interval: float | None = None
    ) -> WatchResult:
        """Watch what serves now (bluegreen, canary): :func:`tagkeeper.deploy.operate.watch`."""
        from tagkeeper.deploy.operate import watch

        return watch(self, duration=duration, interval=interval)

    def switch(self, weights: Weights) -> SwitchResult:
        """Send traffic by ``weights``: :func:`tagkeeper.deploy.operate.switch`."""
        from tagkeeper.deploy.operate import switch

        return switch(self, weights)

    def _run(
        self, ctx: Context, strategy: DeployStrategy, prepared: Prepared, deploy_id: int
    ) -> Outcome:
        try:
            return strategy.run(ctx, prepared)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            reason = "interrupted" if interrupted else "error"
            detail = (
                "interrupted; what served before was restored"
                if interrupted
                else f"stopped by an error: {getattr(exc, 'message', type(exc).__name__)}"
            )
            if isinstance(exc, (Exception, KeyboardInterrupt)):
                with contextlib.suppress(TagkeeperError):  # the first error is the one to show
                    self.ledger.finish(deploy_id, DeployStatus.FAILED, detail=detail, reason=reason)
            raise

    def _mark_replaced(self, request: DeployRequest) -> list[str]:
        if request.replaces is None:
            return []
        for record in self.ledger.history(
            environment=self.spec.environment, repository=request.image.repository
        ):
            replaced = record.tag == request.replaces and record.status is DeployStatus.SUCCEEDED
            if replaced and record.id is not None:
                self.ledger.mark_rolled_back(
                    record.id, detail=f"rolled back to {request.image.tag}"
                )
                return [f"deploy #{record.id} ({record.tag}) is marked rolled_back"]
        return []
