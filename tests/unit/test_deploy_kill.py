"""SIGKILL after every step of a deploy, a failed deploy and a rollback: status tells the
truth and the next deploy converges. Never two containers on the port, never the old
container removed."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tagkeeper.deploy.engine import plan_request
from tagkeeper.deploy.status import read_status
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import PORT, REPO, App, KillableLedger, Killed, KillSwitch, World

Setup = Callable[[World], None]
Action = Callable[[World], object]


def _v1(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")


def _v1_then_v2(world: World) -> None:
    _v1(world)
    world.publish("v2.0.0")
    world.deploy("v2.0.0")


def _deploy(tag: str, app: App) -> Action:
    def act(world: World) -> object:
        world.publish(tag, app)
        return world.deploy(tag)

    return act


def _rollback(world: World) -> object:
    return world.rollback()


# name -> (setup, action, versions that may serve once repaired)
BOTH = {"v1.0.0", "v2.0.0"}
SCENARIOS: dict[str, tuple[Setup, Action, set[str]]] = {
    "deploy": (_v1, _deploy("v2.0.0", App(version="v2.0.0", healthy_after=1.0)), BOTH),
    "failing-deploy": (_v1, _deploy("v2.0.0", App(unhealthy_on_port=PORT)), {"v1.0.0"}),
    "failing-pre-check": (_v1, _deploy("v2.0.0", App(health="down")), {"v1.0.0"}),
    "rollback": (_v1_then_v2, _rollback, BOTH),
}


def _ticks(tmp: Path, setup: Setup, action: Action) -> int:
    world = World(tmp)
    try:
        setup(world)
        before = world.kill.count
        action(world)
        return world.kill.count - before
    finally:
        world.close()


def _restart(world: World) -> None:
    """A new tagkeeper process: the kill is over."""
    world.kill = KillSwitch()
    world.runtime.kill = world.kill
    world.ledger = KillableLedger(world.real_ledger, world.kill)


def _scratch() -> Path:
    """A folder in memory when there is one: each case writes its ledger many times."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="tk-kill-", dir=shm if shm.is_dir() else None))


def _cases() -> list[tuple[str, int]]:
    """Every (scenario, k): the operations of each action are counted on a fake world."""
    folder = _scratch()
    try:
        return [
            (name, k)
            for name, (setup, action, _) in SCENARIOS.items()
            for k in range(1, _ticks(folder / name, setup, action) + 1)
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


@pytest.mark.parametrize(("scenario", "k"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_killed_at_every_step_then_repaired(scratch: Path, scenario: str, k: int) -> None:
    setup, action, allowed = SCENARIOS[scenario]
    world = World(scratch)
    try:
        setup(world)
        serving_before = world.runtime.serving(PORT)
        assert serving_before is not None
        world.kill.at = world.kill.count + k
        with pytest.raises(Killed):
            action(world)
        # at the moment of the kill: never two on the port, the old container still exists
        assert world.runtime.conflicts == []
        ids = {c.id for c in world.runtime.containers.values()}
        assert serving_before.id in ids, "the old container was removed"
        _restart(world)
        # status tells the truth, and is read without changing anything
        records = world.real_ledger.history(environment="prod", repository=REPO)
        ops_before = len(world.runtime.history)
        status = read_status(
            world.spec, runtime=world.runtime, records=records, lock=(None, False), client=None
        )
        assert len(world.runtime.history) == ops_before
        codes = {d.code for d in status.drift}
        unfinished = [r for r in records if r.status is DeployStatus.STARTED]
        assert ("interrupted" in codes) == bool(unfinished)
        live = world.runtime.containers.get("app")
        if live is None:
            assert "missing" in codes
        elif live.status != "running":
            assert "stopped" in codes
        if "app-candidate" in world.runtime.containers:
            assert "leftover" in codes
        # the repair alone brings back one healthy container on the port
        engine = world.engine()
        world.publish("v3.0.0")
        request = plan_request(world.spec, f"{REPO}:v3.0.0")
        ctx = engine.context(request)
        engine.strategy.repair(ctx)
        assert world.runtime.conflicts == []
        assert world.runtime.running_on(PORT) == ["app"]
        assert world.serving() in allowed
        assert world.serving() is not None
        assert not [
            r
            for r in world.real_ledger.history(environment="prod")
            if r.status is DeployStatus.STARTED
        ]
        status = read_status(
            world.spec,
            runtime=world.runtime,
            records=world.real_ledger.history(environment="prod", repository=REPO),
            lock=(None, False),
            client=None,
        )
        assert [d for d in status.drift if d.code != "replaced"] == []
        # and the next deploy converges
        result = world.deploy("v3.0.0")
        assert result.status is DeployStatus.SUCCEEDED, result.message
        assert world.serving() == "v3.0.0"
        assert set(world.runtime.containers) == {"app", "app-previous"}
        previous = world.runtime.containers["app-previous"]
        assert previous.status == "exited"
        assert previous.restart_policy == "no"
        assert previous.app.version in allowed
        assert world.runtime.conflicts == []
    finally:
        world.close()


def test_every_scenario_is_killed_at_each_of_its_operations() -> None:
    counts = {name: max(k for n, k in CASES if n == name) for name in SCENARIOS}
    assert all(count > 10 for count in counts.values()), counts
    for name, count in counts.items():
        assert [k for n, k in CASES if n == name] == list(range(1, count + 1))
