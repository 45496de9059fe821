"""``status`` of a ``bluegreen``/``canary`` service: the slots, the weights, the drift.

:func:`read_slot_status` reads (never changes) the owned proxy file (the truth about the
weights), what the running proxy serves (nginx: the generation its workers loaded,
through a probe; Traefik: the weights its API shows), each slot's container
(``CONTAINER-<slot>``: image, digest, state, health now on its own port), the ledger's
last deploys and the lock. The comparison is the pure :func:`find_slot_drift`.

Drift codes, besides ``interrupted`` and ``stale-lock``:

* ``proxy``: the owned file is missing, unreadable or edited by hand, or the proxy does
  not run what it says (written but not reloaded: an interrupted switch);
* ``no-slot``: a slot that takes traffic has no running container;
* ``unhealthy``: a slot that takes traffic fails its health check now;
* ``replaced``: the slot that serves runs another digest than the ledger's current
  deploy (a container replaced by hand, or a switch that was not recorded);
* ``other``: a container of this service that is no slot (``CONTAINER``,
  ``CONTAINER-candidate``... left from another strategy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.containers import LABEL_CONTAINER, LABEL_ENV
from tagkeeper.deploy.proxies.model import drift
from tagkeeper.deploy.slots import live_slot
from tagkeeper.deploy.status import ContainerView, Drift, StatusReport, common_drift, health_now
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import httpx

    from tagkeeper.deploy.containers import ContainerRuntime
    from tagkeeper.deploy.lock import Holder
    from tagkeeper.deploy.proxies.base import Proxy
    from tagkeeper.deploy.proxies.model import LiveState, ProxyFile
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.rollback.resolve import DeployRecord


@dataclass(frozen=True, slots=True)
class SlotView:
    """One slot: its port, its weight in the owned file, its container (if any)."""

    slot: str
    port: int
    weight: int | None  # None: the file cannot be read
    container: ContainerView | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "port": self.port,
            "weight": self.weight,
            "container": None if self.container is None else self.container.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class ProxyView:
    """The owned file read back, and what the running proxy serves."""

    kind: str
    file: ProxyFile
    running: LiveState

    def as_dict(self) -> dict[str, Any]:
        return {
            "proxy": self.kind,
            "file": self.file.to_json(),
            "weights": None if self.file.weights is None else self.file.weights.as_dict(),
            "running": self.running.to_json(),
        }


def read_slot_status(
    spec: DeploySpec,
    *,
    runtime: ContainerRuntime,
    records: Sequence[DeployRecord],
    lock: tuple[Holder | None, bool],
    client: httpx.Client | None,
    proxy: Proxy,
    limit: int = 5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> StatusReport:
    """The status of ``spec``'s slots. ``records``: its deploys, newest first."""
    base = spec.container_name
    file = proxy.read()
    running = proxy.live()
    weights = file.weights
    slots: list[SlotView] = []
    seen: set[str] = set()
    for slot, port in zip(spec.slots, spec.slot_ports, strict=True):
        state = runtime.inspect(f"{base}-{slot}")
        view = None
        if state is not None:
            seen.add(state.id)
            health = None
            if state.running and client is not None:
                health = health_now(spec, client, clock, sleep, port)
            view = ContainerView(f"slot {slot}", state, health)
        weight = None if weights is None else weights.of_slot(slot)
        slots.append(SlotView(slot, port, weight, view))
    others = tuple(
        ContainerView(state.role or "other", state)
        for state in runtime.list({LABEL_ENV: spec.environment, LABEL_CONTAINER: base})
        if state.id not in seen
    )
    holder, holder_running = lock
    ours = [r for r in records if r.container in (None, base)]
    seen_proxy = ProxyView(proxy.kind, file, running)
    found = find_slot_drift(spec, slots, seen_proxy, others, ours, holder, holder_running)
    return StatusReport(
        environment=spec.environment,
        strategy=str(spec.strategy),
        container=base,
        image=spec.image,
        containers=tuple(s.container for s in slots if s.container is not None) + others,
        deploys=tuple(ours[:limit]),
        lock=holder,
        lock_running=holder_running,
        drift=tuple(found),
        slots=tuple(slots),
        proxy=seen_proxy,
        live_slot=None if weights is None else live_slot(weights),
    )


def find_slot_drift(  # noqa: PLR0917 - the parts of one status, as read_status has them
    spec: DeploySpec,
    slots: Sequence[SlotView],
    proxy: ProxyView,
    others: Sequence[ContainerView],
    records: Sequence[DeployRecord],
    holder: Holder | None,
    holder_running: bool,
) -> list[Drift]:
    """Every difference between the proxy, the slots, the ledger and the lock; pure."""
    out = common_drift(records, holder, holder_running)
    out += [Drift("proxy", note) for note in drift(proxy.file, proxy.running)]
    weights = proxy.file.weights
    if weights is None:
        return out + _others(others)
    for view in slots:
        share = weights.of_slot(view.slot)
        if share == 0:
            continue
        box = view.container
        if box is None or not box.state.running:
            what = "does not exist" if box is None else f"is {box.state.status}"
            out.append(Drift("no-slot", f"slot {view.slot} takes {share}% of the requests but "
                             f"{spec.container_name}-{view.slot} {what}"))  # fmt: skip
        elif box.health not in (None, "healthy"):
            out.append(Drift("unhealthy", f"slot {view.slot} takes {share}% of the requests "
                             f"but is unhealthy: {box.health}"))  # fmt: skip
    current = next((r for r in records if r.status is DeployStatus.SUCCEEDED), None)
    live = next((s for s in slots if s.slot == live_slot(weights)), None)
    box = live.container if live is not None else None
    if (
        current is not None
        and box is not None
        and current.digest is not None
        and box.state.digest != current.digest
    ):
        out.append(Drift("replaced", f"slot {live.slot if live else '?'} serves "
                             f"{box.state.digest or box.state.image}, not "
                             f"{current.reference}@{current.digest} that deploy #{current.id} "
                             "recorded (replaced by hand, or a switch not recorded?)"))  # fmt: skip
    return out + _others(others)


def _others(others: Sequence[ContainerView]) -> list[Drift]:
    return [
        Drift("other", f"{view.state.name} ({view.state.status}) belongs to this service but is "
              "no slot: left from another strategy? Remove it when it is not needed")
        for view in others
    ]  # fmt: skip
