"""The load clients record every request, stay bounded and talk to loopback only."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from tests.deploykit.load import LoadClient
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.deploykit.app import AppContainer, AppFleet, AppImages
    from tests.deploykit.nginx import Nginx

pytestmark = pytest.mark.integration


@pytest.fixture
def app(apps: AppFleet, app_images: AppImages) -> AppContainer:
    return apps.run(app_images.get("1.0.0").id, port=free_port())


def test_refuses_anything_but_loopback_and_unbounded_runs() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LoadClient("http://example.com/", duration=1)
    with pytest.raises(ValueError, match="duration or a count"):
        LoadClient("http://127.0.0.1:1/")


def test_records_every_request_of_a_steady_run(
    app: AppContainer, load: Callable[..., LoadClient]
) -> None:
    started = time.monotonic()
    summary = load(app.url + "/api/items", rate=200, duration=2).start().join()
    assert time.monotonic() - started < 2 + 5  # bounded by its duration
    assert summary.total == 400  # one request per tick: 200/s for 2 s
    assert summary.failures == []
    assert summary.by_version == {"1.0.0": 400}
    assert summary.span >= 1.9
    assert all(r.sent <= r.answered and not r.reused for r in summary.records)
    assert summary.last_seen(version="1.0.0") == max(r.sent for r in summary.records)
    assert summary.last_seen(version="9.9.9") is None


def test_connection_errors_are_failures_with_times(load: Callable[..., LoadClient]) -> None:
    summary = load(f"http://127.0.0.1:{free_port()}/", rate=50, count=10).start().join()
    assert summary.total == 10
    assert len(summary.failures) == 10
    assert all(
        r.status is None and "ConnectionRefused" in (r.error or "") for r in summary.failures
    )


def test_keepalive_client_reuses_its_connections(
    app: AppContainer, nginx: Callable[..., Nginx], load: Callable[..., LoadClient]
) -> None:
    proxy = nginx({app.address: 1})
    summary = (
        load(proxy.url + "/api/items", rate=200, count=300, keepalive=True, connections=4)
        .start()
        .join()
    )
    assert summary.failures == [], summary.describe()
    fresh = [r for r in summary.records if not r.reused]
    assert len(fresh) <= 4  # one new connection per worker, then reused
    assert {r.upstream for r in summary.records} == {app.address}
