"""Per-slot metrics from Prometheus's HTTP API (``/api/v1/query``).

Three query templates (``requests``, ``errors``, ``p95``) are evaluated per slot at the
time of the read, with ``{instance}`` (the slot's ``host:port``), ``{slot}`` and
``{window}`` substituted. The window is the whole seconds since the mark, so a range
``[{window}]`` evaluated now never reaches back before the mark: a slot's previous
container cannot count. The defaults read Spring Boot's ``http_server_requests_seconds``
(Micrometer), leaving out the actuator's own endpoints; the p95 needs its histogram
buckets, which Spring publishes only with
``management.metrics.distribution.percentiles-histogram.http.server.requests=true``.

- no ``requests`` series for the slot, or NaN: no data (a read error, never a pass);
- requests but no ``errors`` series: 0 errors (Spring creates the 5xx series at the
  first 5xx);
- no ``p95`` series or NaN: the p95 is unknown (the judge says so when it needs it).

Answers are outside text: bounded in size, checked in shape, and never printed raw.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from tagkeeper.deploy.metrics.model import MetricsError, NoData, Reading, SlotReading, SlotStats
from tagkeeper.deploy.proxies.model import shown

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_SELECTOR = '{instance="{instance}",uri!~"/actuator.*"'
DEFAULT_QUERIES: dict[str, str] = {
    "requests": "sum(increase(http_server_requests_seconds_count" + _SELECTOR + "}[{window}]))",
    "errors": (
        "sum(increase(http_server_requests_seconds_count" + _SELECTOR + ',status=~"5.."}'
        "[{window}]))"
    ),
    "p95": (
        "histogram_quantile(0.95, sum by (le) (increase(http_server_requests_seconds_bucket"
        + _SELECTOR
        + "}[{window}])))"
    ),
}
QUERY_NAMES = tuple(DEFAULT_QUERIES)
MAX_ANSWER_BYTES = 1 << 20
MIN_WINDOW = 2  # seconds: a range needs two samples to show an increase
_SAFE_RE = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,300}")


@dataclass(frozen=True, slots=True)
class TimeMark:
    """The start of a window: a wall-clock time."""

    at: float


def render_query(template: str, *, instance: str, slot: str, window_seconds: int) -> str:
    """``template`` with ``{instance}``, ``{slot}`` and ``{window}`` (``"37s"``) filled in."""
    for name, value in (("instance", instance), ("slot", slot)):
        if not _SAFE_RE.fullmatch(value):
            raise ValueError(f"{name} {value!r} cannot go into a query")
    return (
        template.replace("{instance}", instance)
        .replace("{slot}", slot)
        .replace("{window}", f"{window_seconds}s")
    )


class Prometheus:
    """A :class:`~tagkeeper.deploy.metrics.model.MetricsSource` over Prometheus's API."""

    def __init__(
        self,
        url: str,
        client: httpx.Client,
        *,
        queries: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.client = client
        unknown = set(queries or {}) - set(QUERY_NAMES)
        if unknown:
            raise ValueError(f"unknown query names: {', '.join(sorted(unknown))}")
        self.queries = {**DEFAULT_QUERIES, **dict(queries or {})}
        self.clock = clock

    def mark(self) -> TimeMark:
        return TimeMark(self.clock())

    def read(self, mark: TimeMark, slots: Mapping[str, str]) -> Reading:
        now = self.clock()
        window = math.floor(now - mark.at)
        if window < MIN_WINDOW:
            gone = NoData(f"the window is {max(0, window)}s, shorter than {MIN_WINDOW}s")
            return Reading(dict.fromkeys(slots, gone), max(0.0, now - mark.at))
        readings: dict[str, SlotReading] = {}
        for slot, instance in slots.items():
            values: dict[str, float | None] = {}
            for name in QUERY_NAMES:
                query = render_query(
                    self.queries[name], instance=instance, slot=slot, window_seconds=window
                )
                values[name] = self.value(query, at=now)
            readings[slot] = _stats(values, instance, window)
        return Reading(readings, float(window))

    def ready(self, instance: str, since: float) -> str | None:
        """``None`` once Prometheus scrapes ``instance`` and has done so since ``since``.

        Read from ``/api/v1/targets?state=active``: the target whose ``instance`` label
        (or discovered ``__address__``) is ``instance`` must be ``up`` with a last scrape
        at or after ``since``. A target added through ``file_sd`` is first scraped up to
        ~5 s later (discovery batches updates), plus one scrape interval.
        """
        body = self._get("/api/v1/targets", {"state": "active"})
        data = body.get("data")
        targets = data.get("activeTargets") if isinstance(data, dict) else None
        if not isinstance(targets, list):
            raise MetricsError("Prometheus's target list is not in the expected form")
        for target in targets[:10_000]:
            if not isinstance(target, dict) or not _is_instance(target, instance):
                continue
            health = target.get("health")
            if health != "up":
                error = target.get("lastError")
                why = f": {shown(str(error), 160)}" if error else ""
                return f"Prometheus's target {instance} is {shown(str(health), 20)}{why}"
            scraped = _when(target.get("lastScrape"))
            if scraped is None or scraped < since:
                return f"Prometheus has not scraped {instance} since its container started"
            return None
        return (
            f"Prometheus has no active target {instance}: scrape every slot's port (both "
            "slots stay in its configuration; a slot with no container is simply down)"
        )

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            answer = self.client.get(f"{self.url}{path}", params=dict(params), timeout=10.0)
        except httpx.HTTPError as exc:
            raise MetricsError(
                f"Prometheus at {self.url} did not answer ({type(exc).__name__})"
            ) from None
        if len(answer.content) > MAX_ANSWER_BYTES * 8:
            raise MetricsError(f"Prometheus answered more than {MAX_ANSWER_BYTES * 8} bytes")
        try:
            body: Any = answer.json()
        except ValueError:
            raise MetricsError(
                f"Prometheus answered {answer.status_code} with something that is not JSON"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise MetricsError(f"Prometheus refused {path} ({answer.status_code})")
        return body

    def value(self, query: str, *, at: float) -> float | None:
        """The one value of an instant query at ``at``; ``None`` for an empty result."""
        try:
            answer = self.client.get(
                f"{self.url}/api/v1/query",
                params={"query": query, "time": f"{at:.3f}"},
                timeout=10.0,
            )
        except httpx.HTTPError as exc:
            raise MetricsError(
                f"Prometheus at {self.url} did not answer ({type(exc).__name__})"
            ) from None
        if len(answer.content) > MAX_ANSWER_BYTES:
            raise MetricsError(f"Prometheus answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            body: Any = answer.json()
        except ValueError:
            raise MetricsError(
                f"Prometheus answered {answer.status_code} with something that is not JSON"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise MetricsError(
                f"Prometheus refused the query ({answer.status_code}: "
                f"{shown(str(error), 200) if error else 'no reason given'})",
                hint="check 'metrics-queries' in [deploy.ENV]: each must be valid PromQL "
                "that returns one series",
            )
        return _one_value(body.get("data"))


def _is_instance(target: dict[str, Any], instance: str) -> bool:
    labels, found = target.get("labels"), target.get("discoveredLabels")
    return (isinstance(labels, dict) and labels.get("instance") == instance) or (
        isinstance(found, dict) and found.get("__address__") == instance
    )


def _when(value: Any) -> float | None:
    """Unix seconds of an RFC 3339 time (``None`` for anything else, or the zero time)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None or moment.year < 2000:  # Go's zero time: never scraped
        return None
    return moment.timestamp()


def _one_value(data: Any) -> float | None:
    if not isinstance(data, dict):
        raise MetricsError("Prometheus's answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _sample(result)
    if kind != "vector" or not isinstance(result, list):
        raise MetricsError(f"Prometheus answered a {shown(str(kind), 20)}, not a vector")
    if not result:
        return None
    if len(result) > 1:
        raise MetricsError(
            f"the query returns {len(result)} series, not one",
            hint="aggregate it (sum(...), sum by (le) (...)) to one series per slot",
        )
    item = result[0]
    return _sample(item.get("value") if isinstance(item, dict) else None)


def _sample(value: Any) -> float:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        raise MetricsError("Prometheus's answer has a malformed sample")
    text = value[1]
    if len(text) > 40:
        raise MetricsError("Prometheus's answer has a malformed sample")
    try:
        return float(text)
    except ValueError:
        raise MetricsError("Prometheus's answer has a sample that is not a number") from None


def _stats(values: Mapping[str, float | None], instance: str, window: int) -> SlotReading:
    requests, errors, p95 = values["requests"], values["errors"], values["p95"]
    if requests is None:
        return NoData(f"no request series for instance {instance} in the last {window}s")
    if math.isnan(requests) or requests < 0 or math.isinf(requests):
        return NoData(f"the request count for {instance} is {requests}")
    count = round(requests)
    if errors is None or math.isnan(errors):
        failed = 0  # Spring creates the 5xx series at the first 5xx
    elif errors < 0 or math.isinf(errors):
        return NoData(f"the error count for {instance} is {errors}")
    else:
        failed = min(round(errors), count)
    latency = None if p95 is None or math.isnan(p95) or p95 < 0 else p95
    return SlotStats(count, failed, latency)
