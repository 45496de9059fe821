"""SIGKILL ``tagkeeper deploy`` during a blue/green switch and during a canary step, behind
real nginx, under a steady client: ``status`` reports the weights the owned file holds and
what nginx runs, the weights never all go to 0, and the next deploy converges. Not one
request fails throughout."""

from __future__ import annotations

import re
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.deploy.slothost import SlotHost, slot_host

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.deploykit.app import AppImages
    from tests.deploykit.load import LoadClient
    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration

_SERVER_RE = re.compile(r"server 127\.0\.0\.1:(\d+) (weight=(\d+)|down);")


@pytest.fixture
def slots(
    tmp_path: Path, docker_client: Any, registry: Registry, app_images: AppImages
) -> Iterator[SlotHost]:
    with slot_host(tmp_path, docker_client, registry, app_images, "nginx") as made:
        yield made


def _ok(done: Any) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def _file_weights(slots: SlotHost) -> dict[str, int]:
    """The weights in the owned file, read here (not through tagkeeper)."""
    by_port = {int(p): int(n) if n else 0 for p, _, n in _SERVER_RE.findall(slots.owned_file())}
    blue, green = slots.ports
    return {"blue": by_port[blue], "green": by_port[green]}


def _kill_at(slots: SlotHost, args: list[str], phase: str, status: str) -> None:
    host = slots.host
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


def _after_the_kill(slots: SlotHost) -> None:
    """What ``status`` says is the truth; the weights add up to 100."""
    weights = _file_weights(slots)
    assert sum(weights.values()) == 100, slots.owned_file()
    status = slots.status()
    assert status["proxy"]["weights"] == weights
    codes = {d["code"] for d in status["drift"]}
    assert "interrupted" in codes
    running = status["proxy"]["running"]
    assert running["error"] is None
    generation = status["proxy"]["file"]["generation"]
    # nginx runs the file tagkeeper wrote, or the one before (killed before the reload)
    assert ("proxy" in codes) == (running["generation"] != generation)


def _converged(slots: SlotHost, tag: str, ended: set[tuple[str, str]]) -> None:
    """The next deploy repairs first, then succeeds; the killed one ended as ``ended``."""
    done = slots.host.deploy(tag)
    _ok(done)
    assert "repair" in done.stderr
    status = slots.status()
    assert status["drift"] == [], status["drift"]
    assert status["proxy"]["running"]["generation"] == status["proxy"]["file"]["generation"]
    records = slots.host.records()
    assert records[0]["status"] == "succeeded"
    assert (records[1]["status"], records[1]["reason"]) in ended


def test_killed_during_a_switch(slots: SlotHost, load: Callable[..., LoadClient]) -> None:
    host = slots.host
    for tag in ("v1.0.0", "v2.0.0", "v3.0.0"):
        host.publish(tag)
    _ok(host.deploy("v1.0.0"))  # green
    client = load(slots.url + "/version", rate=40, duration=300, timeout=5.0).start()
    try:
        _kill_at(slots, ["deploy", "--env", "prod", "--image", host.ref("v2.0.0")],
                 "proxy-write", "done")  # fmt: skip
        _after_the_kill(slots)
        # the file held v2's slot (it serves and passes: completed) or still v1's
        _converged(slots, "v3.0.0", {("succeeded", "repaired"), ("failed", "interrupted")})
        time.sleep(0.5)
    finally:
        client.stop()
    summary = client.join(timeout=10)
    assert summary.failures == [], summary.describe()
    assert "3.0.0" in summary.by_version


def test_killed_during_a_canary_step(slots: SlotHost, load: Callable[..., LoadClient]) -> None:
    host = slots.host
    slots.configure("canary", **{"steps": "[10, 100]", "step-time": '"3s"',
                                 "min-requests": "5"})  # fmt: skip
    for tag in ("v1.0.0", "v2.0.0", "v3.0.0"):
        host.publish(tag)
    _ok(host.deploy("v1.0.0"))  # green
    client = load(slots.url + "/version", rate=40, duration=300, timeout=5.0).start()
    try:
        _kill_at(slots, ["deploy", "--env", "prod", "--image", host.ref("v2.0.0")],
                 "step", "start")  # fmt: skip
        assert _file_weights(slots) == {"blue": 10, "green": 90}
        _after_the_kill(slots)
        assert slots.status()["proxy"]["running"]["slots"]  # a probe was answered
        # a step that was never judged: every request back to v1, v2 failed
        _converged(slots, "v3.0.0", {("failed", "interrupted")})
        time.sleep(0.5)
    finally:
        client.stop()
    summary = client.join(timeout=10)
    assert summary.failures == [], summary.describe()
    assert {"1.0.0", "2.0.0", "3.0.0"} <= set(summary.by_version)
