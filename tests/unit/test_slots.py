"""The pure slot decisions (which slot serves, how to repair) and the watch loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.deploy.judge import Thresholds, WatchRule
from tagkeeper.deploy.metrics.model import MetricsError, NoData, Reading, SlotStats
from tagkeeper.deploy.metrics.prometheus import TimeMark
from tagkeeper.deploy.proxies.model import Weights
from tagkeeper.deploy.slots import SlotSeen, Unfinished, live_slot, plan_repair
from tagkeeper.deploy.watch import WatchPlan, watch_slot

if TYPE_CHECKING:
    from collections.abc import Mapping

SLOTS = ("blue", "green")


def w(blue: int, green: int) -> Weights:
    return Weights.of({"blue": blue, "green": green})


def test_the_live_slot_is_the_one_with_the_larger_weight() -> None:
    assert live_slot(w(100, 0)) == "blue"
    assert live_slot(w(0, 100)) == "green"
    assert live_slot(w(10, 90)) == "green"
    assert live_slot(w(50, 50)) == "blue"  # a tie: the first slot


# -- the repair plan -------------------------------------------------------------------------


def seen(slot: str, *, serves: bool = True, exists: bool = True, deploy_id: int | None = None,
         running: bool | None = None) -> SlotSeen:  # fmt: skip
    running = serves if running is None else running
    return SlotSeen(slot, f"app-{slot}", exists, running and exists, serves and exists, deploy_id)


def views(blue: SlotSeen, green: SlotSeen) -> dict[str, SlotSeen]:
    return {"blue": blue, "green": green}


def test_killed_before_the_switch_removes_the_new_container_and_keeps_the_weights() -> None:
    plan = plan_repair(w(100, 0), views(seen("blue"), seen("green", deploy_id=7)),
                       Unfinished(7, "green"))  # fmt: skip
    assert plan.weights is None
    assert plan.remove == ("app-green",)
    assert not plan.completed


def test_killed_before_the_switch_never_removes_a_container_of_another_deploy() -> None:
    # green holds the version before (deploy 3); deploy 7 was killed before creating its own
    plan = plan_repair(w(100, 0), views(seen("blue"), seen("green", deploy_id=3)),
                       Unfinished(7, "green"))  # fmt: skip
    assert plan.remove == ()
    assert plan.stop == ()


def test_killed_after_the_switch_with_a_serving_slot_completes_the_deploy() -> None:
    plan = plan_repair(w(0, 100), views(seen("blue"), seen("green", deploy_id=7)),
                       Unfinished(7, "green"))  # fmt: skip
    assert plan.completed
    assert plan.weights == w(0, 100)
    assert plan.reload  # the proxy may still run the file before (killed before the reload)


def test_killed_after_the_switch_with_a_broken_new_slot_goes_back() -> None:
    plan = plan_repair(w(0, 100), views(seen("blue"), seen("green", serves=False, running=True,
                                                            deploy_id=7)),
                       Unfinished(7, "green"))  # fmt: skip
    assert plan.weights == w(100, 0)
    assert plan.stop == ("app-green",)
    assert not plan.completed


def test_killed_during_a_canary_step_goes_back_to_the_old_slot() -> None:
    plan = plan_repair(w(90, 10), views(seen("blue"), seen("green", deploy_id=7)),
                       Unfinished(7, "green"))  # fmt: skip
    assert plan.weights == w(100, 0)
    assert plan.stop == ("app-green",)
    assert not plan.completed


def test_killed_during_a_canary_step_with_a_dead_old_slot_keeps_the_new_one() -> None:
    plan = plan_repair(w(90, 10), views(seen("blue", serves=False), seen("green", deploy_id=7)),
                       Unfinished(7, "green"))  # fmt: skip
    assert plan.weights == w(0, 100)
    assert not plan.completed  # the step was never judged


def test_no_interrupted_deploy_and_a_dead_live_slot_sends_traffic_to_the_other() -> None:
    plan = plan_repair(w(100, 0), views(seen("blue", serves=False), seen("green")), None)
    assert plan.weights == w(0, 100)


def test_nothing_to_do_leaves_everything() -> None:
    plan = plan_repair(w(100, 0), views(seen("blue"), seen("green")), None)
    assert plan == plan_repair(w(100, 0), views(seen("blue"), seen("green")), None)
    assert plan.weights is None
    assert not plan.reload
    assert plan.stop == plan.remove == ()


def test_a_proxy_that_may_not_run_the_file_is_reloaded() -> None:
    plan = plan_repair(w(100, 0), views(seen("blue"), seen("green")), None, proxy_drift=True)
    assert plan.reload
    assert plan.weights is None


def test_killed_before_it_had_a_slot_uses_the_container_labels() -> None:
    plan = plan_repair(w(100, 0), views(seen("blue"), seen("green", deploy_id=7)),
                       Unfinished(7, None))  # fmt: skip
    assert plan.remove == ("app-green",)


@given(
    blue=st.integers(0, 100),
    states=st.tuples(*(st.sampled_from(["serves", "broken", "stopped", "none"]),) * 2),
    deployed=st.sampled_from(["blue", "green", None]),
    owner=st.booleans(),
    drift=st.booleans(),
)
def test_a_repair_never_sends_traffic_to_a_slot_that_does_not_serve_when_one_does(
    blue: int, states: tuple[str, str], deployed: str | None, owner: bool, drift: bool
) -> None:
    weights = w(blue, 100 - blue)

    def make(slot: str, state: str) -> SlotSeen:
        ident = 7 if owner and slot == deployed else 3
        return SlotSeen(slot, f"app-{slot}", state != "none", state in ("serves", "broken"),
                        state == "serves", ident)  # fmt: skip

    found = {s: make(s, st_) for s, st_ in zip(SLOTS, states, strict=True)}
    newest = Unfinished(7, deployed) if deployed else None
    plan = plan_repair(weights, found, newest, proxy_drift=drift)
    after = plan.weights or weights
    assert sum(after.as_dict().values()) == 100  # never all at 0
    any_serves = any(v.serves for v in found.values())
    if plan.weights is not None:
        assert all(found[s].serves for s in after.serving)
    elif any_serves and newest is None:
        # left alone only when every slot with traffic serves
        assert all(found[s].serves for s in after.serving)
    # a container that takes traffic after the repair is never removed or stopped
    for name in (*plan.stop, *plan.remove):
        slot = name.removeprefix("app-")
        assert after.of_slot(slot) == 0
    if plan.completed:
        assert deployed is not None
        assert after.sole == deployed
        assert found[deployed].serves


# -- the watch loop ---------------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 100.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Script:
    """A metrics source whose windows are scripted (by check number)."""

    readings: list[Any]
    clock: Clock
    marks: list[float] = field(default_factory=list)
    reads: list[tuple[float, float]] = field(default_factory=list)

    def mark(self) -> TimeMark:
        self.marks.append(self.clock.now)
        return TimeMark(self.clock.now)

    def read(self, mark: TimeMark, slots: Mapping[str, str]) -> Reading:
        self.reads.append((mark.at, self.clock.now))
        item = self.readings[min(len(self.reads), len(self.readings)) - 1]
        if isinstance(item, Exception):
            raise item
        return Reading({"green": item, "blue": SlotStats(0, 0)}, self.clock.now - mark.at)

    def ready(self, instance: str, since: float) -> str | None:
        return None


GOOD = SlotStats(200, 0, 0.1)
BAD = SlotStats(200, 100, 0.1)


def plan(duration: float = 60, interval: float = 10) -> WatchPlan:
    return WatchPlan("green", "127.0.0.1:8521", "blue", "127.0.0.1:8520", duration, interval,
                     Thresholds())  # fmt: skip


def test_a_good_release_is_watched_to_the_end_in_back_to_back_windows() -> None:
    clock = Clock()
    source = Script([GOOD], clock)
    report = watch_slot(plan(), health=lambda: None, source=source, clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    assert not report.rollback
    assert len(report.checks) == 6
    assert report.seconds == pytest.approx(60)
    # each window starts where the previous ended: nothing before the watch, nothing lost
    assert source.reads[0][0] == 100.0
    for (start, _), (_, end) in zip(source.reads[1:], source.reads, strict=False):
        assert start == end


def test_two_bad_windows_in_a_row_roll_back_at_the_second_check() -> None:
    clock = Clock()
    source = Script([GOOD, BAD, BAD, GOOD], clock)
    report = watch_slot(plan(), health=lambda: None, source=source, clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    assert report.rollback
    assert len(report.checks) == 3
    assert report.first_breach_at == pytest.approx(20)
    assert report.seconds == pytest.approx(30)  # one interval after the first crossing
    assert "2 times in a row" in (report.reason or "")


def test_a_bad_window_then_a_good_one_does_not_roll_back() -> None:
    clock = Clock()
    source = Script([BAD, GOOD, BAD, GOOD, BAD, GOOD], clock)
    report = watch_slot(plan(), health=lambda: None, source=source, clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    assert not report.rollback


def test_an_unhealthy_live_slot_counts_as_a_crossing() -> None:
    clock = Clock()
    source = Script([GOOD], clock)
    report = watch_slot(plan(), health=lambda: "answered 503", source=source, clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    assert report.rollback
    assert len(report.checks) == 2
    assert "unhealthy" in report.checks[0].detail


def test_four_read_errors_in_a_row_roll_back_and_no_data_is_one() -> None:
    clock = Clock()
    errors = [MetricsError("down"), NoData("no series"), MetricsError("down"),
              MetricsError("down")]  # fmt: skip
    source = Script(errors, clock)
    report = watch_slot(plan(duration=100), health=lambda: None, source=source, clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    assert report.rollback
    assert len(report.checks) == 4
    assert "cannot be watched" in (report.reason or "")


def test_without_a_metrics_source_health_alone_decides() -> None:
    clock = Clock()
    answers = iter([None, None, "down", "down"])
    report = watch_slot(plan(), health=lambda: next(answers), source=None, clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    assert report.rollback
    assert len(report.checks) == 4


def test_a_duration_that_is_not_a_multiple_checks_at_the_end() -> None:
    clock = Clock()
    report = watch_slot(plan(duration=25), health=lambda: None, source=Script([GOOD], clock),
                        clock=clock, sleep=clock.sleep)  # fmt: skip
    assert [round(c.at) for c in report.checks] == [10, 20, 25]


def test_a_custom_rule_is_followed() -> None:
    clock = Clock()
    p = WatchPlan("green", "a:1", "blue", "a:2", 60, 10, Thresholds(), WatchRule(breaches=1))
    report = watch_slot(p, health=lambda: None, source=Script([BAD], clock), clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    assert report.rollback
    assert len(report.checks) == 1
