"""Prometheus scraping the app: Spring-style queries per instance return numbers."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import pytest

from tests.deploykit.prometheus import Prometheus, spring_query
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.deploykit.app import AppFleet, AppImages
    from tests.deploykit.load import LoadClient

pytestmark = pytest.mark.integration


def test_scrapes_slots_and_answers_spring_queries(
    prometheus: Callable[..., Prometheus],
    apps: AppFleet,
    app_images: AppImages,
    load: Callable[..., LoadClient],
) -> None:
    blue = apps.run(app_images.get("1.0.0").id, port=free_port())
    green = apps.run(
        app_images.get("2.0.0").id, port=free_port(), env={"ERROR_PERCENT": 40, "DELAY_MS": 60}
    )
    prom = prometheus({"blue": blue.address})
    prom.wait_target_up(blue.address)
    prom.set_target("green", green.address)  # a slot added while it runs
    started = time.time()
    clients = [
        load(blue.url + "/api/items", rate=40, duration=6).start(),
        load(green.url + "/api/items", rate=20, duration=6).start(),
    ]
    prom.wait_target_up(green.address)
    for client in clients:
        client.join()
    errors = clients[1].summary()
    assert 0 < len(errors.failures) < errors.total

    targets = {t["labels"]["instance"]: t["labels"] for t in prom.active_targets()}
    assert targets[green.address]["slot"] == "green"
    assert targets[blue.address]["job"] == "webapp"

    window = f"{int(time.time() - started) + 2}s"
    blue_rate = prom.wait_value(spring_query("rate", blue.address, window), lambda v: v > 0)
    assert blue_rate > 0
    # blue never answered a 5xx: Spring has no 5xx series, the ratio query has no data
    assert prom.value(spring_query("error_ratio", blue.address, window)) is None
    ratio = prom.wait_value(spring_query("error_ratio", green.address, window), lambda v: v > 0)
    assert 0.1 < ratio < 0.8
    p95 = prom.wait_value(spring_query("p95", green.address, window))
    assert 0.05 <= p95 <= 0.25  # bucket interpolation of ~60 ms answers
    blue_p95 = prom.wait_value(spring_query("p95", blue.address, window))
    assert not math.isnan(blue_p95)
    assert blue_p95 < p95

    prom.set_target("green", None)  # a slot removed: no longer scraped
    deadline = time.monotonic() + 20
    while green.address in {t["labels"]["instance"] for t in prom.active_targets()}:
        assert time.monotonic() < deadline, "green is still a target"
        time.sleep(0.5)
