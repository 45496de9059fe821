"""``status``: what runs, health now, the last deploys, the lock, and every drift."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from tagkeeper.deploy.containers import RunOptions
from tagkeeper.deploy.lock import Holder
from tagkeeper.deploy.status import read_status
from tests.unit.deploy_fakes import PORT, REPO, App, World, new_world

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tagkeeper.deploy.status import StatusReport


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with new_world(tmp_path) as w:
        yield w


def _status(w: World, *, lock: tuple[Holder | None, bool] = (None, False)) -> StatusReport:
    return read_status(
        w.spec,
        runtime=w.runtime,
        records=w.real_ledger.history(environment="prod", repository=REPO),
        lock=lock,
        client=w.client,
        clock=w.clock,
        sleep=w.clock.sleep,
    )


def test_a_steady_service_has_no_drift_and_says_what_runs(world: World) -> None:
    digest = world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.publish("v1.1.0")
    world.deploy("v1.1.0")
    report = _status(world)
    assert report.drift == ()
    live = report.live
    assert live is not None
    assert live.health == "healthy"
    assert live.state.image.startswith(f"{REPO}:v1.1.0@")
    roles = [(c.role, c.state.status) for c in report.containers]
    assert roles == [("live", "running"), ("previous", "exited")]
    assert [r.tag for r in report.deploys] == ["v1.1.0", "v1.0.0"]
    payload = report.as_dict()
    assert payload["drift"] == []
    assert payload["live"]["health"] == "healthy"
    assert payload["containers"][1]["digest"] == digest


def test_a_container_replaced_by_hand_is_drift(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    stray = world.runtime.publish(f"{REPO}:hotfix", App(version="hotfix"))
    world.runtime.pull(f"{REPO}:hotfix")
    world.runtime.remove("app")
    world.runtime.create(RunOptions(name="app", image=f"{REPO}:hotfix@{stray}", port=PORT))
    world.runtime.start("app")
    report = _status(world)
    assert [d.code for d in report.drift] == ["replaced"]
    assert "not started by tagkeeper" in report.drift[0].message
    assert report.live is not None
    assert report.live.health == "healthy"  # it answers; it is just not what was recorded


def test_copied_labels_do_not_hide_another_image(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    labels = dict(world.runtime.containers["app"].options.labels)
    other = world.runtime.publish(f"{REPO}:other", App(version="other"))
    world.runtime.pull(f"{REPO}:other")
    world.runtime.remove("app")
    world.runtime.create(
        RunOptions(name="app", image=f"{REPO}:other@{other}", port=PORT, labels=labels)
    )
    world.runtime.start("app")
    codes = [d.code for d in _status(world).drift]
    assert codes == ["replaced"]


def test_a_stopped_or_missing_container_and_a_running_previous_are_drift(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.publish("v1.1.0")
    world.deploy("v1.1.0")
    world.runtime.stop("app", 1)
    report = _status(world)
    assert [d.code for d in report.drift] == ["stopped"]
    world.runtime.start("app-previous")
    assert [d.code for d in _status(world).drift] == ["stopped", "previous-running"]
    world.runtime.stop("app-previous", 1)
    world.runtime.remove("app")
    report = _status(world)
    assert [d.code for d in report.drift] == ["missing"]
    assert report.live is None


def test_a_lock_held_by_a_running_deploy_is_shown_and_one_left_by_a_dead_one_is_drift(
    world: World,
) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    holder = Holder(4242, "web1", "bob", datetime(2026, 1, 1, tzinfo=UTC), "tagkeeper deploy")
    running = _status(world, lock=(holder, True))
    assert running.drift == ()
    assert running.as_dict()["lock"]["pid"] == 4242
    gone = _status(world, lock=(holder, False))
    assert [d.code for d in gone.drift] == ["stale-lock"]
    assert "pid 4242" in gone.drift[0].message


def test_an_unhealthy_live_container_says_why_without_waiting_long(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.runtime.containers["app"].app = App(health="down")
    before = world.clock.now
    report = _status(world)
    assert report.live is not None
    assert report.live.health is not None
    assert "503" in report.live.health
    assert world.clock.now - before < 5
