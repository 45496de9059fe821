"""The watch after a blue/green release, on the real engine and nginx: a release that
starts failing 30 s after it started is rolled back by the watch (exit 14), the old slot
serves again, and the ledger says so (``previous`` answers correctly)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.errors import ExitCode
from tests.integration.deploy.slothost import SlotHost, slot_host

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.deploykit.app import AppImages
    from tests.deploykit.load import LoadClient
    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration

INTERVAL = 2.0


@pytest.fixture
def slots(
    tmp_path: Path, docker_client: Any, registry: Registry, app_images: AppImages
) -> Iterator[SlotHost]:
    with slot_host(tmp_path, docker_client, registry, app_images, "nginx") as made:
        yield made


def _ok(done: Any) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_release_that_starts_failing_after_30_s_is_rolled_back_by_the_watch(
    slots: SlotHost, load: Callable[..., LoadClient]
) -> None:
    host = slots.host
    host.publish("v0.9.0", version="0.9.0")
    host.publish("v1.0.0")
    host.publish("v2.0.0", version="2.0.0", FAIL_AFTER="30")
    _ok(host.deploy("v0.9.0"))
    _ok(host.deploy("v1.0.0"))
    slots.configure(**{"watch": '"60s"', "watch-interval": f'"{INTERVAL:g}s"',
                       "min-requests": "10"})  # fmt: skip
    client = load(slots.url + "/api/public/testimonials", rate=40, duration=300,
                  timeout=5.0).start()  # fmt: skip
    try:
        done = host.deploy("v2.0.0", "--format", "json")
        time.sleep(1.0)
    finally:
        client.stop()
    summary = client.join(timeout=10)
    assert done.returncode == ExitCode.ROLLED_BACK, done.stderr
    payload = json.loads(done.stdout)
    assert payload["status"] == "rolled_back"
    assert payload["reason"] == "watch"
    back = payload["rolled_back_to"]
    assert (back["image"], back["rollback"], back["slot"]) == (host.ref("v1.0.0"), True, "blue")
    # the release served well for about 30 s, then failed; the old slot serves again
    failures = summary.failures
    assert failures, summary.describe()
    assert {r.version for r in failures} == {"2.0.0"}, summary.describe()
    first_failure = min(r.sent for r in failures)
    last_new = summary.last_seen(version="2.0.0") or 0.0
    # two checks in a row saw it, one interval apart, after it went bad; then the switch
    # back at once (the bound leaves room for a loaded machine, not for a third check)
    crossed = [datetime.fromisoformat(s["at"]).timestamp() for s in payload["steps"]
               if (s["phase"], s["status"]) == ("watch", "warning")]  # fmt: skip
    assert len(crossed) == 2, payload["steps"]
    assert crossed[0] > first_failure - 0.5
    assert crossed[1] - crossed[0] < INTERVAL + 1.0
    assert last_new - crossed[1] < 3.0, summary.describe()
    started = datetime.fromisoformat(payload["steps"][0]["at"]).timestamp()
    assert first_failure - started > 25  # it went bad at 30 s, not at once
    assert set(summary.between(last_new + 0.1, float("inf")).by_version) == {"1.0.0"}
    status = slots.status()
    assert status["live_slot"] == "blue"  # v0.9 went to green, v1 to blue, v2 to green
    assert status["drift"] == []
    assert not slots.running("green")  # the bad release, stopped
    # the ledger: v2 rolled back, the switch back recorded as a rollback to v1
    records = host.records()
    assert [(r["tag"], r["status"], r["rollback"]) for r in records[:3]] == [
        ("v1.0.0", "succeeded", 1), ("v2.0.0", "rolled_back", 0), ("v1.0.0", "succeeded", 0),
    ]  # fmt: skip
    assert json.loads(records[1]["numbers"])["watch_reason"]
    previous = host.run("previous", "--env", "prod", "--image", host.repo, "--format", "json")
    _ok(previous)
    assert json.loads(previous.stdout)["tag"] == "v0.9.0"
