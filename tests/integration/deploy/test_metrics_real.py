"""Metrics from real proxies' access logs and a real Prometheus, judged per slot."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.deploy.judge import Outcome, Thresholds, judge_step
from tagkeeper.deploy.metrics.accesslog import AccessLog
from tagkeeper.deploy.metrics.model import NoData, SlotStats
from tagkeeper.deploy.metrics.prometheus import Prometheus
from tagkeeper.deploy.proxies.model import Slot, Weights
from tests.deploykit import ServiceError
from tests.deploykit.app import AppContainer, AppFleet, AppImages, http_get
from tests.integration.deploy.proxysetup import nginx_from_snippet, traefik_from_snippet
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.deploykit.prometheus import Prometheus as PrometheusServer

pytestmark = pytest.mark.integration

NAMES = ["blue", "green"]
CANARY = Weights.parse("50,50", NAMES)
LIMITS = Thresholds(max_error_rate=0.01, max_p95=0.8, min_requests=20)


@pytest.fixture
def slots(apps: AppFleet, app_images: AppImages) -> tuple[AppContainer, AppContainer]:
    """blue 1.0.0 is healthy; green 2.0.0's API answers 500 to every request."""
    blue = apps.run(app_images.get("1.0.0").id, port=free_port())
    green = apps.run(app_images.get("2.0.0").id, port=free_port(),
                     env={"ERROR_PERCENT": "100"})
    return blue, green


def as_slots(blue: AppContainer, green: AppContainer) -> tuple[Slot, Slot]:
    return Slot("blue", "127.0.0.1", blue.port), Slot("green", "127.0.0.1", green.port)


def traffic(url: str, count: int) -> list[int]:
    return [http_get(url + "/api/public/stats/users").status for _ in range(count)]


@pytest.mark.parametrize("kind", ["nginx", "traefik"])
def test_a_failing_canary_is_seen_in_the_access_log(
    tmp_path: Path, slots: tuple[AppContainer, AppContainer], kind: str
) -> None:
    blue, green = slots
    start = nginx_from_snippet if kind == "nginx" else traefik_from_snippet
    with ExitStack() as stack:
        try:
            proxy = stack.enter_context(start(tmp_path / kind, as_slots(blue, green)))
        except ServiceError as exc:
            pytest.fail(str(exc))
        assert proxy.setup.access_log is not None
        log = AccessLog(proxy.setup.access_log)
        traffic(proxy.url, 5)  # before the mark: never counted
        with httpx.Client() as http:
            proxy.open(http).apply(CANARY)  # its probes are never counted either
        mark = log.mark()
        statuses = traffic(proxy.url, 80)
        time.sleep(0.3)
        reading = log.read(mark, {s.name: s.address for s in as_slots(blue, green)})
    new, old = reading.slots["green"], reading.slots["blue"]
    assert isinstance(new, SlotStats)
    assert isinstance(old, SlotStats)
    assert reading.malformed == 0
    failed = sum(s >= 500 for s in statuses)
    assert new.errors_5xx >= failed  # nginx may have retried 5xx elsewhere: never fewer
    assert new.requests + old.requests >= 80
    assert old.errors_5xx == 0
    assert 20 <= new.requests <= 60  # about its 50% share
    assert failed <= new.requests  # the failed requests are no more than the step's share
    verdict = judge_step(new, old, LIMITS)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.error_rate is not None
    assert verdict.error_rate > 0.9
    assert judge_step(old, None, LIMITS).passed


def wait_counted(server: PrometheusServer, instance: str, at_least: int) -> None:
    """Wait until Prometheus holds a sample counting ``at_least`` API requests."""
    expr = (
        'sum(http_server_requests_seconds_count{uri!~"/actuator.*",instance="'
        + instance + '"})'
    )
    server.wait_value(expr, lambda v: v >= at_least, timeout=30.0)


def test_prometheus_reads_each_slot_only_since_the_mark(
    slots: tuple[AppContainer, AppContainer],
    prometheus: Callable[..., PrometheusServer],
    apps: AppFleet,
    app_images: AppImages,
) -> None:
    blue, green = slots
    idle = apps.run(app_images.get("1.0.0").id, port=free_port())  # never scraped
    server = prometheus({"blue": blue.address, "green": green.address})
    server.wait_target_up(blue.address)
    server.wait_target_up(green.address)
    for app in (blue, green):  # before the mark: must not count
        traffic(app.url, 30)
    # wait for scrapes that saw it, not for a time: a loaded machine scrapes late
    wait_counted(server, blue.address, 30)
    wait_counted(server, green.address, 30)
    time.sleep(1.5)
    with httpx.Client() as http:
        source = Prometheus(server.url, http)
        mark = source.mark()
        time.sleep(2.5)  # a scrape after the mark sees none of what follows
        traffic(blue.url, 40)
        traffic(green.url, 25)
        wait_counted(server, blue.address, 70)
        wait_counted(server, green.address, 55)
        # increase() extrapolates from the samples to the window's ends: a window of a
        # few scrape intervals keeps that within about a third
        time.sleep(max(0.0, mark.at + 9 - time.time()))
        reading = source.read(
            mark, {"blue": blue.address, "green": green.address, "idle": idle.address}
        )
    new, old = reading.slots["green"], reading.slots["blue"]
    assert isinstance(old, SlotStats)
    assert isinstance(new, SlotStats)
    # the 30 requests before the mark are left out; increase() extrapolates a little
    assert 25 <= old.requests <= 56, reading
    assert old.errors_5xx == 0  # no 5xx series at all: an error rate of 0
    assert old.p95_seconds is not None
    assert old.p95_seconds < 0.5
    assert 15 <= new.requests <= 35, reading
    assert new.errors_5xx == new.requests
    assert isinstance(reading.slots["idle"], NoData)
    assert judge_step(new, old, LIMITS).outcome is Outcome.FAIL
    assert judge_step(old, None, LIMITS).passed
