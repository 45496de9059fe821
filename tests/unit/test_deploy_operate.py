"""``watch`` and ``switch`` on the slots, and ``status`` of a blue/green service, on fakes."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from tagkeeper.deploy.lock import DeployLock, Holder, lock_path
from tagkeeper.deploy.proxies.model import Weights
from tagkeeper.deploy.spec import Strategy
from tagkeeper.deploy.status import read_status
from tagkeeper.errors import DeployLocked, ExitCode, UsageError, VerificationFailed
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import REPO, App
from tests.unit.slot_fakes import NAMES, SlotWorld, slot_spec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tagkeeper.deploy.status import StatusReport


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SlotWorld]:
    w = SlotWorld(tmp_path, spec=slot_spec(tmp_path, watch_interval=10.0))
    try:
        yield w
    finally:
        w.close()


def to(slot: str) -> Weights:
    return Weights.all_to(slot, NAMES)


def two(world: SlotWorld, v2: App | None = None) -> None:
    """v1 on green, then v2 on blue (which serves)."""
    world.publish("v1.0.0")
    world.publish("v2.0.0", v2 or App(version="v2.0.0"))
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")


def status(world: SlotWorld) -> StatusReport:
    return read_status(
        world.spec, runtime=world.runtime,
        records=world.real_ledger.history(environment="prod", repository=REPO),
        lock=(None, False), client=world.client, proxy=world.proxy, clock=world.clock,
        sleep=world.clock.sleep,
    )  # fmt: skip


# -- watch ----------------------------------------------------------------------------------


def test_a_watch_of_a_good_release_passes(world: SlotWorld) -> None:
    two(world)
    result = world.engine().watch(duration=60.0)
    assert result.status == "passed"
    assert result.exit_code == 0
    assert len(result.report.checks) == 6
    assert result.watched.tag == "v2.0.0"
    steps = world.real_ledger.steps(result.watched.id or 0)
    assert ("watch", "done") in [(s.phase, s.status) for s in steps]


def test_a_watch_that_sees_the_release_go_bad_switches_back(world: SlotWorld) -> None:
    two(world, App(version="v2.0.0", fail_after=25))
    result = world.engine().watch(duration=120.0)
    assert result.status == "rolled_back"
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert world.serving() == "v1.0.0"
    assert [(t, s) for t, s, _ in world.statuses()[:3]] == [
        ("v1.0.0", DeployStatus.SUCCEEDED),  # the switch back, recorded as a rollback
        ("v2.0.0", DeployStatus.ROLLED_BACK),
        ("v1.0.0", DeployStatus.SUCCEEDED),
    ]
    assert result.followup is not None
    assert result.followup.rollback
    assert result.followup.slot == "green"
    assert world.runtime.containers["app-blue"].status == "exited"


def test_a_watch_deploys_the_previous_version_when_the_other_slot_lost_it(
    world: SlotWorld,
) -> None:
    two(world, App(version="v2.0.0", fail_after=25))
    del world.runtime.containers["app-green"]  # removed by hand
    result = world.engine().watch(duration=120.0)
    assert result.status == "rolled_back"
    assert result.followup is not None
    assert result.followup.rollback
    assert "instant" not in result.followup.numbers  # pulled and checked, then switched
    assert world.serving() == "v1.0.0"
    assert [(t, s) for t, s, _ in world.statuses()[:2]] == [
        ("v1.0.0", DeployStatus.SUCCEEDED), ("v2.0.0", DeployStatus.ROLLED_BACK),
    ]  # fmt: skip


def test_a_watch_whose_switch_back_fails_says_so_and_leaves_what_serves(
    world: SlotWorld,
) -> None:
    two(world, App(version="v2.0.0", fail_after=25))
    world.proxy.fail_next("test")
    result = world.engine().watch(duration=120.0)
    assert result.status == "failed"
    assert result.exit_code == ExitCode.VERIFY
    assert "the switch back failed" in result.message
    assert world.statuses()[0][:2] == ("v2.0.0", DeployStatus.SUCCEEDED)


def test_a_watch_with_nothing_to_roll_back_to_exits_8(world: SlotWorld) -> None:
    world.publish("v1.0.0", App(version="v1.0.0", fail_after=25))
    world.deploy("v1.0.0")
    result = world.engine().watch(duration=120.0)
    assert result.status == "failed"
    assert result.exit_code == ExitCode.NO_TARGET
    assert world.serving() == "v1.0.0"


def test_a_watch_with_nothing_deployed_is_bad_input(world: SlotWorld) -> None:
    with pytest.raises(UsageError, match="nothing to watch"):
        world.engine().watch(duration=10.0)


def test_watch_and_switch_apply_to_slot_strategies_only(tmp_path: Path) -> None:
    from tests.unit.deploy_fakes import World

    plain = World(tmp_path)
    try:
        with pytest.raises(UsageError, match="bluegreen and canary"):
            plain.engine().watch(duration=10.0)
        with pytest.raises(UsageError, match="bluegreen and canary"):
            plain.engine().switch(to("blue"))
    finally:
        plain.close()


def test_watch_and_switch_wait_for_a_deploy_that_holds_the_lock(world: SlotWorld) -> None:
    two(world)
    path = lock_path(world.tmp / "ledger.db", "prod", "app")
    holder = DeployLock(path, Holder.current(["tagkeeper deploy"], "bob"), what="prod")
    with holder:
        lock = DeployLock(path, Holder.current(["tagkeeper switch"], "al"), what="prod")
        with pytest.raises(DeployLocked):
            world.engine(lock=lock).switch(to("green"))
    assert world.proxy.running == to("blue")


# -- switch ---------------------------------------------------------------------------------


def test_switch_to_a_slot_checks_it_and_records_what_now_serves(world: SlotWorld) -> None:
    two(world)
    result = world.engine().switch(to("green"))
    assert world.serving() == "v1.0.0"
    assert result.previous == to("blue")
    assert result.deploy_id is not None
    record = world.real_ledger.get(result.deploy_id)
    assert record is not None
    assert (record.tag, record.strategy, record.slot, record.status) == (
        "v1.0.0", "switch", "green", DeployStatus.SUCCEEDED)  # fmt: skip
    assert status(world).drift == ()  # the ledger knows what serves


def test_switch_weights_split_the_traffic_and_record_nothing(world: SlotWorld) -> None:
    two(world)
    records = len(world.statuses())
    result = world.engine().switch(Weights.of({"blue": 90, "green": 10}))
    assert world.proxy.running == Weights.of({"blue": 90, "green": 10})
    assert result.deploy_id is None
    assert len(world.statuses()) == records


def test_switch_to_a_slot_that_does_not_serve_changes_nothing(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")  # green; blue holds nothing
    with pytest.raises(VerificationFailed, match="does not exist"):
        world.engine().switch(to("blue"))
    two_down = App(version="v2.0.0", fail_after=1)
    world.publish("v2.0.0", two_down)
    world.deploy("v2.0.0")  # blue serves v2, which goes down after 1 s
    world.clock.now += 5
    with pytest.raises(VerificationFailed):
        world.engine().switch(Weights.of({"blue": 50, "green": 50}))
    assert world.proxy.running == to("green")  # the repair took the broken blue out


def test_switch_writes_an_unreadable_file_anew(world: SlotWorld) -> None:
    two(world)
    world.proxy.corrupt = True
    result = world.engine().switch(to("blue"))
    assert world.proxy.file == to("blue")
    assert any("written anew" in note for note in result.notes)


# -- status ---------------------------------------------------------------------------------


def test_status_shows_the_live_slot_the_weights_and_each_slot(world: SlotWorld) -> None:
    two(world)
    report = status(world)
    payload = report.as_dict()
    assert report.live_slot == "blue"
    assert payload["proxy"]["weights"] == {"blue": 100, "green": 0}
    assert payload["proxy"]["running"]["weights"] == {"blue": 100, "green": 0}
    slots = {s["slot"]: s for s in payload["slots"]}
    assert slots["blue"]["weight"] == 100
    assert slots["blue"]["container"]["name"] == "app-blue"
    assert slots["blue"]["container"]["health"] == "healthy"
    assert slots["green"]["container"]["digest"] == world.runtime.registry[f"{REPO}:v1.0.0"][0]
    assert payload["live"]["name"] == "app-blue"
    assert report.drift == ()


def test_status_reports_a_file_the_proxy_does_not_run(world: SlotWorld) -> None:
    two(world)
    world.proxy.file = to("green")  # written, never reloaded
    codes = {d.code for d in status(world).drift}
    assert "proxy" in codes


def test_status_reports_a_slot_with_traffic_and_no_container(world: SlotWorld) -> None:
    two(world)
    del world.runtime.containers["app-blue"]
    drift = {d.code: d.message for d in status(world).drift}
    assert "no-slot" in drift
    assert "app-blue does not exist" in drift["no-slot"]


def test_status_reports_an_unhealthy_live_slot_and_a_replaced_one(world: SlotWorld) -> None:
    two(world, App(version="v2.0.0", fail_after=5))
    world.clock.now += 10
    codes = {d.code for d in status(world).drift}
    assert "unhealthy" in codes
    box = world.runtime.containers["app-blue"]
    labels = {**box.options.labels, "org.tagkeeper.digest": "sha256:" + "0" * 64}
    box.options = replace(box.options, labels=labels)  # replaced by hand
    assert "replaced" in {d.code for d in status(world).drift}


def test_status_of_canary_is_the_same(tmp_path: Path) -> None:
    w = SlotWorld(tmp_path, spec=slot_spec(tmp_path, Strategy.CANARY))
    try:
        w.publish("v1.0.0")
        w.deploy("v1.0.0")
        assert status(w).live_slot == "green"
    finally:
        w.close()
