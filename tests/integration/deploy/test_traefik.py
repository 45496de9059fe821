"""Traefik 3 in front of two app slots: the file provider on a directory, weights."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from tests.deploykit.app import AppContainer, AppFleet, AppImages, http_get
from tests.deploykit.traefik import SERVICE_FILE, Traefik
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.deploykit.load import LoadClient

pytestmark = pytest.mark.integration


@pytest.fixture
def slots(apps: AppFleet, app_images: AppImages) -> tuple[AppContainer, AppContainer]:
    """blue runs 1.0.0, green 2.0.0."""
    blue = apps.run(app_images.get("1.0.0").id, port=free_port())
    green = apps.run(app_images.get("2.0.0").id, port=free_port())
    return blue, green


def test_proxies_and_logs_json(
    traefik: Callable[..., Traefik], slots: tuple[AppContainer, AppContainer]
) -> None:
    blue, green = slots
    proxy = traefik({blue.address: 100, green.address: 0})
    answer = http_get(proxy.url + "/api/public/stats/users")
    assert answer.status == 200
    assert answer.headers["x-app-version"] == "1.0.0"
    deadline = time.monotonic() + 5
    while not (entries := proxy.access_entries()):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.05)
    entry = entries[-1]
    assert entry["ServiceURL"] == f"http://{blue.address}"
    assert entry["ServiceAddr"] == blue.address
    assert entry["DownstreamStatus"] == 200
    assert entry["Duration"] > 0  # nanoseconds
    assert entry["RequestPath"] == "/api/public/stats/users"
    assert entry["downstream_X-App-Version"] == "1.0.0"


def test_all_zero_weights_answer_503(
    traefik: Callable[..., Traefik], slots: tuple[AppContainer, AppContainer]
) -> None:
    blue, green = slots
    proxy = traefik({blue.address: 100, green.address: 0})
    assert http_get(proxy.url + "/api/x").status == 200
    proxy.set_weights({blue.address: 0, green.address: 0})
    proxy.wait_weights({blue.address: 0, green.address: 0})
    answer = http_get(proxy.url + "/api/x")
    assert answer.status == 503
    assert "x-app-version" not in answer.headers


def test_temporary_files_are_ignored(
    traefik: Callable[..., Traefik], slots: tuple[AppContainer, AppContainer]
) -> None:
    blue, green = slots
    proxy = traefik({blue.address: 100, green.address: 0})
    # what a writer leaves behind when killed between write and rename
    (proxy.dynamic / f".{SERVICE_FILE}.tmp").write_text("http: {services: [broken\n")
    (proxy.dynamic / "notes.txt").write_text("not a configuration\n")
    time.sleep(2.5)  # longer than Traefik's providersThrottleDuration (2 s)
    assert proxy.weights() == {blue.address: 100, green.address: 0}
    assert http_get(proxy.url + "/api/x").headers["x-app-version"] == "1.0.0"


@pytest.mark.parametrize("keepalive", [False, True], ids=["new-connections", "keepalive"])
def test_rename_switches_within_3s_and_loses_nothing(
    traefik: Callable[..., Traefik],
    slots: tuple[AppContainer, AppContainer],
    load: Callable[..., LoadClient],
    keepalive: bool,
) -> None:
    """The file is written in ``staging/`` and renamed into the watched folder."""
    blue, green = slots
    proxy = traefik({blue.address: 100, green.address: 0})
    client = load(
        proxy.url + "/api/public/stats/users",
        rate=100,
        duration=10.5,
        keepalive=keepalive,
        connections=4,
    ).start()
    time.sleep(1)
    switches = []
    for new, old in ((green, blue), (blue, green), (green, blue)):
        renamed = proxy.set_weights({new.address: 100, old.address: 0})
        proxy.wait_weights({new.address: 100, old.address: 0}, timeout=5)
        switches.append((renamed, old, new))
        time.sleep(3.2 - (time.time() - renamed))
    summary = client.join()
    assert summary.failures == [], summary.describe()
    for renamed, old, new in switches:
        lag = summary.switch_lag(renamed, port=old.port, until=renamed + 3.2)
        assert lag < 3.0, summary.describe()
        after = summary.between(renamed + 3.0, renamed + 3.2)
        assert set(after.by_port) <= {str(new.port)}, after.describe()
    assert summary.by_port[str(green.port)] > 0
