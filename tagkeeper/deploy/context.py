"""What a deploy strategy works with: events, the :class:`Context`, and what it returns.

The engine (:mod:`tagkeeper.deploy.engine`) builds one :class:`Context` per deploy and
hands it to the strategy. Through it a strategy reaches the spec, the request, the
container runtime, the health and smoke checks (:meth:`Context.check`), the ledger's step
log (:meth:`Context.step`, which also reports an :class:`Event` through ``on_event``) and
any extra collaborator the caller gave (``collaborators``: a proxy, a metrics source).

A strategy implements :class:`DeployStrategy`: ``repair`` (put right what a killed deploy
left, before anything else), ``prepare`` (pull and resolve: changes nothing that serves)
and ``run`` (the switch). It returns an :class:`Outcome`; it never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tagkeeper.deploy.checks import Masker
from tagkeeper.deploy.containers import (
    LABEL_CONTAINER,
    LABEL_DEPLOY,
    LABEL_DIGEST,
    LABEL_ENV,
    LABEL_IMAGE,
    LABEL_ROLE,
    LABEL_SLOT,
    Role,
    RunOptions,
)
from tagkeeper.deploy.spec import Network
from tagkeeper.deploy.verify import HealthPolicy, VerifyReport, verify
from tagkeeper.errors import RegistryError, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import httpx

    from tagkeeper.deploy.checks import Request
    from tagkeeper.deploy.containers import ContainerRuntime
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.refs import ImageRef
    from tagkeeper.rollback.ledger import Ledger
    from tagkeeper.rollback.resolve import DeployRecord, DeployStatus, RollbackTarget

LOG_LINES = 30  # the container log lines shown when a check fails


@dataclass(frozen=True, slots=True)
class Event:
    """Progress of a deploy: a phase and how it stands (``start``, ``done``, ``failed``,
    ``info``, ``warning``)."""

    phase: str
    status: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


OnEvent = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """What to deploy: ``image`` (repository and tag), pinned to ``digest`` when known."""

    image: ImageRef
    digest: str | None = None
    rollback: bool = False
    replaces: str | None = None  # the tag a rollback replaces

    @property
    def reference(self) -> str:
        """``repo:tag@digest`` when pinned, else ``repo:tag``."""
        if self.digest:
            return str(self.image.with_digest(self.digest))
        return str(self.image)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``prepare`` found: the digest that will run and the reference to run it by."""

    digest: str
    reference: str  # repo:tag@digest
    notes: tuple[str, ...] = ()
    reuse: str | None = None  # a stopped container holding this digest, restarted instead


@dataclass(frozen=True, slots=True)
class SwitchBack:
    """A release the watch rolled back: what serves again.

    Either the strategy already switched back to ``slot``, which runs ``tag``@``digest``
    (the engine records that switch as a rollback), or ``target`` is what must be deployed
    now, through the same strategy, as a rollback (the other slot did not hold it).
    ``steps`` are the switch back's steps, for the rollback's record.
    """

    reason: str
    slot: str | None = None
    tag: str | None = None
    digest: str | None = None
    target: RollbackTarget | None = None
    numbers: Mapping[str, Any] = field(default_factory=dict)
    steps: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a strategy's run ended. ``reason``: a short code (``pre-check``) when it failed.

    ``switch_back``: the release was rolled back by the watch (status ``rolled_back``).
    """

    status: DeployStatus
    message: str
    reason: str | None = None
    numbers: Mapping[str, Any] = field(default_factory=dict)
    reports: Mapping[str, VerifyReport] = field(default_factory=dict)
    slot: str | None = None
    switch_back: SwitchBack | None = None


class DeployStrategy(Protocol):
    """One way of replacing what serves. See the module docs."""

    name: str

    def repair(self, ctx: Context) -> list[str]:
        """Bring back a safe state after a deploy that was killed; what was done."""
        ...

    def prepare(self, ctx: Context) -> Prepared: ...

    def run(self, ctx: Context, prepared: Prepared) -> Outcome: ...


@dataclass
class Context:
    """One deploy's collaborators and record. Built by the engine."""

    spec: DeploySpec
    request: DeployRequest
    runtime: ContainerRuntime
    client: httpx.Client
    ledger: Ledger
    env: Mapping[str, str]  # env-file and env table, already read
    smoke: Sequence[Request] = ()
    masker: Masker = field(default_factory=Masker)
    on_event: OnEvent | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    collaborators: Mapping[str, Any] = field(default_factory=dict)
    deploy_id: int | None = None
    record: DeployRecord | None = None
    log_lines: int = LOG_LINES
    _pending: list[tuple[str, str, str]] = field(default_factory=list)

    # -- reporting and the step log ---------------------------------------------------

    def event(self, phase: str, status: str, message: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(Event(phase, status, self.masker.scrub(message), data))

    def step(self, phase: str, status: str, detail: str = "", **data: Any) -> None:
        """Report a step and record it in the ledger (kept until the deploy is recorded)."""
        detail = self.masker.scrub(detail)
        self.event(phase, status, detail, **data)
        if self.deploy_id is None:
            self._pending.append((phase, status, detail))
        else:
            self.ledger.add_step(self.deploy_id, phase, status, detail or None)

    def recorded(self, record: DeployRecord) -> None:
        """The deploy is in the ledger now: write the steps reported before."""
        self.record = record
        self.deploy_id = record.id
        pending, self._pending = self._pending, []
        if self.deploy_id is not None:
            for phase, status, detail in pending:
                self.ledger.add_step(self.deploy_id, phase, status, detail or None)

    # -- containers -------------------------------------------------------------------

    def name(self, suffix: str = "") -> str:
        base = self.spec.container_name
        return f"{base}-{suffix}" if suffix else base

    def options(
        self,
        *,
        name: str,
        role: Role,
        port: int,
        reference: str,
        digest: str,
        slot: str | None = None,
    ) -> RunOptions:
        """How to create a container of this deploy listening on ``port`` (host side)."""
        spec = self.spec
        env = dict(self.env)
        if spec.port_env is not None:
            # with host networking the app must listen on `port`; in a bridge network it
            # listens on the configured port inside its own namespace
            env[spec.port_env] = str(port if spec.network is Network.HOST else spec.port)
        labels = {
            **spec.labels,
            LABEL_ENV: spec.environment,
            LABEL_CONTAINER: spec.container_name,
            LABEL_ROLE: str(role),
            LABEL_DIGEST: digest,
            LABEL_IMAGE: str(self.request.image),
        }
        if self.deploy_id is not None:
            labels[LABEL_DEPLOY] = str(self.deploy_id)
        if slot is not None:
            labels[LABEL_SLOT] = slot
        return RunOptions(
            name=name,
            image=reference,
            port=port,
            network=str(spec.network),
            container_port=spec.port if spec.network is Network.BRIDGE else None,
            bind=spec.bind_address,
            env=env,
            volumes=spec.volumes,
            restart=spec.restart if role in (Role.LIVE, Role.SLOT) else "no",
            memory=spec.memory,
            cpus=spec.cpus,
            user=spec.user,
            labels=labels,
            command=spec.command,
        )

    def url(self, port: int) -> str:
        """Where checks reach a container published (or listening) on ``port``."""
        host = "127.0.0.1"
        if self.spec.network is Network.BRIDGE and self.spec.bind_address not in (
            "0.0.0.0",  # noqa: S104 - a published address, read, not bound
            "::",
            "127.0.0.1",
        ):
            address = self.spec.bind_address
            host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{port}"

    def check(self, name: str, port: int, *, fast: bool = False) -> VerifyReport:
        """Health and smoke checks of container ``name``, reached on ``port``.

        It fails at once when the container exits, is OOM-killed, restarts or is removed.
        """
        first = self.runtime.inspect(name)
        restarts = first.restart_count if first is not None else 0

        def alive() -> str | None:
            state = self.runtime.inspect(name)
            if state is None:
                return "was removed"
            return state.gone_reason(restarts)

        def progress(message: str) -> None:
            self.event("check", "info", f"{name}: {message}")

        return verify(
            self.url(port),
            HealthPolicy.from_spec(self.spec),
            self.smoke,
            client=self.client,
            clock=self.clock,
            sleep=self.sleep,
            alive=alive,
            log_tail=lambda: self.runtime.logs(name, self.log_lines),
            masker=self.masker,
            progress=progress,
            fast_until_healthy=fast,
            container=name,
        )


def pull_pinned(ctx: Context) -> tuple[str, str]:
    """Pull the request's image; its digest and the reference pinned to it.

    A pull whose digest the engine does not name is a registry error; one whose digest is
    not the digest the request is pinned to is refused before anything changed.
    """
    request = ctx.request
    ctx.step("pull", "start", request.reference)
    pulled = ctx.runtime.pull(request.reference)
    if pulled.digest is None:
        raise RegistryError(f"the engine pulled {request.reference} but names no digest")
    if request.digest is not None and pulled.digest != request.digest:
        raise UsageError(
            f"{request.reference} is pinned to {request.digest}, but the engine pulled "
            f"{pulled.digest}",
            hint="nothing was changed; check the reference",
        )
    ctx.step("pull", "done", pulled.digest, digest=pulled.digest)
    return pulled.digest, str(request.image.with_digest(pulled.digest))
