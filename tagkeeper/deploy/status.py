"""``tagkeeper status``: what runs, whether it is healthy now, and where the record drifts.

:func:`read_status` reads (never changes) the containers of one environment's service
(by name and by label), the ledger's last deploys and the lock, checks the live
container's health once, and compares them: every difference is a :class:`Drift` with a
code and a sentence. The comparison itself is the pure :func:`find_drift`.

Drift codes:

* ``interrupted``: a deploy the ledger still calls ``started`` while no deploy holds the
  lock: it was killed; the next ``deploy`` or ``rollback`` repairs it.
* ``stale-lock``: the lock file names a process that is gone.
* ``missing``: no ``CONTAINER``, while the ledger says a deploy succeeded.
* ``stopped``: ``CONTAINER`` exists but does not run.
* ``replaced``: ``CONTAINER`` runs another image than the last successful deploy
  recorded (a container replaced by hand), or was not started by tagkeeper.
* ``leftover``: a ``-candidate`` or ``-outgoing`` container left by a killed deploy.
* ``previous-running``: ``CONTAINER-previous`` runs beside ``CONTAINER``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.containers import LABEL_CONTAINER, LABEL_ENV
from tagkeeper.deploy.spec import PROXY_STRATEGIES, Network
from tagkeeper.deploy.verify import HealthPolicy, verify
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import httpx

    from tagkeeper.deploy.containers import ContainerRuntime, ContainerState
    from tagkeeper.deploy.lock import Holder
    from tagkeeper.deploy.proxies.base import Proxy
    from tagkeeper.deploy.slot_status import ProxyView, SlotView
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.rollback.resolve import DeployRecord

SUFFIXES = ("candidate", "previous", "outgoing")
HEALTH_NOW_TIMEOUT = 3.0  # status asks once; it does not wait for a service to come up


@dataclass(frozen=True, slots=True)
class Drift:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One container of the service: what its name makes it, and its state."""

    role: str  # live, previous, candidate, outgoing, or the label's role
    state: ContainerState
    health: str | None = None  # live only: "healthy" or why not

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, **self.state.as_dict(), "health": self.health}


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What ``status`` found. ``slots``, ``proxy`` and ``live_slot``: bluegreen and canary
    (:mod:`tagkeeper.deploy.slot_status`)."""

    environment: str
    strategy: str
    container: str | None
    image: str | None
    containers: tuple[ContainerView, ...]
    deploys: tuple[DeployRecord, ...]
    lock: Holder | None
    lock_running: bool
    drift: tuple[Drift, ...] = field(default=())
    slots: tuple[SlotView, ...] = field(default=())
    proxy: ProxyView | None = None
    live_slot: str | None = None

    @property
    def live(self) -> ContainerView | None:
        if self.live_slot is not None:
            found = next((s for s in self.slots if s.slot == self.live_slot), None)
            return found.container if found is not None else None
        return next((c for c in self.containers if c.role == "live"), None)

    def as_dict(self) -> dict[str, Any]:
        live = self.live
        return {
            "environment": self.environment,
            "strategy": self.strategy,
            "container": self.container,
            "image": self.image,
            "live": live.as_dict() if live is not None else None,
            "live_slot": self.live_slot,
            "slots": [s.as_dict() for s in self.slots] if self.slots else None,
            "proxy": self.proxy.as_dict() if self.proxy is not None else None,
            "containers": [c.as_dict() for c in self.containers],
            "deploys": [r.as_dict() for r in self.deploys],
            "lock": (
                {**self.lock.as_dict(), "running": self.lock_running}
                if self.lock is not None
                else None
            ),
            "drift": [d.as_dict() for d in self.drift],
        }


def read_status(
    spec: DeploySpec,
    *,
    runtime: ContainerRuntime,
    records: Sequence[DeployRecord],
    lock: tuple[Holder | None, bool],
    client: httpx.Client | None,
    limit: int = 5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    proxy: Proxy | None = None,
) -> StatusReport:
    """The status of ``spec``'s service. ``records``: its deploys, newest first.

    ``proxy``: bluegreen and canary read the weights back from it (see
    :func:`tagkeeper.deploy.slot_status.read_slot_status`).
    """
    if spec.strategy in PROXY_STRATEGIES and proxy is not None:
        from tagkeeper.deploy.slot_status import read_slot_status

        return read_slot_status(spec, runtime=runtime, records=records, lock=lock,
                                client=client, proxy=proxy, limit=limit, clock=clock,
                                sleep=sleep)  # fmt: skip
    base = spec.container_name
    views: list[ContainerView] = []
    seen: set[str] = set()
    for role, name in (("live", base), *((s, f"{base}-{s}") for s in SUFFIXES)):
        state = runtime.inspect(name)
        if state is None:
            continue
        seen.add(state.id)
        health = None
        if role == "live" and state.running and client is not None:
            health = health_now(spec, client, clock, sleep)
        views.append(ContainerView(role, state, health))
    for state in runtime.list({LABEL_ENV: spec.environment, LABEL_CONTAINER: base}):
        if state.id not in seen:  # labelled for this service but under another name
            views.append(ContainerView(state.role or "other", state))
    holder, running = lock
    ours = [r for r in records if r.container in (None, base)]
    drift = find_drift(spec, views, ours, holder, running, image_id=_image_id(runtime, spec, ours))
    return StatusReport(
        environment=spec.environment,
        strategy=str(spec.strategy),
        container=base,
        image=spec.image,
        containers=tuple(views),
        deploys=tuple(ours[:limit]),
        lock=holder,
        lock_running=running,
        drift=tuple(drift),
    )


def _image_id(
    runtime: ContainerRuntime, spec: DeploySpec, records: Sequence[DeployRecord]
) -> str | None:
    """The local image id of the last successful deploy's digest (None: not known)."""
    current = next((r for r in records if r.status is DeployStatus.SUCCEEDED), None)
    if current is None or current.digest is None:
        return None
    found = runtime.local_image(f"{current.repository}@{current.digest}")
    return found.image_id if found is not None else None


def health_now(
    spec: DeploySpec,
    client: httpx.Client,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    port: int | None = None,
) -> str:
    """``healthy``, or why not: one health round (at most 3 s) on ``port`` (default
    the service's)."""
    host = "127.0.0.1"
    if spec.network is Network.BRIDGE and spec.bind_address not in ("0.0.0.0", "::", host):  # noqa: S104
        host = spec.bind_address if ":" not in spec.bind_address else f"[{spec.bind_address}]"
    report = verify(
        f"http://{host}:{spec.service_port if port is None else port}",
        HealthPolicy(spec.health, interval=0.5, successes=1, timeout=HEALTH_NOW_TIMEOUT),
        client=client,
        clock=clock,
        sleep=sleep,
    )
    return "healthy" if report.ok else report.reason


def find_drift(
    spec: DeploySpec,
    views: Sequence[ContainerView],
    records: Sequence[DeployRecord],
    holder: Holder | None,
    holder_running: bool,
    *,
    image_id: str | None = None,
) -> list[Drift]:
    """Every difference between the ledger, the lock and the engine; pure."""
    base = spec.container_name
    out = common_drift(records, holder, holder_running)
    by_role = {view.role: view for view in views}
    current = next((r for r in records if r.status is DeployStatus.SUCCEEDED), None)
    live = by_role.get("live")
    if live is None:
        if current is not None:
            out.append(
                Drift(
                    "missing",
                    f"no container named {base}, but deploy #{current.id} recorded "
                    f"{current.reference} as deployed",
                )
            )
    else:
        state = live.state
        if not state.running:
            out.append(Drift("stopped", f"{base} is {state.status} (exit code {state.exit_code})"))
        if not state.managed:
            out.append(
                Drift(
                    "replaced",
                    f"{base} was not started by tagkeeper (it runs {state.image}); the next "
                    "deploy replaces it",
                )
            )
        elif current is not None and _differs(state, current, image_id):
            out.append(
                Drift(
                    "replaced",
                    f"{base} runs {state.image}, not {current.reference}@{current.digest} "
                    f"that deploy #{current.id} recorded (replaced by hand?)",
                )
            )
    for role in ("candidate", "outgoing"):
        view = by_role.get(role)
        if view is not None and not holder_running:
            out.append(
                Drift(
                    "leftover",
                    f"{view.state.name} is left from an interrupted deploy: the next deploy "
                    "or rollback removes or restores it",
                )
            )
    previous = by_role.get("previous")
    if previous is not None and previous.state.running and live is not None:
        out.append(
            Drift(
                "previous-running",
                f"{previous.state.name} runs beside {base}: they may fight for port {spec.port}",
            )
        )
    return out


def common_drift(
    records: Sequence[DeployRecord], holder: Holder | None, holder_running: bool
) -> list[Drift]:
    """What every strategy reports: killed deploys and a lock left by a dead holder."""
    out: list[Drift] = []
    for record in records:
        if record.status is DeployStatus.STARTED and not holder_running:
            out.append(
                Drift(
                    "interrupted",
                    f"deploy #{record.id} of {record.tag} (started "
                    f"{record.started_at.strftime('%Y-%m-%d %H:%M:%SZ')}) did not finish and "
                    "no deploy is running: the next deploy or rollback repairs it",
                )
            )
    if holder is not None and not holder_running:
        out.append(
            Drift(
                "stale-lock",
                f"the lock names {holder.describe()}, which is gone: the next deploy takes it over",
            )
        )
    return out


def _differs(state: ContainerState, current: DeployRecord, image_id: str | None) -> bool:
    """Whether the live container runs something else than ``current`` recorded."""
    if current.digest is None:
        return False
    if state.digest != current.digest:
        return True
    # labels can be copied by hand; the image the container really runs cannot
    return bool(image_id and state.image_id and state.image_id != image_id)
