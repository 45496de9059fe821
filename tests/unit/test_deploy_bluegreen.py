"""The bluegreen strategy on a fake engine and proxy: every phase, every failure, the watch
and its switch back, and manual rollbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.deploy.proxies.model import Weights
from tagkeeper.errors import ExitCode, UsageError
from tagkeeper.rollback.resolve import DeployStatus, previous_from_history
from tests.unit.deploy_fakes import REPO, App
from tests.unit.slot_fakes import BLUE, GREEN, NAMES, SlotWorld, slot_spec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tagkeeper.deploy.engine import DeployResult


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SlotWorld]:
    w = SlotWorld(tmp_path, spec=slot_spec(tmp_path))
    try:
        yield w
    finally:
        w.close()


def to(slot: str) -> Weights:
    return Weights.all_to(slot, NAMES)


def watched(world: SlotWorld, **changes: Any) -> None:
    world.spec = slot_spec(world.tmp, watch=120.0, watch_interval=10.0, **changes)


def previous(world: SlotWorld) -> str:
    history = world.real_ledger.history(environment="prod", repository=REPO)
    return previous_from_history(history, repository=REPO, environment="prod").tag


def test_a_first_deploy_goes_to_the_idle_slot_and_switches_after_its_check(
    world: SlotWorld,
) -> None:
    digest = world.publish("v1.0.0")
    result = world.deploy("v1.0.0")
    assert result.status is DeployStatus.SUCCEEDED
    assert result.exit_code == 0
    assert result.slot == "green"  # the file sent everything to blue, which held nothing
    assert world.proxy.file == world.proxy.running == to("green")
    assert world.serving() == "v1.0.0"
    box = world.runtime.containers["app-green"]
    assert box.options.port == GREEN
    assert box.options.env["SERVER_PORT"] == str(GREEN)
    assert box.options.labels["org.tagkeeper.slot"] == "green"
    assert box.options.labels["org.tagkeeper.role"] == "slot"
    assert box.options.labels["org.tagkeeper.digest"] == digest
    record = world.real_ledger.history(environment="prod")[0]
    assert (record.status, record.strategy, record.slot) == (DeployStatus.SUCCEEDED,
                                                              "bluegreen", "green")  # fmt: skip
    phases = [s.phase for s in result.steps]
    # checked on its own port before the proxy ever sent it a request
    assert phases.index("pre-check") < phases.index("proxy-write")
    assert phases.index("proxy-confirm") < phases.index("finish")
    assert result.numbers["switch_seconds"] == pytest.approx(0.2)


def test_the_next_deploy_goes_to_the_other_slot_and_the_old_one_keeps_running(
    world: SlotWorld,
) -> None:
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.deploy("v1.0.0")
    result = world.deploy("v2.0.0")
    assert result.slot == "blue"
    assert world.serving() == "v2.0.0"
    assert world.runtime.containers["app-green"].status == "running"  # keep-previous running
    assert world.runtime.conflicts == []
    # the switch is the only moment traffic moved, and it went from one slot to the other
    assert [w.sole for _, w in world.proxy.timeline] == ["blue", "green", "blue"]


def test_keep_previous_stopped_stops_the_old_slot_after_the_release(world: SlotWorld) -> None:
    world.spec = slot_spec(world.tmp, keep_previous="stopped")
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")
    old = world.runtime.containers["app-green"]
    assert old.status == "exited"
    assert old.restart_policy == "no"  # never back on its own beside the new one


def test_a_third_deploy_replaces_the_version_before_the_current_one(world: SlotWorld) -> None:
    for tag in ("v1.0.0", "v2.0.0", "v3.0.0"):
        world.publish(tag)
        world.deploy(tag)
    assert world.serving() == "v3.0.0"
    assert world.runtime.version_of("app-blue") == "v2.0.0"
    assert world.runtime.version_of("app-green") == "v3.0.0"
    assert {c.app.version for c in world.runtime.removed} == {"v1.0.0"}


@pytest.mark.parametrize(
    "app",
    [App(health="down"), App(health="unknown"), App(exit_after=0.5), App(healthy_after=600)],
    ids=["down", "unknown", "exits", "too-slow"],
)
def test_a_bad_image_fails_its_pre_check_and_the_proxy_is_never_touched(
    world: SlotWorld, app: App
) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.publish("v2.0.0", app)
    applied = list(world.proxy.applied)
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.FAILED
    assert result.reason == "pre-check"
    assert result.exit_code == ExitCode.VERIFY
    assert world.proxy.applied == applied
    assert world.serving() == "v1.0.0"
    assert "app-blue" not in world.runtime.containers  # removed
    assert result.reports["candidate"].log_tail is not None


@pytest.mark.parametrize("phase", ["test", "reload", "confirm"])
def test_a_switch_that_does_not_take_effect_restores_the_file_and_exits_13(
    world: SlotWorld, phase: str
) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.publish("v2.0.0")
    world.proxy.fail_next(phase)
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.FAILED
    assert result.reason == "proxy"
    assert result.exit_code == ExitCode.VERIFY
    assert world.proxy.file == world.proxy.running == to("green")
    assert world.serving() == "v1.0.0"
    assert "app-blue" not in world.runtime.containers
    assert "still serves" in result.message


def test_a_file_that_could_not_be_restored_leaves_both_slots_running(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.publish("v2.0.0")
    world.proxy.fail_next("restore")
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.FAILED
    assert "could not be restored" in result.message
    assert world.runtime.containers["app-blue"].status == "running"
    assert world.runtime.containers["app-green"].status == "running"


@pytest.mark.parametrize(("missing", "corrupt", "words"), [
    (True, False, "proxy-snippet --env prod --init"),
    (False, True, "tagkeeper switch --env prod --to SLOT"),
])  # fmt: skip
def test_a_missing_or_unreadable_proxy_file_stops_before_anything_changes(
    world: SlotWorld, missing: bool, corrupt: bool, words: str
) -> None:
    world.publish("v1.0.0")
    world.proxy.exists, world.proxy.corrupt = not missing, corrupt
    with pytest.raises(UsageError) as caught:
        world.deploy("v1.0.0")
    assert words in caught.value.diagnostics()
    assert world.runtime.containers == {}
    assert world.ops("pull") == []


def test_an_operator_split_is_drained_before_the_slot_is_replaced(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.publish("v3.0.0")
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")  # blue v2, green v1
    world.engine().switch(Weights.of({"blue": 90, "green": 10}))
    world.deploy("v3.0.0")
    # green took 10% until every request went to blue; only then was it replaced
    weights = [w for _, w in world.proxy.timeline]
    assert weights[-3:] == [Weights.of({"blue": 90, "green": 10}), to("blue"), to("green")]
    assert world.runtime.removed[-1].app.version == "v1.0.0"
    assert world.serving() == "v3.0.0"


def test_a_crashed_live_slot_is_taken_out_before_the_deploy(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.publish("v3.0.0")
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")  # blue serves v2, green holds v1
    world.runtime.containers["app-blue"].status = "exited"
    result = world.deploy("v3.0.0")
    assert any("does not serve" in note for note in result.notes)
    assert result.slot == "blue"  # the healthy green kept serving while blue was replaced
    assert world.serving() == "v3.0.0"
    assert [w.sole for _, w in world.proxy.timeline][-2:] == ["green", "blue"]


# -- manual rollback ---------------------------------------------------------------------------


def test_a_rollback_is_an_instant_switch_when_the_idle_slot_holds_the_target(
    world: SlotWorld,
) -> None:
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")
    pulls, creates = len(world.ops("pull")), len(world.ops("create"))
    result = world.rollback()
    assert result.status is DeployStatus.SUCCEEDED
    assert result.numbers["instant"] is True
    assert (len(world.ops("pull")), len(world.ops("create"))) == (pulls, creates)
    assert world.serving() == "v1.0.0"
    assert world.statuses()[:3] == [
        ("v1.0.0", DeployStatus.SUCCEEDED, None),
        ("v2.0.0", DeployStatus.ROLLED_BACK, None),
        ("v1.0.0", DeployStatus.SUCCEEDED, None),
    ]


def test_a_rollback_starts_the_idle_slot_when_it_was_stopped(world: SlotWorld) -> None:
    world.spec = slot_spec(world.tmp, keep_previous="stopped")
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")
    result = world.rollback()
    assert result.status is DeployStatus.SUCCEEDED
    assert world.serving() == "v1.0.0"
    assert world.runtime.containers["app-green"].restart_policy == "unless-stopped"
    assert world.runtime.containers["app-blue"].status == "exited"  # keep-previous stopped


def test_a_rollback_whose_target_the_idle_slot_does_not_hold_deploys_it(
    world: SlotWorld,
) -> None:
    for tag in ("v1.0.0", "v2.0.0", "v3.0.0"):
        world.publish(tag)
        world.deploy(tag)
    world.real_ledger.mark_rolled_back(world.real_ledger.history(environment="prod")[1].id or 0)
    result = world.rollback()  # v2 was rolled back: the target is v1, which nothing holds
    assert result.status is DeployStatus.SUCCEEDED
    assert "instant" not in result.numbers
    assert world.serving() == "v1.0.0"
    assert any(op.startswith("pull") and "@sha256:" in op for op in world.ops("pull"))


def test_a_rollback_to_what_already_serves_changes_nothing(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")
    # a switch back whose record was lost (killed before it): green (v1) serves
    world.proxy.file = world.proxy.running = to("green")
    applied = len(world.proxy.applied)
    result = world.rollback()
    assert result.status is DeployStatus.SUCCEEDED
    assert len(world.proxy.applied) == applied
    assert world.serving() == "v1.0.0"


# -- the watch ------------------------------------------------------------------------------


def _release_that_fails(world: SlotWorld, after: float = 30.0) -> DeployResult:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    watched(world)
    world.publish("v2.0.0", App(version="v2.0.0", fail_after=after))
    return world.deploy("v2.0.0")


def test_a_release_that_goes_bad_is_switched_back_by_the_watch(world: SlotWorld) -> None:
    result = _release_that_fails(world)
    assert result.status is DeployStatus.ROLLED_BACK
    assert result.reason == "watch"
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert world.serving() == "v1.0.0"
    assert world.runtime.containers["app-blue"].status == "exited"  # the bad one, kept
    assert "the live slot failed its health check" in result.numbers["watch_reason"]
    # the ledger: the bad release rolled back, a rollback record for the switch back
    history = world.real_ledger.history(environment="prod")
    assert [(r.tag, r.status, r.rollback, r.slot) for r in history[:3]] == [
        ("v1.0.0", DeployStatus.SUCCEEDED, True, "green"),
        ("v2.0.0", DeployStatus.ROLLED_BACK, False, "blue"),
        ("v1.0.0", DeployStatus.SUCCEEDED, False, "green"),
    ]
    assert result.followup is not None
    assert result.followup.deploy_id == history[0].id
    with pytest.raises(Exception, match="no successful deploy"):
        previous(world)  # v1 serves; nothing before it: previous says so, never v2


def test_a_release_whose_api_fails_is_rolled_back_on_its_metrics(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    watched(world)
    world.publish("v2.0.0", App(version="v2.0.0", api_status=503))  # health stays UP
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.ROLLED_BACK
    verdict = result.numbers["watch_verdict"]
    assert verdict["outcome"] == "fail"
    assert verdict["error_rate"] == 1.0
    assert verdict["requests"] == pytest.approx(1000, abs=5)  # 100/s over a 10 s window
    assert result.numbers["watch_checks"] == 2
    assert world.serving() == "v1.0.0"


def test_the_switch_back_comes_within_one_interval_of_the_first_crossing(
    world: SlotWorld,
) -> None:
    _release_that_fails(world, after=30.0)
    # the release went bad 30 s after it started: the first check after that saw it,
    # the next one (10 s later) confirmed it, and the switch back followed at once
    back = next(t for t, w in reversed(world.proxy.timeline) if w.sole == "green")
    went_bad = world.runtime.containers["app-blue"].started_at or 0.0
    assert 30.0 < back - went_bad <= 30.0 + 2 * 10.0 + 1.0


def test_previous_answers_correctly_after_the_watch_rolled_back(world: SlotWorld) -> None:
    world.publish("v0.9.0")
    world.deploy("v0.9.0")
    _release_that_fails(world)
    assert previous(world) == "v0.9.0"


def test_a_good_release_passes_the_watch_and_then_applies_keep_previous(
    world: SlotWorld,
) -> None:
    world.publish("v1.0.0")
    world.publish("v2.0.0")
    world.deploy("v1.0.0")
    watched(world, keep_previous="stopped")
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.SUCCEEDED
    assert result.numbers["watch_checks"] == 12
    steps = [(s.phase, s.status) for s in result.steps]
    assert steps.index(("watch", "done")) < steps.index(("stop", "done"))


def test_the_watch_deploys_the_previous_version_when_the_old_slot_lost_it(
    world: SlotWorld,
) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")  # green
    del world.runtime.containers["app-green"]  # removed by hand
    watched(world)
    world.publish("v2.0.0", App(version="v2.0.0", fail_after=20))
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.ROLLED_BACK
    assert result.followup is not None
    assert result.followup.rollback
    assert result.followup.status is DeployStatus.SUCCEEDED
    assert world.serving() == "v1.0.0"
    assert [(t, s) for t, s, _ in world.statuses()[:2]] == [
        ("v1.0.0", DeployStatus.SUCCEEDED), ("v2.0.0", DeployStatus.ROLLED_BACK),
    ]  # fmt: skip


def test_a_watch_with_nothing_to_roll_back_to_says_so_with_exit_8(world: SlotWorld) -> None:
    watched(world)
    world.publish("v1.0.0", App(version="v1.0.0", fail_after=20))
    result = world.deploy("v1.0.0")
    assert result.status is DeployStatus.FAILED
    assert result.reason == "watch-no-target"
    assert result.exit_code == ExitCode.NO_TARGET
    assert "nothing to roll back to" in result.message


def test_a_rollback_is_never_watched(world: SlotWorld) -> None:
    world.publish("v1.0.0", App(version="v1.0.0", fail_after=5))
    world.publish("v2.0.0")
    world.deploy("v1.0.0")
    world.deploy("v2.0.0")
    watched(world)
    result = world.rollback()  # v1 goes bad after 5 s: a watch would roll back again
    assert result.status is DeployStatus.SUCCEEDED
    assert "watch" not in {s.phase for s in result.steps}


def test_ctrl_c_during_the_watch_puts_the_old_slot_back(world: SlotWorld) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    watched(world)
    world.publish("v2.0.0")
    ticks = {"n": 0}
    sleep = world.clock.sleep

    def interrupting(seconds: float) -> None:
        sleep(seconds)
        ticks["n"] += 1
        if ticks["n"] == 6:
            raise KeyboardInterrupt

    world.clock.sleep = interrupting  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        world.deploy("v2.0.0")
    assert world.serving() == "v1.0.0"
    assert world.runtime.containers["app-blue"].status == "exited"
    assert world.statuses()[0] == ("v2.0.0", DeployStatus.FAILED, "interrupted")


def test_the_slot_ports_and_the_host_port_are_the_ones_configured(world: SlotWorld) -> None:
    assert world.spec.slot_ports == (BLUE, GREEN)
