"""``deploy`` with ``strategy = "canary"`` on the real engine and proxies, judged on real
metrics: nginx's JSON access log, and Prometheus scraping the test app's endpoint.

A canary whose API answers 500 is rolled back at its first step (exit 14), and the
requests that failed are no more than that step's share of the traffic sent while it
lasted; a good canary goes through its steps judged on Prometheus's numbers."""

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
    from tests.deploykit.prometheus import Prometheus
    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration

API = "/api/public/stats/users"


def _make(proxy: str) -> Callable[..., Any]:
    @pytest.fixture
    def made(
        tmp_path: Path, docker_client: Any, registry: Registry, app_images: AppImages
    ) -> Iterator[SlotHost]:
        with slot_host(tmp_path, docker_client, registry, app_images, proxy) as host:
            yield host

    return made


nginx_slots = _make("nginx")
traefik_slots = _make("traefik")


def _ok(done: Any) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_canary_whose_api_fails_is_rolled_back_at_its_first_step(
    nginx_slots: SlotHost, load: Callable[..., LoadClient]
) -> None:
    slots, host = nginx_slots, nginx_slots.host
    slots.configure("canary", **{"step-time": '"4s"', "min-requests": "10"})
    host.publish("v1.0.0")
    host.publish("v2.0.0", version="2.0.0", ERROR_PERCENT="100")
    _ok(host.deploy("v1.0.0"))
    client = load(slots.url + API, rate=100, duration=300, timeout=5.0).start()
    time.sleep(0.5)
    try:
        done = host.deploy("v2.0.0", "--format", "json")
        time.sleep(0.5)
    finally:
        client.stop()
    summary = client.join(timeout=10)
    assert done.returncode == ExitCode.ROLLED_BACK, done.stderr
    payload = json.loads(done.stdout)
    assert payload["status"] == "rolled_back"
    assert payload["reason"] == "canary-step"
    assert payload["numbers"]["failed_step"] == 1
    verdict = payload["numbers"]["verdict"]
    assert verdict["outcome"] == "fail"
    assert verdict["error_rate"] == 1.0
    assert verdict["requests"] >= 10  # counted from nginx's access log, per slot
    assert "was rolled back automatically (canary-step)" in done.stderr
    # the failed requests: v2's share of the step, and none before or after it
    switches = [s for s in payload["steps"] if s["phase"] == "proxy-confirm"]
    began, ended = _at(switches[0]["at"]), _at(switches[-1]["at"])
    during = summary.between(began - 1.0, ended + 0.2)
    failures = summary.failures
    assert failures, summary.describe()
    assert all(r.version == "2.0.0" and r.status == 500 for r in failures)
    assert len(failures) <= 0.05 * during.total + 3, summary.describe()
    assert set(summary.between(ended + 0.5, float("inf")).by_version) == {"1.0.0"}
    # the old slot served throughout; the canary is stopped, kept for its logs
    assert slots.running("green")
    assert not slots.running("blue")
    record = host.records()[0]
    assert (record["tag"], record["status"], record["reason"]) == ("v2.0.0", "rolled_back",
                                                                   "canary-step")  # fmt: skip
    assert json.loads(record["numbers"])["verdict"]["errors_5xx"] >= 10
    assert slots.status()["proxy"]["weights"] == {"blue": 0, "green": 100}


def test_a_canary_judged_on_prometheus_goes_through_its_steps_or_back(
    traefik_slots: SlotHost, load: Callable[..., LoadClient],
    prometheus: Callable[..., Prometheus],
) -> None:  # fmt: skip
    slots, host = traefik_slots, traefik_slots.host
    blue, green = slots.ports
    # both slots' ports are scrape targets from the start (a slot with no container is down)
    prom = prometheus({"blue": f"127.0.0.1:{blue}", "green": f"127.0.0.1:{green}"})
    slots.configure("canary", **{
        "steps": "[25, 100]", "step-time": '"5s"', "min-requests": "10",
        "metrics": json.dumps(f"prometheus:{prom.url}"),
    })  # fmt: skip
    host.publish("v1.0.0")
    host.publish("v2.0.0")
    host.publish("v3.0.0", version="3.0.0", ERROR_PERCENT="100")
    _ok(host.deploy("v1.0.0"))
    client = load(slots.url + API, rate=40, duration=300, timeout=5.0).start()
    try:
        done = host.deploy("v2.0.0", "--format", "json")
        _ok(done)
        payload = json.loads(done.stdout)
        step = payload["numbers"]["step_1"]
        assert step["weight"] == 25
        assert step["outcome"] == "pass"
        # 40 requests a second, a quarter of them for 5 s: Prometheus counted about 50
        assert 15 <= step["requests"] <= 90, step
        phases = [(s["phase"], s["status"]) for s in payload["steps"]]
        # the new slot's target was scraped before it was given any request
        assert phases.index(("metrics-ready", "done")) < phases.index(("proxy-write", "done"))
        done = host.deploy("v3.0.0", "--format", "json")
    finally:
        client.stop()
    summary = client.join(timeout=10)
    assert done.returncode == ExitCode.ROLLED_BACK, done.stderr
    verdict = json.loads(done.stdout)["numbers"]["verdict"]
    assert verdict["outcome"] == "fail"
    assert verdict["error_rate"] > 0.5
    assert {r.version for r in summary.failures} == {"3.0.0"}
    assert slots.status()["live_slot"] == "blue"  # v2's slot serves again
