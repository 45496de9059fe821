"""``tagkeeper verify --image`` on the real engine: the throw-away container is removed
whatever ends the run; one left by a run killed outright is removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.errors import ExitCode
from tests.integration.deploy.engine_host import ROOT
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.deploykit.app import AppImages

pytestmark = pytest.mark.integration


@pytest.fixture
def image(docker_client: Any, app_images: AppImages) -> Iterator[str]:
    """The app under a tag of this test's own (removed after, with any container left)."""
    ref = f"tk-verify-{uuid.uuid4().hex[:8]}:1.0.0"
    repo, _, tag = ref.rpartition(":")
    docker_client.api.tag(app_images.get("1.0.0").id, repo, tag)
    yield ref
    for container in _throwaways(docker_client, ref):
        docker_client.api.remove_container(container["Id"], force=True)
    docker_client.api.remove_image(ref)


def _throwaways(client: Any, ref: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.api.containers(
        all=True, filters={"label": [f"org.tagkeeper.image={ref}", "org.tagkeeper.role=verify"]}
    )
    return found


def _verify(tmp_path: Path, ref: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tagkeeper", "verify", "--image", ref, "--network", "host",
        "--port", str(free_port()), "--port-env", "SERVER_PORT", "--interval", "200ms",
        *extra,
    ]  # fmt: skip


def _environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _start(tmp_path: Path, argv: list[str], client: Any, ref: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _running(client, ref):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"no throw-away container came up: {proc.communicate()}")
        time.sleep(0.05)
    return proc


def _running(client: Any, ref: str) -> bool:
    return any(c["State"] == "running" for c in _throwaways(client, ref))


def test_a_passing_and_a_failing_image_leave_no_container(
    tmp_path: Path, docker_client: Any, image: str
) -> None:
    done = subprocess.run(_verify(tmp_path, image, "-f", "json"), cwd=tmp_path, env=_environ(),
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert _throwaways(docker_client, image) == []
    done = subprocess.run(_verify(tmp_path, image, "--env", "EXIT_AFTER=0.5", "--successes", "5",
                                  "--interval", "1s"),  # 4 s to see it exit, even when loaded
                          cwd=tmp_path,
                          env=_environ(), capture_output=True, text=True, check=False,
                          timeout=120)  # fmt: skip
    assert done.returncode == ExitCode.VERIFY
    assert "the container exited with code 1" in done.stderr
    assert "  | " in done.stderr
    assert _throwaways(docker_client, image) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_remove_the_container(
    tmp_path: Path, docker_client: Any, image: str, signum: int
) -> None:
    argv = _verify(tmp_path, image, "--env", "HEALTHY_AFTER=600", "--timeout", "10m")
    proc = _start(tmp_path, argv, docker_client, image)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "interrupted" in err
    assert _throwaways(docker_client, image) == []


def test_a_run_killed_outright_is_cleaned_up_by_the_next(
    tmp_path: Path, docker_client: Any, image: str
) -> None:
    argv = _verify(tmp_path, image, "--env", "HEALTHY_AFTER=600", "--timeout", "10m")
    proc = _start(tmp_path, argv, docker_client, image)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    [left] = _throwaways(docker_client, image)
    owner = left["Labels"]["org.tagkeeper.owner"]
    assert owner.split(" ")[1] == str(proc.pid)
    done = subprocess.run(_verify(tmp_path, image), cwd=tmp_path, env=_environ(),
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"removed {left['Names'][0].lstrip('/')}, left by a verify run that was killed" in (
        done.stderr
    )
    assert _throwaways(docker_client, image) == []
