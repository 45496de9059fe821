"""The canary strategy on a fake engine, proxy and steady traffic: steps judged on
metrics, a failed step sent back at once, no data never a pass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.deploy.metrics.model import SlotStats
from tagkeeper.deploy.metrics.prometheus import TimeMark
from tagkeeper.deploy.proxies.model import Weights
from tagkeeper.deploy.spec import Strategy
from tagkeeper.errors import ExitCode
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import App
from tests.unit.slot_fakes import NAMES, SlotWorld, slot_spec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def canary(tmp: Path, **changes: Any) -> SlotWorld:
    return SlotWorld(tmp, spec=slot_spec(tmp, Strategy.CANARY, **changes))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SlotWorld]:
    w = canary(tmp_path)
    try:
        w.publish("v1.0.0")
        w.deploy("v1.0.0")  # green serves v1
        yield w
    finally:
        w.close()


def weights(world: SlotWorld) -> list[dict[str, int]]:
    return [w.as_dict() for _, w in world.proxy.timeline]


def test_the_first_release_goes_at_once_when_the_old_slot_serves_nothing(
    tmp_path: Path,
) -> None:
    w = canary(tmp_path)
    try:
        w.publish("v1.0.0")
        result = w.deploy("v1.0.0")
        assert result.status is DeployStatus.SUCCEEDED
        assert weights(w)[-1] == {"blue": 0, "green": 100}
        assert len(w.proxy.timeline) == 2  # no step sent requests to a slot with nothing
        assert any("serves nothing" in (s.detail or "") for s in result.steps)
    finally:
        w.close()


def test_a_good_canary_goes_through_every_step_each_judged(world: SlotWorld) -> None:
    world.publish("v2.0.0")
    start = world.clock.now
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.SUCCEEDED
    assert world.serving() == "v2.0.0"
    assert weights(world)[-4:] == [
        {"blue": 5, "green": 95},
        {"blue": 10, "green": 90},
        {"blue": 50, "green": 50},
        {"blue": 100, "green": 0},
    ]
    for index, share in ((1, 5), (2, 10), (3, 50)):
        step = result.numbers[f"step_{index}"]
        assert step["weight"] == share
        assert step["outcome"] == "pass"
        # each step's window: 30 s at 100 requests a second, the step's share of them
        assert step["requests"] == pytest.approx(30 * 100 * share / 100, rel=0.05)
    assert world.clock.now - start >= 3 * 30  # each step held for step-time
    judged = [s for s in result.steps if s.phase == "judge"]
    assert [s.status for s in judged] == ["done"] * 3


def test_a_canary_whose_api_fails_is_sent_back_at_the_first_step(world: SlotWorld) -> None:
    world.publish("v2.0.0", App(version="v2.0.0", api_status=500))
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.ROLLED_BACK
    assert result.reason == "canary-step"
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert result.numbers["failed_step"] == 1
    assert result.numbers["failed_weight"] == 5
    assert result.numbers["verdict"]["error_rate"] == 1.0
    assert weights(world)[-2:] == [{"blue": 5, "green": 95}, {"blue": 0, "green": 100}]
    assert world.serving() == "v1.0.0"
    assert world.runtime.containers["app-blue"].status == "exited"  # stopped, kept
    record = world.real_ledger.history(environment="prod")[0]
    assert (record.tag, record.status, record.reason) == ("v2.0.0", DeployStatus.ROLLED_BACK,
                                                          "canary-step")  # fmt: skip
    assert record.numbers is not None
    assert record.numbers["verdict"]["outcome"] == "fail"
    # nothing was recorded as a rollback: the old version never stopped being current
    assert [r.rollback for r in world.real_ledger.history(environment="prod")] == [False] * 2


def test_the_failed_share_is_no_more_than_the_step_share(world: SlotWorld) -> None:
    world.publish("v2.0.0", App(version="v2.0.0", api_status=500))
    start = world.clock.now
    world.deploy("v2.0.0")
    end = world.clock.now
    failed = world.metrics.read(TimeMark(start), {"blue": "127.0.0.1:8520"}).slots["blue"]
    assert isinstance(failed, SlotStats)
    assert failed.errors_5xx > 0
    assert failed.errors_5xx <= 0.05 * 100 * (end - start)  # 5% of what was sent meanwhile


def test_a_slow_canary_fails_on_its_p95(world: SlotWorld) -> None:
    world.publish("v2.0.0", App(version="v2.0.0", p95=1.5))
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.ROLLED_BACK
    assert "p95 1500 ms is above 800 ms" in result.message


def test_too_little_traffic_is_inconclusive_and_fails_a_prod_step(tmp_path: Path) -> None:
    w = canary(tmp_path, min_requests=500)
    try:
        w.publish("v1.0.0")
        w.deploy("v1.0.0")
        w.publish("v2.0.0")
        result = w.deploy("v2.0.0")
        assert result.status is DeployStatus.ROLLED_BACK
        assert result.numbers["verdict"]["outcome"] == "inconclusive"
        assert w.serving() == "v1.0.0"
    finally:
        w.close()


def test_inconclusive_pass_lets_the_steps_go_on(tmp_path: Path) -> None:
    w = canary(tmp_path, min_requests=500, inconclusive="pass")
    try:
        w.publish("v1.0.0")
        w.deploy("v1.0.0")
        w.publish("v2.0.0")
        assert w.deploy("v2.0.0").status is DeployStatus.SUCCEEDED
    finally:
        w.close()


def test_no_data_rolls_the_step_back(world: SlotWorld) -> None:
    world.publish("v2.0.0")
    world.metrics.unreadable = True
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.ROLLED_BACK
    assert result.numbers["verdict"]["outcome"] == "no-data"
    assert world.serving() == "v1.0.0"


def test_a_slot_the_metrics_cannot_see_is_never_given_traffic(world: SlotWorld) -> None:
    world.publish("v2.0.0")
    world.metrics.not_ready = "Prometheus has no active target 127.0.0.1:8520"
    applied = len(world.proxy.applied)
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.FAILED
    assert result.reason == "metrics"
    assert result.exit_code == ExitCode.VERIFY
    assert len(world.proxy.applied) == applied
    assert "no active target" in result.message
    assert "app-blue" not in world.runtime.containers


def test_a_canary_that_exits_during_a_step_fails_it_at_once(world: SlotWorld) -> None:
    world.publish("v2.0.0", App(version="v2.0.0", exit_after=12))
    start = world.clock.now
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.ROLLED_BACK
    assert "exited" in result.message
    assert world.clock.now - start < 30  # it did not wait for the end of the step


def test_a_switch_that_fails_at_a_later_step_sends_everything_back(world: SlotWorld) -> None:
    world.publish("v2.0.0")
    world.proxy.fail, world.proxy.fail_at = "confirm", world.proxy.calls + 2
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.FAILED
    assert result.reason == "proxy"
    assert world.proxy.running == Weights.all_to("green", NAMES)
    assert world.runtime.containers["app-blue"].status == "exited"


def test_ctrl_c_during_a_step_sends_everything_back(world: SlotWorld) -> None:
    world.publish("v2.0.0")
    sleep = world.clock.sleep
    count = {"n": 0}

    def interrupting(seconds: float) -> None:
        sleep(seconds)
        count["n"] += 1
        if count["n"] == 40:
            raise KeyboardInterrupt

    world.clock.sleep = interrupting  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        world.deploy("v2.0.0")
    assert world.proxy.running == Weights.all_to("green", NAMES)
    assert world.statuses()[0] == ("v2.0.0", DeployStatus.FAILED, "interrupted")


def test_a_canary_then_watch_rolls_back_after_the_last_step(tmp_path: Path) -> None:
    w = canary(tmp_path, watch=60.0, watch_interval=10.0)
    try:
        w.publish("v1.0.0")
        w.deploy("v1.0.0")
        w.publish("v2.0.0", App(version="v2.0.0", fail_after=100))  # after the 3 steps
        result = w.deploy("v2.0.0")
        assert result.status is DeployStatus.ROLLED_BACK
        assert result.reason == "watch"
        assert w.serving() == "v1.0.0"
        assert result.followup is not None
        assert result.followup.rollback
    finally:
        w.close()
