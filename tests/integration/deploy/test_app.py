"""The test web app on the real engine: every mode, its metrics, its shutdown.

Each test starts its own container(s) on free 127.0.0.1 ports (host network); the
image is built once per session.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.deploykit.app import Answer, AppContainer, AppFleet, AppImages, http_get
from tests.services import free_port

pytestmark = pytest.mark.integration

SMOKE = "/api/public/stats/users"


def _image(app_images: AppImages, version: str = "1.0.0") -> str:
    return app_images.get(version).id


def _wait_exit(app: AppContainer, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = app.state()
        if state["Status"] == "exited":
            return state
        time.sleep(0.1)
    pytest.fail(f"{app.name} still {app.state()['Status']} after {timeout}s:\n{app.logs(tail=20)}")


def _metrics(app: AppContainer) -> dict[str, float]:
    """``series{labels}`` -> value, from ``/actuator/prometheus``."""
    answer = app.get("/actuator/prometheus")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, float] = {}
    for line in answer.body.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def _post(url: str, body: bytes) -> Answer:
    """POST with ``Expect: 100-continue``, as curl sends a body over 1 KiB."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request(
            "POST",
            parts.path,
            body=body,
            headers={"Content-Type": "application/json", "Expect": "100-continue"},
        )
        response = conn.getresponse()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read().decode(),
        )
    finally:
        conn.close()


def _series(name: str, *, le: str | None = None, **labels: str) -> str:
    base = {
        "error": "none",
        "exception": "none",
        "method": "GET",
        "outcome": "SUCCESS",
        "status": "200",
    }
    base.update(labels)
    if (
        base["status"].startswith("5")
        and "exception" not in labels
        and base["uri"] != ("/actuator/health")
    ):
        base["error"] = base["exception"] = "IllegalStateException"
    keys = ["error", "exception", "method", "outcome", "status", "uri"]
    text = ",".join(f'{k}="{base[k]}"' for k in keys)
    if le is not None:
        text += f',le="{le}"'
    return f"{name}{{{text}}}"


def test_healthy_app_answers_like_spring(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images, "1.4.0"), port=free_port())

    health = app.get("/actuator/health")
    assert health.status == 200
    assert health.json()["status"] == "UP"
    assert health.headers["content-type"] == "application/vnd.spring-boot.actuator.v3+json"
    as_json = app.get("/actuator/health", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json"

    version = app.get("/version")
    assert version.json() == {"version": "1.4.0", "port": app.port}
    assert app.get("/actuator/info").json()["app"]["version"] == "1.4.0"
    smoke = app.get(SMOKE)
    assert smoke.status == 200
    assert smoke.json()["data"]["users"] == 42
    assert app.get("/api/public/testimonials").json()["data"] == []
    missing = app.get("/nothing/here")
    assert missing.status == 404

    posted = _post(app.url + "/api/public/courses/queries", b'{"page":1,"size":10}' * 200)
    assert posted.status == 200  # the body was read: no reset
    assert posted.json()["data"] == {"path": "/api/public/courses/queries"}

    for answer in (health, version, smoke, missing, posted):  # every answer names its slot
        assert answer.headers["x-app-version"] == "1.4.0"
        assert answer.headers["x-app-port"] == str(app.port)
        assert answer.headers["connection"] == "close"

    # the engine delivers log lines asynchronously: give the last requests' lines a moment
    deadline = time.monotonic() + 10
    while "GET /nothing/here 404" not in (logs := app.logs()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Starting WebApp v1.4.0" in logs
    assert f"Tomcat started on port {app.port}" in logs
    assert f"GET {SMOKE} 200" in logs  # one line per request
    assert "GET /nothing/here 404" in logs


def test_image_defaults_port_8520_and_its_version(
    docker_client: Any, app_images: AppImages
) -> None:
    config = docker_client.api.inspect_image(_image(app_images, "2.0.0"))["Config"]
    assert "SERVER_PORT=8520" in config["Env"]
    assert "APP_VERSION=2.0.0" in config["Env"]
    assert config["Entrypoint"] == ["/app/entrypoint.sh"]
    assert config["StopSignal"] == "SIGTERM"


def test_healthy_only_after_n_seconds(apps: AppFleet, app_images: AppImages) -> None:
    # long enough that the first probe lands before it even on a loaded machine
    app = apps.run(_image(app_images), port=free_port(), env={"HEALTHY_AFTER": 6})
    early = app.get("/actuator/health")
    assert (early.status, early.json()) == (503, {"status": "DOWN"})
    assert app.get(SMOKE).status == 200  # serving, just not ready
    deadline = time.monotonic() + 30
    while app.get("/actuator/health").status != 200:
        assert time.monotonic() < deadline, "never became healthy"
        time.sleep(0.2)
    assert app.get("/actuator/health").json()["status"] == "UP"


@pytest.mark.parametrize(
    ("env", "status", "body"),
    [
        ({"HEALTH": "down"}, 503, {"status": "DOWN"}),
        ({"HEALTH": "unknown"}, 200, {"status": "UNKNOWN"}),
    ],
)
def test_health_modes(
    apps: AppFleet, app_images: AppImages, env: dict[str, str], status: int, body: Any
) -> None:
    app = apps.run(_image(app_images), port=free_port(), env=env)
    for _ in range(3):
        answer = app.get("/actuator/health")
        assert (answer.status, answer.json()) == (status, body)
        time.sleep(0.3)


def test_exits_after_n_seconds_with_its_code(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"EXIT_AFTER": 1, "EXIT_CODE": 3})
    assert app.get("/actuator/health").status == 200
    state = _wait_exit(app, 10)
    assert state["ExitCode"] == 3
    assert "Application run failed" in app.logs(tail=5)
    with pytest.raises(OSError, match=r"(?i)refused|reset|timed out"):
        app.get("/actuator/health", timeout=2)


def test_port_in_use_fails_at_start(apps: AppFleet, app_images: AppImages) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        app = apps.run(_image(app_images), port=port, wait=False)
        state = _wait_exit(app, 10)
    assert state["ExitCode"] == 1
    assert f"Port {port} was already in use" in app.logs()


def test_start_delay_keeps_the_port_closed(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"START_DELAY": 5}, wait=False)
    time.sleep(0.5)
    with pytest.raises(OSError, match=r"(?i)refused|reset|timed out"):
        app.get("/actuator/health", timeout=1)
    app.wait_listening(timeout=30)  # a loaded machine starts containers slowly
    assert app.get("/actuator/health").status == 200


def test_smoke_path_fails_while_health_is_up(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"FAIL_PATHS": SMOKE})
    assert app.get("/actuator/health").json()["status"] == "UP"
    broken = app.get(SMOKE)
    assert broken.status == 500
    assert broken.json()["error"] == "Internal Server Error"
    assert app.get("/api/public/testimonials").status == 200


def test_all_api_requests_fail(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"ERROR_PERCENT": 100})
    assert {app.get(f"/api/item/{i}").status for i in range(20)} == {500}
    assert app.get("/actuator/health").status == 200
    assert app.get("/version").status == 200


def test_some_api_requests_fail(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(
        _image(app_images), port=free_port(), env={"ERROR_PERCENT": 30, "ERROR_STATUS": 502}
    )
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: app.get(f"/api/x?{i}").status, range(200)))
    assert set(statuses) == {200, 502}
    # 30% of 200: 60 expected; these bounds are more than 4 standard deviations away
    assert 30 <= statuses.count(502) <= 90, statuses.count(502)


def test_slow_responses(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"DELAY_MS": 400})
    started = time.monotonic()
    assert app.get(SMOKE).status == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert app.get("/actuator/health").status == 200  # health stays quick
    assert time.monotonic() - started < 0.4


def test_healthy_then_failing(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"FAIL_AFTER": 2})
    assert app.get("/actuator/health").status == 200
    assert app.get(SMOKE).status == 200
    time.sleep(2.2)
    health = app.get("/actuator/health")
    assert (health.status, health.json()) == (503, {"status": "DOWN"})
    assert app.get(SMOKE).status == 500
    assert app.get("/version").status == 200  # it still says who it is


def test_modes_change_while_running(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port())
    assert app.get(SMOKE).status == 200
    app.set_mode(ERROR_PERCENT=100, HEALTH="down")
    assert app.get(SMOKE).status == 500
    assert app.get("/actuator/health").status == 503
    app.set_mode(FAIL_PATHS="/api/a b")  # replaces the earlier change; quoted safely
    assert app.get(SMOKE).status == 200
    assert app.get("/actuator/health").status == 200
    app.set_mode()
    assert app.get(SMOKE).status == 200


def test_metrics_count_requests_and_5xx_appears_at_the_first(
    apps: AppFleet, app_images: AppImages
) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"FAIL_PATHS": "/api/broken"})
    for _ in range(5):
        assert app.get("/api/items").status == 200
    metrics = _metrics(app)
    ok = _series("http_server_requests_seconds_count", uri="/api/items")
    assert metrics[ok] == 5
    assert not [s for s in metrics if 'status="5' in s], "a 5xx series before any 5xx"
    buckets = [
        metrics[_series("http_server_requests_seconds_bucket", uri="/api/items", le=le)]
        for le in ("0.001", "0.005", "0.01", "0.1", "1.0", "30.0", "+Inf")
    ]
    assert buckets == sorted(buckets), "buckets are cumulative"
    assert buckets[-1] == 5
    assert 0 < metrics[_series("http_server_requests_seconds_sum", uri="/api/items")] < 5
    assert metrics['app_info{version="1.0.0"}'] == 1

    assert app.get("/api/broken").status == 500
    assert app.get("/api/items").status == 200
    metrics = _metrics(app)
    failed = _series(
        "http_server_requests_seconds_count",
        uri="/api/broken",
        status="500",
        outcome="SERVER_ERROR",
    )
    assert metrics[failed] == 1
    assert metrics[ok] == 6
    # the earlier scrape is counted too, as Spring counts its actuator requests
    assert metrics[_series("http_server_requests_seconds_count", uri="/actuator/prometheus")] == 1


def test_metrics_count_parallel_requests_exactly(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"ERROR_PERCENT": 50})
    per_thread, threads = 50, 8
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        for _ in range(per_thread):
            status = app.get("/api/parallel").status
            with lock:
                statuses.append(status)

    seen: list[list[float]] = [[], []]
    sending = threading.Event()
    sending.set()

    def scrape(into: list[float]) -> None:  # two scrapers race each other and the appends
        while sending.is_set():
            counts = _metrics(app)
            into.append(
                sum(
                    v
                    for k, v in counts.items()
                    if k.startswith("http_server_requests_seconds_count")
                )
            )

    scrapers = [threading.Thread(target=scrape, args=(into,)) for into in seen]
    workers = [threading.Thread(target=send) for _ in range(threads)]
    for thread in scrapers + workers:
        thread.start()
    for worker in workers:
        worker.join()
    sending.clear()
    for scraper in scrapers:
        scraper.join()
    for into in seen:
        assert len(into) > 1
        assert into == sorted(into), "a count went down"
    metrics = _metrics(app)
    ok = metrics[_series("http_server_requests_seconds_count", uri="/api/parallel")]
    failed = metrics[
        _series(
            "http_server_requests_seconds_count",
            uri="/api/parallel",
            status="500",
            outcome="SERVER_ERROR",
        )
    ]
    assert (ok, failed) == (statuses.count(200), statuses.count(500))
    assert ok + failed == per_thread * threads
    access = re.findall(r"access : GET /api/parallel (\d{3})", app.logs())
    assert len(access) == per_thread * threads


def test_term_lets_the_request_in_flight_finish(apps: AppFleet, app_images: AppImages) -> None:
    app = apps.run(_image(app_images), port=free_port(), env={"DELAY_MS": 1500})
    answers: list[Answer | BaseException] = []

    def slow() -> None:
        try:
            answers.append(app.get("/api/slow", timeout=10))
        except BaseException as exc:  # recorded and asserted below
            answers.append(exc)

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.4)  # the request is being handled
    stopping = threading.Thread(target=app.stop, kwargs={"timeout": 20})
    stopping.start()
    deadline = time.monotonic() + 5
    while "Commencing graceful shutdown" not in app.logs(tail=5):
        assert time.monotonic() < deadline, app.logs(tail=10)
        time.sleep(0.02)
    with pytest.raises(OSError, match=r"(?i)refused|reset|timed out"):  # no longer accepting
        http_get(app.url + "/actuator/health", timeout=2)
    worker.join(10)
    stopping.join(25)
    assert len(answers) == 1, answers
    assert isinstance(answers[0], Answer), answers
    assert answers[0].status == 200
    state = app.state()
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)
    logs = app.logs(tail=5)
    assert "Graceful shutdown complete" in logs
    assert logs.index("GET /api/slow 200") < logs.index("Graceful shutdown complete")
