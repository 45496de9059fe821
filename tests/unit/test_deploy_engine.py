"""The deploy engine and the recreate strategy, on a fake engine: every phase, every failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.deploy.checks import parse_check
from tagkeeper.deploy.containers import PulledImage, RunOptions, owner_label
from tagkeeper.deploy.engine import plan_request
from tagkeeper.deploy.lock import DeployLock, Holder, lock_path
from tagkeeper.errors import DeployLocked, ExitCode, PolicyViolation, UsageError
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import PORT, REPO, SPARE, App, World, make_spec, new_world

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with new_world(tmp_path) as w:
        yield w


# -- the good path ---------------------------------------------------------------------------


def test_a_first_deploy_starts_the_container_after_its_pre_check(world: World) -> None:
    digest = world.publish("v1.0.0")
    result = world.deploy("v1.0.0")
    assert result.status is DeployStatus.SUCCEEDED
    assert result.exit_code == 0
    assert result.digest == digest
    assert world.serving() == "v1.0.0"
    live = world.runtime.containers["app"]
    assert live.options.image == f"{REPO}:v1.0.0@{digest}"
    assert live.options.env["SERVER_PORT"] == "8520"
    assert live.restart_policy == "unless-stopped"
    assert set(world.runtime.containers) == {"app"}
    assert "gap_seconds" not in result.numbers  # nothing served before
    assert world.statuses() == [("v1.0.0", DeployStatus.SUCCEEDED, None)]


def test_a_deploy_pre_checks_a_candidate_then_replaces_the_old_container(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    old_id = world.runtime.containers["app"].id
    world.publish("v1.1.0", App(version="v1.1.0", healthy_after=2.0))
    world.events.clear()
    result = world.deploy("v1.1.0")
    assert result.status is DeployStatus.SUCCEEDED
    assert world.serving() == "v1.1.0"
    previous = world.runtime.containers["app-previous"]
    assert previous.id == old_id
    assert previous.status == "exited"
    assert previous.restart_policy == "no"  # never comes back beside the new one
    candidate = next(c for c in world.runtime.removed if c.name == "app-candidate")
    assert candidate.options.env["SERVER_PORT"] == str(SPARE)
    assert candidate.options.port == SPARE
    assert candidate.options.restart == "no"
    assert candidate.options.labels["org.tagkeeper.role"] == "candidate"
    assert candidate.options.env["DB_PASSWORD"] == "hunter2-secret"
    # the gap: the stop of the old (0.5 s) plus the start and the 2 s the app needed
    gap = result.numbers["gap_seconds"]
    assert 2.5 <= gap <= 3.0
    assert result.numbers["healthy_after_seconds"] >= 2.0
    record = world.real_ledger.history(environment="prod")[0]
    assert record.numbers is not None
    assert record.numbers["gap_seconds"] == gap
    assert (record.strategy, record.container) == ("recreate", "app")
    phases = [(s.phase, s.status) for s in result.steps]
    assert phases.index(("pre-check", "done")) < phases.index(("stop-old", "start"))
    assert phases[-1] == ("finish", "succeeded")
    assert [p for p, _ in phases if p == "pull"] == ["pull", "pull"]  # recorded once known
    # the events the CLI shows, in order
    shown = [(e.phase, e.status) for e in world.events]
    assert ("post-start-check", "done") in shown
    assert all("hunter2-secret" not in e.message for e in world.events)


def test_labels_name_environment_container_role_digest_and_deploy(world: World) -> None:
    digest = world.publish("v1.0.0")
    result = world.deploy("v1.0.0")
    labels = world.runtime.containers["app"].options.labels
    assert labels["org.tagkeeper.env"] == "prod"
    assert labels["org.tagkeeper.container"] == "app"
    assert labels["org.tagkeeper.role"] == "live"
    assert labels["org.tagkeeper.digest"] == digest
    assert labels["org.tagkeeper.deploy"] == str(result.deploy_id)


# -- a bad image never touches the old container ---------------------------------------------

BAD_APPS = {
    "never-healthy": App(health="down"),
    "unknown": App(health="unknown"),
    "exits": App(exit_after=0.5),
    "api-500": App(api_status=500),
    "too-slow": App(healthy_after=60.0),
}


@pytest.mark.parametrize("mode", list(BAD_APPS))
def test_a_bad_image_fails_the_pre_check_and_the_old_container_is_never_touched(
    world: World, mode: str
) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    old = world.runtime.containers["app"]
    before = len(world.runtime.history)
    world.publish("v2.0.0", BAD_APPS[mode])
    smoke = [parse_check({"path": "/api/stats", "headers": {"X-Token": "${SMOKE_TOKEN}"}}, "t")]
    engine = world.engine()
    engine._smoke = smoke
    result = engine.deploy(plan_request(world.spec, f"{REPO}:v2.0.0"))
    assert result.status is DeployStatus.FAILED
    assert result.reason == "pre-check"
    assert result.exit_code == ExitCode.VERIFY
    # the old container was never stopped, renamed or removed, and serves
    touched = [op for _, _, op in world.runtime.history[before:] if op.split()[1] == "app"]
    assert touched == []
    assert old.status == "running"
    assert world.serving() == "v1.0.0"
    assert "app-candidate" not in world.runtime.containers
    assert world.statuses()[0] == ("v2.0.0", DeployStatus.FAILED, "pre-check")
    report = result.reports["candidate"]
    assert not report.ok
    assert report.log_tail is not None
    if mode == "exits":
        assert report.reason == "the container exited with code 1"
        assert "APPLICATION FAILED TO START" in report.log_tail
        assert report.seconds < 5  # at once, not after the 20 s timeout
    if mode == "api-500":
        assert "answered 500" in report.reason


def test_a_new_container_that_fails_after_the_switch_is_replaced_by_the_old_one(
    world: World,
) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    old_id = world.runtime.containers["app"].id
    world.publish("v2.0.0", App(version="v2.0.0", unhealthy_on_port=PORT))
    result = world.deploy("v2.0.0")
    assert result.status is DeployStatus.FAILED
    assert result.reason == "post-start-check"
    assert result.exit_code == ExitCode.VERIFY
    live = world.runtime.containers["app"]
    assert live.id == old_id
    assert live.status == "running"
    assert live.restart_policy == "unless-stopped"
    assert world.serving() == "v1.0.0"
    assert "app-previous" not in world.runtime.containers
    assert result.reports["restored"].ok
    assert result.numbers["downtime_seconds"] > 0
    assert world.runtime.conflicts == []


def test_ctrl_c_during_the_switch_restores_the_old_container(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.publish("v2.0.0", App(version="v2.0.0", healthy_after=5.0))
    engine = world.engine()
    calls = {"n": 0}
    real = world.runtime.answer

    def interrupt(request: httpx.Request) -> httpx.Response:
        if request.url.port == PORT and world.runtime.containers.get("app-previous"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
        return real(request)

    world.client._transport = httpx.MockTransport(interrupt)
    with pytest.raises(KeyboardInterrupt):
        engine.deploy(plan_request(world.spec, f"{REPO}:v2.0.0"))
    world.client._transport = world.runtime.transport()
    assert world.serving() == "v1.0.0"
    assert world.statuses()[0] == ("v2.0.0", DeployStatus.FAILED, "interrupted")


# -- refusals before anything happens --------------------------------------------------------


@pytest.mark.parametrize("image", [f"{REPO}:latest", f"{REPO}:dev-abc1234", REPO])
def test_mutable_tags_are_refused_for_prod_before_anything_runs(world: World, image: str) -> None:
    with pytest.raises(PolicyViolation):
        plan_request(world.spec, image)


def test_an_image_of_another_repository_is_refused(world: World) -> None:
    with pytest.raises(UsageError, match=r"is not an image of ghcr\.io/acme/app"):
        plan_request(world.spec, "ghcr.io/acme/other:v1.0.0")


def test_a_pinned_reference_must_match_what_is_pulled(world: World) -> None:
    world.publish("v1.0.0")
    other = "sha256:" + "e" * 64
    world.runtime.apps[other] = App()
    world.runtime.local[other] = PulledImage("x", other, "sha256:imgother")
    result = world.engine().deploy(plan_request(world.spec, f"{REPO}:v1.0.0@{other}"))
    assert result.digest == other  # pulled by digest: exactly what was pinned runs


def test_a_held_lock_refuses_the_deploy_and_changes_nothing(world: World) -> None:
    world.publish("v1.0.0")
    path = lock_path(world.tmp / "ledger.db", "prod", "app")
    holder = Holder.current(["tagkeeper", "deploy"], "bob")
    with DeployLock(path, holder, what="prod (container app)"):
        mine = DeployLock(path, Holder.current(["x"], "alice"), what="prod (container app)")
        with pytest.raises(DeployLocked, match="by bob"):
            world.deploy("v1.0.0", lock=mine)
    assert world.runtime.history == []
    assert world.statuses() == []


def test_an_unset_smoke_variable_or_env_file_stops_before_anything(world: World) -> None:
    world.publish("v1.0.0")
    spec = make_spec(env_file=world.tmp / "missing.env")
    with pytest.raises(UsageError, match="env-file"):
        world.engine(spec=spec).deploy(plan_request(spec, f"{REPO}:v1.0.0"))
    assert world.runtime.history == []


# -- rollback --------------------------------------------------------------------------------


def test_rollback_restarts_the_previous_container_when_it_holds_the_target(world: World) -> None:
    world.publish("v1.0.0")
    world.deploy("v1.0.0")
    v1_id = world.runtime.containers["app"].id
    world.publish("v1.1.0")
    world.deploy("v1.1.0")
    v11_id = world.runtime.containers["app"].id
    before = len(world.runtime.history)
    result = world.rollback()
    assert result.status is DeployStatus.SUCCEEDED
    assert result.rollback
    done = [op.split()[0] for _, _, op in world.runtime.history[before:]]
    assert "pull" not in done
    assert "create" not in done
    assert world.runtime.containers["app"].id == v1_id
    assert world.runtime.containers["app-previous"].id == v11_id
    assert world.runtime.containers["app-previous"].restart_policy == "no"
    assert world.serving() == "v1.0.0"
    assert result.numbers["restarted_previous"] is True
    assert world.statuses()[:2] == [
        ("v1.0.0", DeployStatus.SUCCEEDED, None),
        ("v1.1.0", DeployStatus.ROLLED_BACK, None),
    ]


def test_rollback_deploys_the_target_by_digest_with_a_pre_check_otherwise(world: World) -> None:
    d1 = world.publish("v1.0.0")
    world.deploy("v1.0.0")
    world.publish("v1.1.0")
    world.deploy("v1.1.0")
    world.publish("v1.2.0")
    world.deploy("v1.2.0")  # app-previous now holds v1.1.0, not the target... of v1.1.0
    world.runtime.publish(f"{REPO}:v1.0.0", App(version="re-pushed"))  # the tag moved since
    world.real_ledger.mark_rolled_back(
        world.real_ledger.history(environment="prod")[1].id or 0
    )  # v1.1.0 was rolled back earlier: the target is v1.0.0
    result = world.rollback()
    assert result.status is DeployStatus.SUCCEEDED
    assert result.digest == d1
    assert world.serving() == "v1.0.0"  # the recorded digest, not the re-pushed tag
    assert any(op.startswith(f"pull {REPO}:v1.0.0@{d1}") for op in world.ops("pull"))
    assert any(s.phase == "pre-check" for s in result.steps)


def test_a_failed_restart_of_the_previous_container_swaps_back(world: World) -> None:
    world.publish("v1.0.0", App(version="v1.0.0"))
    world.deploy("v1.0.0")
    world.publish("v1.1.0")
    world.deploy("v1.1.0")
    # v1.0.0 no longer answers on the port (say its config changed): the restart fails
    world.runtime.containers["app-previous"].app = App(unhealthy_on_port=PORT)
    result = world.rollback()
    assert result.status is DeployStatus.FAILED
    assert result.reason == "post-start-check"
    assert world.serving() == "v1.1.0"
    assert set(world.runtime.containers) == {"app", "app-previous"}
    assert world.runtime.containers["app-previous"].status == "exited"
    assert world.runtime.conflicts == []


def test_a_deploy_removes_throw_away_containers_of_verify_runs_that_were_killed(
    world: World,
) -> None:
    world.publish("v1.0.0")
    image = world.runtime.pull(f"{REPO}:v1.0.0")
    labels = {"org.tagkeeper.role": "verify", "org.tagkeeper.owner": owner_label(2**22 + 7)}
    world.runtime.create(RunOptions("tagkeeper-verify-left", image.image_id, 1, labels=labels))
    result = world.deploy("v1.0.0")
    assert "tagkeeper-verify-left" not in world.runtime.containers
    assert "removed tagkeeper-verify-left, left by a verify run that was killed" in result.notes
