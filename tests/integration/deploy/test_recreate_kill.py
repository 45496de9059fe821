"""SIGKILL ``tagkeeper deploy`` (and ``rollback``) after each step in turn, on the real
engine: ``status`` tells the truth, and the next deploy repairs and converges. Never two
containers on the port, never the old container removed."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.errors import ExitCode
from tests.integration.deploy.engine_host import DeployHost, deploy_host

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.deploykit.app import AppImages
    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration

# every step a recreate deploy records, in order (the pull is recorded with the deploy)
DEPLOY_STEPS = [
    ("record", "done"),
    ("candidate-start", "start"),
    ("candidate-start", "done"),
    ("pre-check", "start"),
    ("pre-check", "done"),
    ("candidate-remove", "done"),
    ("stop-old", "start"),
    ("stop-old", "done"),
    ("rename-old", "start"),
    ("rename-old", "done"),
    ("start-new", "start"),
    ("start-new", "done"),
    ("post-start-check", "start"),
    ("post-start-check", "done"),
    ("finish", "succeeded"),
]
ROLLBACK_STEPS = [
    ("stop-old", "done"),
    ("restart-previous", "start"),
    ("restart-previous", "done"),
]


@pytest.fixture
def host(
    tmp_path: Path, docker_client: Any, registry: Registry, app_images: AppImages
) -> Iterator[DeployHost]:
    with deploy_host(tmp_path / "host", docker_client, registry, app_images) as made:
        made.write_config(**{"stop-timeout": '"5s"', "health-timeout": '"4s"'})
        yield made


def _kill_at(host: DeployHost, args: list[str], phase: str, status: str) -> None:
    seen = len(host.steps())
    proc = host.spawn(*args)
    try:
        host.wait_for_step(phase, status, after=seen)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _running_on_the_port(host: DeployHost) -> list[str]:
    return [
        suffix
        for suffix, data in host.family().items()
        if suffix != "candidate" and data["State"]["Running"]
    ]


def _check_and_converge(host: DeployHost, old_id: str) -> None:
    # at the moment of the kill: never two on the port, the old container still exists
    assert len(_running_on_the_port(host)) <= 1
    ids = {data["Id"] for data in host.family().values()}
    assert old_id in ids, "the old container was removed"
    # status tells the truth
    status = host.status()
    unfinished = [r for r in host.records() if r["status"] == "started"]
    codes = {d["code"] for d in status["drift"]}
    assert ("interrupted" in codes) == bool(unfinished), status["drift"]
    live = host.inspect()
    if live is None:
        assert status["live"] is None
        assert "missing" in codes
    else:
        assert status["live"]["id"] == live["Id"][:12]
        assert status["live"]["status"] == live["State"]["Status"]
        if not live["State"]["Running"]:
            assert "stopped" in codes
    if host.inspect("candidate") is not None:
        assert "leftover" in codes
    # the next deploy repairs first: even when its own image is refused, one container
    # serves afterwards, the old or (when it had passed) the new one
    refused = host.deploy("v9.0.0")
    assert refused.returncode == ExitCode.VERIFY, refused.stderr
    assert _running_on_the_port(host) == [""]
    assert host.running_version() in ("1.0.0", "2.0.0")
    # and the one after converges
    done = host.deploy("v3.0.0")
    assert done.returncode == 0, done.stderr
    assert host.running_version() == "3.0.0"
    assert set(host.family()) == {"", "previous"}
    previous = host.inspect("previous")
    assert previous is not None
    assert not previous["State"]["Running"]
    assert previous["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert [r for r in host.records() if r["status"] == "started"] == []
    assert host.status()["drift"] == []


@pytest.mark.parametrize(
    ("phase", "status"), DEPLOY_STEPS, ids=[f"{p}-{s}" for p, s in DEPLOY_STEPS]
)
def test_a_deploy_killed_after_a_step_is_repaired_by_the_next(
    host: DeployHost, phase: str, status: str
) -> None:
    for tag in ("v1.0.0", "v2.0.0", "v3.0.0"):
        host.publish(tag, version=tag.lstrip("v"))
    host.publish("v9.0.0", version="3.0.0", HEALTH="down", EXIT_AFTER="0.3")
    done = host.deploy("v1.0.0")
    assert done.returncode == 0, done.stderr
    old = host.inspect()
    assert old is not None
    _kill_at(host, ["deploy", "--env", "prod", "--image", host.ref("v2.0.0")], phase, status)
    _check_and_converge(host, old["Id"])


@pytest.mark.parametrize(
    ("phase", "status"), ROLLBACK_STEPS, ids=[f"{p}-{s}" for p, s in ROLLBACK_STEPS]
)
def test_a_rollback_killed_after_a_step_is_repaired_by_the_next_deploy(
    host: DeployHost, phase: str, status: str
) -> None:
    for tag in ("v1.0.0", "v2.0.0", "v3.0.0"):
        host.publish(tag, version=tag.lstrip("v"))
    host.publish("v9.0.0", version="3.0.0", HEALTH="down", EXIT_AFTER="0.3")
    for tag in ("v1.0.0", "v2.0.0"):
        done = host.deploy(tag)
        assert done.returncode == 0, done.stderr
    current = host.inspect()
    assert current is not None
    _kill_at(host, ["rollback", "--env", "prod"], phase, status)
    _check_and_converge(host, current["Id"])
