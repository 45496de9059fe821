"""Metrics sources: the access log since a mark, and Prometheus over a bounded window."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.deploy.metrics.accesslog import AccessLog, percentile
from tagkeeper.deploy.metrics.model import MetricsError, NoData, SlotStats
from tagkeeper.deploy.metrics.prometheus import DEFAULT_QUERIES, Prometheus, render_query

if TYPE_CHECKING:
    from pathlib import Path

SLOTS = {"blue": "127.0.0.1:8520", "green": "127.0.0.1:8521"}


def nginx_line(upstream: str, status: int, *, ustatus: str | None = None,
               utime: str = "0.010", probe: str = "") -> str:
    return json.dumps({
        "time": "2026-01-01T00:00:00+00:00", "msec": 1.0, "status": status,
        "request_time": 0.012, "upstream": upstream,
        "upstream_status": ustatus if ustatus is not None else str(status),
        "upstream_time": utime, "probe": probe,
    }) + "\n"


def traefik_line(address: str, status: int, ns: int = 5_000_000, **extra: str) -> str:
    return json.dumps({
        "ServiceAddr": address, "ServiceURL": f"http://{address}", "DownstreamStatus": status,
        "Duration": ns, **extra,
    }) + "\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_only_lines_after_the_mark_count(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(nginx_line("127.0.0.1:8521", 500) * 10)
    source = AccessLog(log)
    mark = source.mark()
    with log.open("a") as f:
        f.write(nginx_line("127.0.0.1:8521", 200) * 3 + nginx_line("127.0.0.1:8520", 200) * 7)
    reading = source.read(mark, SLOTS)
    assert reading.slots["green"] == SlotStats(3, 0, 0.010)
    assert reading.slots["blue"] == SlotStats(7, 0, 0.010)
    assert reading.malformed == 0


def test_each_nginx_attempt_counts_for_its_own_slot(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    source = AccessLog(log)
    mark = source.mark()
    log.write_text(
        nginx_line("127.0.0.1:8521, 127.0.0.1:8520", 200, ustatus="502, 200", utime="0.001, 0.020")
        + nginx_line("127.0.0.1:8521 : 127.0.0.1:8520", 200, ustatus="504 : 200")
    )
    reading = source.read(mark, SLOTS)
    assert reading.slots["green"] == SlotStats(2, 2, 0.010)
    assert reading.slots["blue"] == SlotStats(2, 0, 0.020)


def test_traefik_lines_and_probes(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    source = AccessLog(log)
    mark = source.mark()  # no file yet: everything written from now on counts
    log.write_text(
        traefik_line("127.0.0.1:8521", 503, 2_000_000_000)
        + traefik_line("127.0.0.1:8521", 200, 1_000_000)
        + traefik_line("127.0.0.1:8521", 200, 1_000_000, **{"request_X-Tagkeeper-Probe": "ab12"})
        + nginx_line("127.0.0.1:8520", 200, probe="cd34")
    )
    reading = source.read(mark, SLOTS)
    assert reading.slots["green"] == SlotStats(2, 1, 2.0)
    assert reading.slots["blue"] == SlotStats(0, 0, None)


def test_malformed_lines_are_counted_never_trusted(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    source = AccessLog(log)
    mark = source.mark()
    log.write_text(
        "not json\n"
        '{"upstream": "127.0.0.1:8521", "status": "five hundred"}\n'
        '["127.0.0.1:8521", 500]\n'
        + '{"x": "' + "a" * 70000 + '"}\n'
        + nginx_line("127.0.0.1:8521", 200)
    )
    reading = source.read(mark, SLOTS)
    assert reading.malformed == 4
    assert reading.slots["green"] == SlotStats(1, 0, 0.010)
    assert any("4 lines" in n for n in reading.notes)


def test_only_malformed_lines_are_no_data(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    source = AccessLog(log)
    mark = source.mark()
    log.write_text('127.0.0.1 - - [01/Jan/2026] "GET / HTTP/1.1" 200\n' * 5)
    reading = source.read(mark, SLOTS)
    assert isinstance(reading.slots["green"], NoData)


def test_a_partial_last_line_waits_for_the_next_read(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    source = AccessLog(log)
    mark = source.mark()
    whole = nginx_line("127.0.0.1:8521", 500)
    log.write_text(nginx_line("127.0.0.1:8521", 200) + whole[:20])
    first = source.read(mark, SLOTS)
    assert first.slots["green"] == SlotStats(1, 0, 0.010)
    assert first.malformed == 0
    with log.open("a") as f:
        f.write(whole[20:])
    assert source.read(mark, SLOTS).slots["green"] == SlotStats(2, 1, 0.010)


def test_rotation_reads_the_rest_of_the_old_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(nginx_line("127.0.0.1:8521", 500) * 5)
    source = AccessLog(log)
    mark = source.mark()
    with log.open("a") as f:
        f.write(nginx_line("127.0.0.1:8521", 200) * 2)
    log.rename(tmp_path / "access.log.1")
    log.write_text(nginx_line("127.0.0.1:8521", 502) * 1)
    reading = source.read(mark, SLOTS)
    assert reading.slots["green"] == SlotStats(3, 1, 0.010)
    assert any("rotated" in n for n in reading.notes)


def test_rotation_with_the_old_file_gone_says_lines_were_lost(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(nginx_line("127.0.0.1:8521", 500) * 5)
    source = AccessLog(log)
    mark = source.mark()
    log.unlink()
    log.write_text(nginx_line("127.0.0.1:8521", 200))
    reading = source.read(mark, SLOTS)
    assert reading.slots["green"] == SlotStats(1, 0, 0.010)
    assert any("lost" in n for n in reading.notes)


def test_truncation_reads_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(nginx_line("127.0.0.1:8521", 500) * 50)
    source = AccessLog(log)
    mark = source.mark()
    with log.open("r+") as f:  # copytruncate: same inode, shorter
        f.truncate(0)
        f.write(nginx_line("127.0.0.1:8521", 200))
    reading = source.read(mark, SLOTS)
    assert reading.slots["green"] == SlotStats(1, 0, 0.010)
    assert any("truncated" in n for n in reading.notes)


def test_a_missing_log_is_a_read_error(tmp_path: Path) -> None:
    source = AccessLog(tmp_path / "access.log")
    mark = source.mark()
    with pytest.raises(MetricsError, match="does not exist"):
        source.read(mark, SLOTS)


def test_a_window_is_bounded(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    source = AccessLog(log, max_bytes=1000)
    mark = source.mark()
    log.write_text(nginx_line("127.0.0.1:8521", 200) * 100)
    reading = source.read(mark, SLOTS)
    stats = reading.slots["green"]
    assert isinstance(stats, SlotStats)
    assert 0 < stats.requests < 100
    assert any("in part" in n for n in reading.notes)


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=200))
def test_p95_is_a_value_with_95_percent_at_or_below_it(values: list[float]) -> None:
    p95 = percentile(values, 0.95)
    assert p95 in values
    assert sum(v <= p95 for v in values) >= math.ceil(0.95 * len(values))
    assert sum(v < p95 for v in values) < math.ceil(0.95 * len(values))


# -- Prometheus --------------------------------------------------------------------------


def prom(answers: dict[str, Any], seen: list[dict[str, list[str]]] | None = None,
         clock: Clock | None = None) -> Prometheus:
    """A source whose answers are picked by which default query was asked."""

    def handle(request: httpx.Request) -> httpx.Response:
        params = parse_qs(request.url.query.decode())
        if seen is not None:
            seen.append(params)
        query = params["query"][0]
        kind = "p95" if "histogram_quantile" in query else (
            "errors" if 'status=~"5.."' in query else "requests")
        answer = answers[kind]
        if isinstance(answer, httpx.Response):
            return answer
        if answer is None:
            return httpx.Response(200, json={"status": "success",
                                             "data": {"resultType": "vector", "result": []}})
        return httpx.Response(200, json={"status": "success", "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [1.0, answer]}]}})

    return Prometheus("http://127.0.0.1:9090", httpx.Client(transport=httpx.MockTransport(handle)),
                      clock=clock or Clock())


def test_prometheus_reads_each_slot_over_the_window_since_the_mark() -> None:
    clock = Clock()
    seen: list[dict[str, list[str]]] = []
    source = prom({"requests": "120.4", "errors": "3", "p95": "0.25"}, seen, clock)
    mark = source.mark()
    clock.now += 37.9
    reading = source.read(mark, {"green": "127.0.0.1:8521"})
    assert reading.slots["green"] == SlotStats(120, 3, 0.25)
    assert reading.window_seconds == 37
    for params in seen:
        assert params["time"] == [f"{clock.now:.3f}"]
        assert "[37s]" in params["query"][0]  # 37 s back from now: never before the mark
        assert 'instance="127.0.0.1:8521"' in params["query"][0]


def test_no_request_series_or_nan_is_no_data() -> None:
    clock = Clock()
    for answer in (None, "NaN"):
        source = prom({"requests": answer, "errors": None, "p95": None}, clock=clock)
        mark = source.mark()
        clock.now += 30
        assert isinstance(source.read(mark, SLOTS).slots["blue"], NoData)


def test_requests_without_a_5xx_series_are_an_error_rate_of_zero() -> None:
    clock = Clock()
    source = prom({"requests": "80", "errors": None, "p95": "NaN"}, clock=clock)
    mark = source.mark()
    clock.now += 30
    assert source.read(mark, SLOTS).slots["blue"] == SlotStats(80, 0, None)


def test_a_window_too_short_is_no_data_without_asking() -> None:
    clock = Clock()
    seen: list[dict[str, list[str]]] = []
    source = prom({"requests": "1", "errors": None, "p95": None}, seen, clock)
    mark = source.mark()
    clock.now += 1.5
    assert isinstance(source.read(mark, SLOTS).slots["blue"], NoData)
    assert seen == []


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(400, json={"status": "error", "errorType": "bad_data",
                                   "error": "parse error\x1b[2J at char 3"}), "parse error"),
        (httpx.Response(200, text="<html>login</html>"), "not JSON"),
        (httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"a": "1"}, "value": [1, "1"]},
            {"metric": {"a": "2"}, "value": [1, "2"]}]}}),
         "2 series"),
        (httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix",
                                                                 "result": []}}), "not a vector"),
        (httpx.Response(200, json={"status": "success", "data": {"resultType": "vector",
                                                                 "result": [{"value": [1, 2]}]}}),
         "malformed"),
        (httpx.Response(200, content=b"x" * (2 << 20)), "more than"),
    ],
)
def test_bad_answers_are_read_errors_never_printed_raw(answer: httpx.Response,
                                                        message: str) -> None:
    clock = Clock()
    source = prom({"requests": answer, "errors": None, "p95": None}, clock=clock)
    mark = source.mark()
    clock.now += 30
    with pytest.raises(MetricsError) as caught:
        source.read(mark, SLOTS)
    assert message in caught.value.message
    assert "\x1b" not in caught.value.diagnostics()


def test_an_unreachable_prometheus_is_a_read_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    clock = Clock()
    source = Prometheus("http://127.0.0.1:9", httpx.Client(transport=httpx.MockTransport(refuse)),
                        clock=clock)
    mark = source.mark()
    clock.now += 30
    with pytest.raises(MetricsError, match="did not answer"):
        source.read(mark, SLOTS)


def test_templates_take_instance_slot_and_window() -> None:
    query = render_query('up{instance="{instance}",slot="{slot}"}[{window}]',
                         instance="127.0.0.1:8521", slot="green", window_seconds=45)
    assert query == 'up{instance="127.0.0.1:8521",slot="green"}[45s]'
    with pytest.raises(ValueError, match="cannot go into a query"):
        render_query(DEFAULT_QUERIES["requests"], instance='x"}) or vector(1', slot="g",
                     window_seconds=5)


@given(st.floats(0, 10_000), st.floats(0, 10_000))
def test_the_window_never_starts_before_the_mark(start: float, elapsed: float) -> None:
    clock = Clock()
    clock.now = 1_700_000_000.0 + start
    seen: list[dict[str, list[str]]] = []
    source = prom({"requests": "100", "errors": None, "p95": "0.1"}, seen, clock)
    mark = source.mark()
    clock.now += elapsed
    source.read(mark, {"blue": "127.0.0.1:8520"})
    for params in seen:
        window = int(params["query"][0].split("[")[-1].split("s]")[0])
        at = float(params["time"][0])
        assert at - window >= mark.at - 0.001


# -- readiness: the slot's target is scraped before a window begins -----------------------


def _targets(targets: Any, status: int = 200) -> Prometheus:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/targets"
        assert parse_qs(request.url.query.decode()) == {"state": ["active"]}
        if isinstance(targets, httpx.Response):
            return targets
        return httpx.Response(status, json={"status": "success",
                                            "data": {"activeTargets": targets}})

    return Prometheus("http://127.0.0.1:9090", httpx.Client(transport=httpx.MockTransport(handle)))


def _target(instance: str, health: str = "up", last: str = "2026-01-01T10:00:05.5Z",
            error: str = "") -> dict[str, Any]:
    return {"labels": {"instance": instance, "job": "app", "slot": "green"},
            "discoveredLabels": {"__address__": instance}, "health": health,
            "lastScrape": last, "lastError": error}


STARTED = 1767261600.0 + 5.0  # 2026-01-01T10:00:05Z


def test_a_target_scraped_since_the_start_is_ready() -> None:
    source = _targets([_target("127.0.0.1:8520"), _target("127.0.0.1:8521")])
    assert source.ready("127.0.0.1:8521", STARTED) is None


@pytest.mark.parametrize(
    ("targets", "words"),
    [
        ([_target("127.0.0.1:8520")], "no active target 127.0.0.1:8521"),
        ([_target("127.0.0.1:8521", last="2026-01-01T10:00:04.9Z")], "not scraped"),
        ([_target("127.0.0.1:8521", last="0001-01-01T00:00:00Z")], "not scraped"),
        ([_target("127.0.0.1:8521", last="yesterday")], "not scraped"),
        ([_target("127.0.0.1:8521", health="unknown")], "is unknown"),
        ([_target("127.0.0.1:8521", health="down", error="connection refused\x1b[31m")],
         "is down: connection refused?[31m"),
    ],
)  # fmt: skip
def test_a_target_missing_down_or_not_scraped_since_the_start_is_not_ready(
    targets: list[dict[str, Any]], words: str
) -> None:
    why = _targets(targets).ready("127.0.0.1:8521", STARTED)
    assert why is not None
    assert words in why


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="<html>down</html>"),
        httpx.Response(200, json={"status": "error", "error": "x"}),
        httpx.Response(200, json={"status": "success", "data": {"activeTargets": "x"}}),
        httpx.Response(200, json=["x"]),
    ],
)
def test_an_unreadable_target_list_is_a_read_error(answer: httpx.Response) -> None:
    with pytest.raises(MetricsError):
        _targets(answer).ready("127.0.0.1:8521", STARTED)


def test_an_access_log_is_always_ready(tmp_path: Path) -> None:
    assert AccessLog(tmp_path / "none.log").ready("127.0.0.1:8521", 0.0) is None
