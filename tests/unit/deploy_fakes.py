"""Fakes for the deploy engine: a container engine with scripted apps, a fake clock, a kill.

:class:`FakeRuntime` implements :class:`~tagkeeper.deploy.containers.ContainerRuntime`
in memory, with a registry to pull from. Each image carries an :class:`App` that decides
how its containers answer HTTP (through :meth:`FakeRuntime.transport`, an
``httpx.MockTransport`` routing ``127.0.0.1:PORT`` to the running container on that
port): healthy, healthy after N seconds, never healthy, ``UNKNOWN``, exiting, or with a
failing API. Time is a :class:`FakeClock` that only moves when something takes time.

The engine enforces what a real one does: a name is unique (409 on a clash), and a
container started on a port another running container holds exits at once, which is
recorded in :attr:`FakeRuntime.conflicts` (tests assert it stays empty).

:class:`KillSwitch` plays SIGKILL: once it fires, every operation of the runtime and of
the :class:`KillableLedger` raises :class:`Killed`, so no ``except``/``finally`` of the
code under test can change anything any more, as with a real kill.
"""

from __future__ import annotations

import hashlib
import itertools
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from tagkeeper.deploy.containers import ContainerState, PulledImage, RunOptions
from tagkeeper.deploy.engine import DeployResult, Engine, plan_request, rollback_request
from tagkeeper.deploy.spec import DeploySpec, Network
from tagkeeper.errors import RegistryError, UsageError
from tagkeeper.refs import parse_reference
from tagkeeper.rollback.ledger import Actor, Ledger
from tagkeeper.rollback.resolve import DeployStatus, previous_from_history

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from tagkeeper.deploy.context import Event
    from tagkeeper.deploy.lock import DeployLock


class Killed(BaseException):
    """The process was killed (SIGKILL): nothing more runs."""


@dataclass
class KillSwitch:
    """Fires before the ``at``-th operation; every operation after it raises too."""

    at: int | None = None
    count: int = 0
    fired: bool = False
    ops: list[str] = field(default_factory=list)

    def tick(self, op: str) -> None:
        self.alive()
        self.count += 1
        if self.at is not None and self.count >= self.at:
            self.fired = True
            raise Killed(op)
        self.ops.append(op)

    def alive(self) -> None:
        if self.fired:
            raise Killed("after the kill")


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass(frozen=True)
class App:
    """How an image's containers behave, from the moment they start."""

    healthy_after: float = 0.0
    health: str = "up"  # up, down (503 DOWN), unknown (200 UNKNOWN)
    exit_after: float | None = None
    api_status: int = 200
    unhealthy_on_port: int | None = None  # DOWN when listening on this port only
    version: str = "1"
    fail_after: float | None = None  # after this long: health DOWN and every API call 500
    p95: float = 0.05  # what its requests take (metrics fakes read it)

    def failing(self, up: float) -> bool:
        """Whether its API answers 5xx ``up`` seconds after the start."""
        return self.api_status >= 500 or (self.fail_after is not None and up >= self.fail_after)


@dataclass
class FakeContainer:
    id: str
    name: str
    options: RunOptions
    digest: str | None
    image_id: str
    app: App
    status: str = "created"
    exit_code: int = 0
    restart_count: int = 0
    restart_policy: str = "no"
    started_at: float | None = None
    log: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.options.port


@dataclass
class FakeRuntime:
    clock: FakeClock
    kill: KillSwitch = field(default_factory=KillSwitch)
    registry: dict[str, tuple[str, App]] = field(default_factory=dict)  # repo:tag -> digest
    apps: dict[str, App] = field(default_factory=dict)  # digest -> app
    local: dict[str, PulledImage] = field(default_factory=dict)  # digest -> image
    containers: dict[str, FakeContainer] = field(default_factory=dict)  # by name
    conflicts: list[str] = field(default_factory=list)
    removed: list[FakeContainer] = field(default_factory=list)
    history: list[tuple[float, str, str]] = field(default_factory=list)
    stop_seconds: float = 0.5
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # -- the registry -----------------------------------------------------------------

    def publish(self, reference: str, app: App) -> str:
        """Push ``repo:tag`` with behaviour ``app``; its digest."""
        digest = "sha256:" + hashlib.sha256(f"{reference}/{app}".encode()).hexdigest()
        self.registry[reference] = (digest, app)
        self.apps[digest] = app
        return digest

    # -- ContainerRuntime ---------------------------------------------------------------

    def _op(self, op: str) -> None:
        self.kill.tick(op)
        self.history.append((self.clock.now, op.split(" ", 1)[0], op))

    def pull(self, reference: str) -> PulledImage:
        self._op(f"pull {reference}")
        self.clock.now += 1.0
        ref = parse_reference(reference)
        if ref.digest is not None:
            if ref.digest not in self.apps:
                raise UsageError(f"{reference} does not exist in its registry")
            digest = ref.digest
        else:
            key = f"{ref.repository}:{ref.tag}"
            if key not in self.registry:
                raise UsageError(f"{reference} does not exist in its registry")
            digest = self.registry[key][0]
        image = PulledImage(reference, digest, "sha256:img" + digest[7:19])
        self.local[digest] = image
        return image

    def local_image(self, reference: str) -> PulledImage | None:
        self.kill.alive()
        ref = parse_reference(reference)
        if ref.digest is not None:
            return self.local.get(ref.digest)
        entry = self.registry.get(f"{ref.repository}:{ref.tag}")
        return self.local.get(entry[0]) if entry else None

    def create(self, options: RunOptions) -> str:
        self._op(f"create {options.name}")
        if options.name in self.containers:
            raise RegistryError(f"the name {options.name} is in use (409 Conflict)")
        by_id = [d for d, image in self.local.items() if image.image_id == options.image]
        digest = by_id[0] if by_id else parse_reference(options.image).digest
        if digest is None or digest not in self.local:
            raise RegistryError(f"no such image {options.image}: pull it first")
        cid = f"{next(self._ids):064x}"
        self.containers[options.name] = FakeContainer(
            cid,
            options.name,
            options,
            digest,
            self.local[digest].image_id,
            self.apps[digest],
            restart_policy=options.restart,
        )
        return cid

    def _get(self, name: str) -> FakeContainer:
        for container in self.containers.values():
            if name in (container.name, container.id):
                return container
        raise RegistryError(f"no such container {name}")

    def _advance(self, c: FakeContainer) -> None:
        exit_after = c.app.exit_after
        if c.status != "running" or c.started_at is None or exit_after is None:
            return
        if self.clock.now >= c.started_at + exit_after:
            c.status, c.exit_code = "exited", 1
            c.log.append("APPLICATION FAILED TO START")

    def start(self, name: str) -> None:
        self._op(f"start {name}")
        c = self._get(name)
        if c.status == "running":
            return
        self.clock.now += 0.1
        for other in self.containers.values():
            self._advance(other)
            if other is not c and other.status == "running" and other.port == c.port:
                self.conflicts.append(f"{c.name} started on {c.port} while {other.name} runs")
                c.status, c.exit_code = "exited", 1
                c.log.append(f"Web server failed to start. Port {c.port} was already in use.")
                return
        c.status, c.started_at = "running", self.clock.now
        c.log.append(f"Started app version={c.app.version} port={c.port}")

    def stop(self, name: str, timeout: float) -> None:
        self._op(f"stop {name}")
        c = self._get(name)
        if c.status == "running":
            self.clock.now += min(self.stop_seconds, timeout)
            c.status, c.exit_code = "exited", 143
            c.log.append("Graceful shutdown complete")

    def rename(self, name: str, new_name: str) -> None:
        self._op(f"rename {name} {new_name}")
        c = self._get(name)
        if new_name in self.containers:
            raise RegistryError(f"the name {new_name} is in use (409 Conflict)")
        del self.containers[c.name]
        c.name = new_name
        self.containers[new_name] = c

    def remove(self, name: str) -> None:
        self._op(f"remove {name}")
        for key, c in list(self.containers.items()):
            if name in (c.name, c.id):
                self.removed.append(c)
                del self.containers[key]

    def set_restart(self, name: str, policy: str) -> None:
        self._op(f"set_restart {name} {policy}")
        self._get(name).restart_policy = policy

    def inspect(self, name: str) -> ContainerState | None:
        self.kill.alive()
        for c in self.containers.values():
            if name in (c.name, c.id):
                self._advance(c)
                return self._state(c)
        return None

    def _state(self, c: FakeContainer) -> ContainerState:
        started = (
            datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=c.started_at)
            if c.started_at is not None
            else None
        )
        return ContainerState(
            name=c.name,
            id=c.id,
            status=c.status,
            exit_code=c.exit_code,
            restart_count=c.restart_count,
            image=c.options.image,
            image_id=c.image_id,
            labels=dict(c.options.labels),
            started_at=started,
            restart_policy=c.restart_policy,
        )

    def logs(self, name: str, tail: int) -> str:
        self.kill.alive()
        c = self._get(name)
        return "\n".join(c.log[-tail:]) + "\n"

    # -- what the containers answer -----------------------------------------------------

    def serving(self, port: int) -> FakeContainer | None:
        for c in self.containers.values():
            self._advance(c)
            if c.status == "running" and c.port == port:
                return c
        return None

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.kill.alive()
        self.clock.now += 0.01
        port = request.url.port or 80
        c = self.serving(port)
        if c is None or c.started_at is None:
            raise httpx.ConnectError("connection refused", request=request)
        app = c.app
        up = self.clock.now - c.started_at
        path = request.url.path
        if path.startswith("/actuator/health"):
            gone_bad = app.fail_after is not None and up >= app.fail_after
            if (
                up < app.healthy_after
                or app.health == "down"
                or app.unhealthy_on_port == port
                or gone_bad
            ):
                return httpx.Response(503, json={"status": "DOWN"})
            if app.health == "unknown":
                return httpx.Response(200, json={"status": "UNKNOWN"})
            return httpx.Response(200, json={"status": "UP"})
        if path == "/version":
            return httpx.Response(200, json={"version": app.version, "port": port})
        if path.startswith("/api/"):
            return httpx.Response(500 if app.failing(up) else app.api_status, json={"path": path})
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.answer)

    # -- for assertions -----------------------------------------------------------------

    def running_on(self, port: int) -> list[str]:
        out = []
        for c in self.containers.values():
            self._advance(c)
            if c.status == "running" and c.port == port:
                out.append(c.name)
        return out

    def version_of(self, name: str) -> str | None:
        c = self.containers.get(name)
        return c.app.version if c is not None else None

    # the runtime's list(), last: below it `list` would name this method
    def list(self, labels: Mapping[str, str]) -> list[ContainerState]:
        self.kill.alive()
        out = []
        for c in self.containers.values():
            if all(c.options.labels.get(k) == v for k, v in labels.items()):
                self._advance(c)
                out.append(self._state(c))
        return out


class KillableLedger:
    """A real ledger whose writes (and, after the kill, reads) go through a kill switch."""

    WRITES = frozenset(
        {"start", "finish", "add_step", "set_numbers", "set_slot", "mark_rolled_back", "record"}
    )

    def __init__(self, ledger: Ledger, kill: KillSwitch) -> None:
        self._ledger = ledger
        self._kill = kill

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._ledger, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.WRITES:
                self._kill.tick(f"ledger.{name}")
            else:
                self._kill.alive()
            return attribute(*args, **kwargs)

        return call


# -- a world to deploy in --------------------------------------------------------------------

REPO = "ghcr.io/acme/app"
ACTOR = Actor(user="alice", ci_run_url=None, host="web1")
PORT = 8520
SPARE = 18520


def make_spec(**changes: Any) -> DeploySpec:
    base: dict[str, Any] = {
        "image": REPO,
        "container": "app",
        "port": PORT,
        "network": Network.HOST,
        "port_env": "SERVER_PORT",
        "interval": 1.0,
        "successes": 2,
        "health_timeout": 20.0,
        "env": {"SPRING_PROFILES_ACTIVE": "prod", "DB_PASSWORD": "hunter2-secret"},
    }
    base.update(changes)
    return DeploySpec("prod", **base)


@dataclass
class World:
    tmp: Path
    spec: DeploySpec = field(default_factory=make_spec)
    clock: FakeClock = field(default_factory=FakeClock)
    kill: KillSwitch = field(default_factory=KillSwitch)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runtime = FakeRuntime(self.clock, self.kill)
        self.real_ledger = Ledger(self.tmp / "ledger.db")
        self.ledger = KillableLedger(self.real_ledger, self.kill)
        self.client = httpx.Client(transport=self.runtime.transport())

    def close(self) -> None:
        self.client.close()
        self.real_ledger.close()

    def publish(self, tag: str, app: App | None = None) -> str:
        return self.runtime.publish(f"{REPO}:{tag}", app or App(version=tag))

    def engine(self, *, lock: DeployLock | None = None, spec: DeploySpec | None = None) -> Engine:
        return Engine(
            spec or self.spec,
            runtime=self.runtime,
            ledger=self.ledger,  # type: ignore[arg-type]
            client=self.client,
            actor=ACTOR,
            lock=lock,
            on_event=self.events.append,
            environ={"SMOKE_TOKEN": "tok-123456"},
            clock=self.clock,
            sleep=self.clock.sleep,
            collaborators=self.collaborators(),
        )

    def collaborators(self) -> Mapping[str, Any] | None:
        """What the engine gets besides the runtime and ledger (none for recreate)."""
        return None

    def deploy(self, tag: str, **kw: Any) -> DeployResult:
        return self.engine(**kw).deploy(plan_request(self.spec, f"{REPO}:{tag}"))

    def rollback(self) -> DeployResult:
        history = self.real_ledger.history(environment="prod", repository=REPO)
        target = previous_from_history(history, repository=REPO, environment="prod")
        return self.engine().deploy(rollback_request(self.spec, target))

    def ops(self, kind: str) -> list[str]:
        return [op for _, k, op in self.runtime.history if k == kind]

    def serving(self) -> str | None:
        c = self.runtime.serving(PORT)
        return c.app.version if c is not None else None

    def statuses(self) -> list[tuple[str, DeployStatus, str | None]]:
        return [
            (r.tag, r.status, r.reason)
            for r in self.real_ledger.history(environment="prod", repository=REPO)
        ]


@contextmanager
def new_world(tmp: Path) -> Iterator[World]:
    w = World(tmp)
    try:
        yield w
    finally:
        w.close()
