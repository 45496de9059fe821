"""Fakes for the blue/green and canary strategies: a proxy, traffic, metrics, a world.

:class:`FakeProxy` implements the :class:`~tagkeeper.deploy.proxies.base.Proxy` protocol
in memory: the owned *file* (its weights) and what the proxy *runs* are kept apart, as a
real proxy's are between a rename and a reload. ``fail`` makes one phase of the next
changes fail the way a real one does (the previous file is restored); every change goes
through the world's kill switch (``proxy.write``, ``proxy.reload``, ``proxy.confirm``), so
a SIGKILL can land between the rename and the reload. :attr:`FakeProxy.timeline` is what
the proxy ran, and since when.

:class:`FakeMetrics` is a metrics source over a steady client: ``rate`` requests a second
through the proxy, split by the weights the proxy ran at each moment; a slot's requests
fail (5xx) when its container's app fails, and take its app's ``p95``.

:class:`SlotWorld` is :class:`~tests.unit.deploy_fakes.World` with a ``bluegreen`` (or
``canary``) spec and these collaborators.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tagkeeper.deploy.metrics.model import NoData, Reading, SlotReading, SlotStats
from tagkeeper.deploy.metrics.prometheus import TimeMark
from tagkeeper.deploy.proxies.model import (
    ApplyReport,
    LiveState,
    ProxyEvent,
    ProxyFile,
    ProxySwitchFailed,
    Slot,
    Weights,
    no_events,
)
from tagkeeper.deploy.spec import MetricsSource, Strategy
from tagkeeper.deploy.strategies.slotkit import container
from tests.unit.deploy_fakes import FakeClock, FakeRuntime, KillSwitch, World, make_spec

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from tagkeeper.deploy.spec import DeploySpec

BLUE, GREEN = 8520, 8521
SLOTS = (Slot("blue", "127.0.0.1", BLUE), Slot("green", "127.0.0.1", GREEN))
NAMES = ("blue", "green")


@dataclass
class FakeProxy:
    clock: FakeClock
    kill: KillSwitch
    path: Path
    slots: tuple[Slot, ...] = SLOTS
    file: Weights | None = field(default_factory=lambda: Weights.all_to("blue", NAMES))
    running: Weights | None = None
    fail: str | None = None  # "test", "reload", "confirm", "restore"
    fail_at: int | None = None  # only the change with this number fails (1: the next one)
    calls: int = 0
    exists: bool = True
    corrupt: bool = False
    applied: list[Weights] = field(default_factory=list)
    timeline: list[tuple[float, Weights]] = field(default_factory=list)
    _gen: Any = field(default_factory=lambda: itertools.count(1))

    kind: ClassVar[str] = "fake"

    def __post_init__(self) -> None:
        if self.running is None:
            self.running = self.file
        if self.running is not None:
            self.timeline.append((self.clock.now, self.running))

    def render(self, weights: Weights, generation: str) -> str:
        return f"{weights} {generation}\n"

    def read(self) -> ProxyFile:
        self.kill.alive()
        where = str(self.path)
        if not self.exists:
            return ProxyFile(where, False, problems=("the file does not exist",))
        if self.corrupt or self.file is None:
            return ProxyFile(where, True, problems=("corrupt or not in tagkeeper's form: x",))
        return ProxyFile(where, True, weights=self.file)

    def live(self) -> LiveState:
        self.kill.alive()
        return LiveState(weights=self.running)

    def _run(self, weights: Weights) -> None:
        self.running = weights
        self.timeline.append((self.clock.now, weights))

    def apply(
        self, weights: Weights, *, on_event: Callable[[ProxyEvent], None] = no_events
    ) -> ApplyReport:
        weights.check_slots(self.slots)
        self.kill.tick("proxy.write")
        before_file, before_running = self.file, self.running
        self.calls += 1
        failing = self.fail if self.fail_at in (None, self.calls) else None
        self.file, self.exists, self.corrupt = weights, True, False
        on_event(ProxyEvent("write", f"{weights}"))
        if failing == "test":
            self.file = before_file
            raise ProxySwitchFailed("proxy test failed: nginx: [emerg] unexpected '}'",
                                    phase="test", restored=True)  # fmt: skip
        on_event(ProxyEvent("test", "nginx -t"))
        self.kill.tick("proxy.reload")
        if failing == "reload":
            self.file = before_file
            raise ProxySwitchFailed("proxy reload failed", phase="reload", restored=True)
        self._run(weights)
        on_event(ProxyEvent("reload", "nginx -s reload"))
        self.kill.tick("proxy.confirm")
        self.clock.now += 0.2
        if failing in ("confirm", "restore"):
            if failing == "restore":
                raise ProxySwitchFailed("did not switch; the previous file could NOT be "
                                        "restored", phase="confirm", restored=False)  # fmt: skip
            self.file = before_file
            if before_running is not None:
                self._run(before_running)
            raise ProxySwitchFailed("nginx did not switch within 5s", phase="confirm",
                                    restored=True)  # fmt: skip
        self.applied.append(weights)
        on_event(ProxyEvent("confirm", f"5 probes, answered by {', '.join(weights.serving)}"))
        return ApplyReport(weights, before_file, f"{next(self._gen):012x}", 0.2, 0.1, 5,
                           weights.serving)  # fmt: skip

    def fail_next(self, phase: str) -> None:
        """Only the next change fails, in ``phase``."""
        self.fail, self.fail_at = phase, self.calls + 1

    def weight_at(self, slot: str, moment: float) -> int:
        current = 0
        for since, weights in self.timeline:
            if since > moment:
                break
            current = weights.of_slot(slot)
        return current


@dataclass
class FakeMetrics:
    """A steady client of ``rate`` requests a second through the proxy, as metrics."""

    runtime: FakeRuntime
    proxy: FakeProxy
    rate: float = 100.0
    spec_ports: Mapping[str, int] = field(default_factory=lambda: {"blue": BLUE, "green": GREEN})
    not_ready: str | None = None
    unreadable: bool = False
    reads: int = 0

    def mark(self) -> TimeMark:
        self.runtime.kill.alive()
        return TimeMark(self.runtime.clock.now)

    def ready(self, instance: str, since: float) -> str | None:
        del instance, since
        return self.not_ready

    def read(self, mark: TimeMark, slots: Mapping[str, str]) -> Reading:
        from tagkeeper.deploy.metrics.model import MetricsError

        self.runtime.kill.alive()
        self.reads += 1
        if self.unreadable:
            raise MetricsError("Prometheus at http://127.0.0.1:9090 did not answer")
        now = self.runtime.clock.now
        out: dict[str, SlotReading] = {}
        for slot in slots:
            out[slot] = self._slot(slot, mark.at, now)
        return Reading(out, now - mark.at)

    def _slot(self, slot: str, start: float, end: float) -> SlotReading:
        requests = errors = 0.0
        step = 0.1
        moment = start
        port = self.spec_ports[slot]
        box = self.runtime.serving(port)
        while moment < end:
            share = self.proxy.weight_at(slot, moment) / 100
            count = self.rate * step * share
            requests += count
            if box is None or box.started_at is None or box.app.failing(moment - box.started_at):
                errors += count
            moment += step
        if requests == 0:
            return NoData(f"no request series for {slot}")
        p95 = box.app.p95 if box is not None else None
        return SlotStats(round(requests), min(round(errors), round(requests)), p95)


def slot_spec(tmp: Path, strategy: Strategy = Strategy.BLUEGREEN, **changes: Any) -> DeploySpec:
    base: dict[str, Any] = {
        "strategy": strategy,
        "port": BLUE,
        "proxy": "nginx",
        "proxy_config": tmp / "app.conf",
        "proxy_url": "http://127.0.0.1:8080",
        "watch": 0.0,
        "metrics": MetricsSource("prometheus", "http://127.0.0.1:9090"),
        "step_time": 30.0,
        "min_requests": 20,
    }
    base.update(changes)
    return make_spec(**base)


@dataclass
class SlotWorld(World):
    rate: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.proxy = FakeProxy(self.clock, self.kill, self.tmp / "app.conf")
        self.metrics = FakeMetrics(self.runtime, self.proxy, self.rate)

    def collaborators(self) -> Mapping[str, Any]:
        return {"proxy": self.proxy, "metrics": self.metrics}

    def serving(self) -> str | None:
        """The version the proxy sends every request to (None: none, or split)."""
        running = self.proxy.running
        sole = running.sole if running is not None else None
        if sole is None:
            return None
        box = self.runtime.serving(BLUE if sole == "blue" else GREEN)
        return box.app.version if box is not None else None

    def slot_of(self, name: str) -> str:
        return name.rsplit("-", 1)[1]

    def container(self, slot: str) -> str:
        return f"{self.spec.container_name}-{slot}"

    def names(self) -> set[str]:
        return set(self.runtime.containers)


__all__ = ["FakeMetrics", "FakeProxy", "SlotWorld", "container", "slot_spec"]
