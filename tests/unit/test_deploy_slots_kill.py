"""SIGKILL before every operation of a blue/green deploy, a canary, a watch that rolls back
and an instant rollback: the proxy never has every weight at 0, ``status`` reports the
weights the file holds and the proxy runs, the repair alone brings one serving slot back,
and the next deploy converges."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tagkeeper.deploy.engine import plan_request
from tagkeeper.deploy.spec import Strategy
from tagkeeper.deploy.status import read_status
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import REPO, App, KillableLedger, Killed, KillSwitch
from tests.unit.slot_fakes import BLUE, GREEN, SlotWorld, slot_spec

Setup = Callable[[SlotWorld], None]
Action = Callable[[SlotWorld], object]
BOTH = {"v1.0.0", "v2.0.0"}


def _v1(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")


def _v1_v2(world: SlotWorld) -> None:
    _v1(world)
    world.publish("v2.0.0")
    world.deploy("v2.0.0")


def _deploy(app: App, **spec: Any) -> Action:
    def act(world: SlotWorld) -> object:
        if spec:
            world.spec = slot_spec(world.tmp, world.spec.strategy, **spec)
        world.publish("v2.0.0", app)
        return world.deploy("v2.0.0")

    return act


def _rollback(world: SlotWorld) -> object:
    return world.rollback()


WATCH = {"watch": 30.0, "watch_interval": 10.0}
# name -> (strategy, setup, action, versions that may serve once repaired)
SCENARIOS: dict[str, tuple[Strategy, Setup, Action, set[str]]] = {
    "bluegreen": (Strategy.BLUEGREEN, _v1, _deploy(App(version="v2.0.0"), **WATCH), BOTH),
    # killed before the watch saw it go bad, the repair finds v2 serving: it stays
    "bluegreen-watch-fails": (
        Strategy.BLUEGREEN, _v1, _deploy(App(version="v2.0.0", fail_after=5), **WATCH), BOTH,
    ),
    "bluegreen-pre-check-fails": (Strategy.BLUEGREEN, _v1, _deploy(App(health="down")),
                                  {"v1.0.0"}),
    "canary": (Strategy.CANARY, _v1, _deploy(App(version="v2.0.0")), BOTH),
    "canary-fails": (Strategy.CANARY, _v1, _deploy(App(version="v2.0.0", api_status=500)),
                     {"v1.0.0"}),
    "rollback": (Strategy.BLUEGREEN, _v1_v2, _rollback, BOTH),
}  # fmt: skip


def _world(folder: Path, strategy: Strategy) -> SlotWorld:
    return SlotWorld(folder, spec=slot_spec(folder, strategy, step_time=10.0))


def _ticks(folder: Path, name: str) -> int:
    strategy, setup, action, _ = SCENARIOS[name]
    world = _world(folder, strategy)
    try:
        setup(world)
        before = world.kill.count
        action(world)
        return world.kill.count - before
    finally:
        world.close()


def _scratch() -> Path:
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="tk-slotkill-", dir=shm if shm.is_dir() else None))


def _cases() -> list[tuple[str, int]]:
    folder = _scratch()
    try:
        return [
            (name, k)
            for name in SCENARIOS
            for k in range(1, _ticks(folder / name, name) + 1)
        ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


CASES = _cases()


@pytest.fixture
def scratch() -> Iterator[Path]:
    folder = _scratch()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _restart(world: SlotWorld) -> None:
    """A new tagkeeper process: the kill is over."""
    world.kill = KillSwitch()
    world.runtime.kill = world.kill
    world.proxy.kill = world.kill
    world.ledger = KillableLedger(world.real_ledger, world.kill)


def _status(world: SlotWorld) -> object:
    return read_status(
        world.spec,
        runtime=world.runtime,
        records=world.real_ledger.history(environment="prod", repository=REPO),
        lock=(None, False),
        client=world.client,
        proxy=world.proxy,
        clock=world.clock,
        sleep=world.clock.sleep,
    )


@pytest.mark.parametrize(("scenario", "k"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_killed_at_every_step_then_repaired(scratch: Path, scenario: str, k: int) -> None:
    strategy, setup, action, allowed = SCENARIOS[scenario]
    world = _world(scratch, strategy)
    try:
        setup(world)
        world.kill.at = world.kill.count + k
        with pytest.raises(Killed):
            action(world)
        # every moment: the proxy ran weights that add up to 100 (never all 0)
        assert all(sum(w.as_dict().values()) == 100 for _, w in world.proxy.timeline)
        assert world.runtime.conflicts == []
        _restart(world)
        # status tells the truth about the weights, read without changing anything
        ops = len(world.runtime.history)
        status = _status(world)
        assert len(world.runtime.history) == ops
        payload = status.as_dict()  # type: ignore[attr-defined]
        assert world.proxy.file is not None
        assert payload["proxy"]["weights"] == world.proxy.file.as_dict()
        assert world.proxy.running is not None
        assert payload["proxy"]["running"]["weights"] == world.proxy.running.as_dict()
        codes = {d["code"] for d in payload["drift"]}
        assert ("proxy" in codes) == (world.proxy.file != world.proxy.running)
        records = world.real_ledger.history(environment="prod")
        assert ("interrupted" in codes) == any(r.status is DeployStatus.STARTED for r in records)
        # the repair alone: the proxy runs its file, one slot serves every request
        engine = world.engine()
        world.publish("v3.0.0")
        ctx = engine.context(plan_request(world.spec, f"{REPO}:v3.0.0"))
        engine.strategy.repair(ctx)
        assert world.proxy.running == world.proxy.file
        assert world.serving() in allowed
        assert not [r for r in world.real_ledger.history(environment="prod")
                    if r.status is DeployStatus.STARTED]  # fmt: skip
        assert world.runtime.conflicts == []
        # and the next deploy converges
        world.spec = slot_spec(world.tmp, strategy, step_time=10.0)
        result = world.deploy("v3.0.0")
        assert result.status is DeployStatus.SUCCEEDED, result.message
        assert world.serving() == "v3.0.0"
        assert world.proxy.running == world.proxy.file
        payload = _status(world).as_dict()  # type: ignore[attr-defined]
        assert [d for d in payload["drift"] if d["code"] != "replaced"] == []
        assert {world.runtime.containers[n].port for n in world.runtime.containers} <= {
            BLUE, GREEN}  # fmt: skip
    finally:
        world.close()


def test_every_scenario_is_killed_at_each_of_its_operations() -> None:
    counts = {name: max(k for n, k in CASES if n == name) for name in SCENARIOS}
    assert all(count > 10 for count in counts.values()), counts
    for name, count in counts.items():
        assert [k for n, k in CASES if n == name] == list(range(1, count + 1))
