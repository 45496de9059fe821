"""Bounded load clients that record every request, for deploys under traffic.

:class:`LoadClient` sends GET requests to one URL at a steady rate from a background
scheduler thread and a small pool of worker threads, until ``duration`` seconds have
passed or ``count`` requests were sent, whichever comes first (one of them is
required: a client is always bounded). Two kinds:

- ``keepalive=False``: a new connection per request (``Connection: close``);
- ``keepalive=True``: ``connections`` persistent connections, as a browser keeps
  them; each worker owns one and reopens it after an error. With
  ``retry_stale=True`` a request that fails on a *reused* connection before any
  answer byte is sent again once on a new connection, as browsers and most HTTP
  client libraries do for idempotent requests.

Every request becomes a :class:`Record` (wall-clock times, status or error, the
answering ``X-App-Version``/``X-App-Port``/``X-Upstream``); :class:`Summary` gives
failures with their times, per-version counts and the last time each answered.
"""

from __future__ import annotations

import http.client
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping


@dataclass(frozen=True)
class Record:
    """One request. Times are ``time.time()`` seconds; ``status`` is None on an error."""

    sent: float
    answered: float
    status: int | None
    error: str | None
    version: str | None
    port: str | None
    upstream: str | None
    connection: int
    reused: bool
    retried: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def latency(self) -> float:
        return self.answered - self.sent


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Summary:
    """What a run of records says."""

    records: list[Record]

    @property
    def total(self) -> int:
        return len(self.records)

    @property
    def failures(self) -> list[Record]:
        """Non-2xx answers and connection errors, in the order they were sent."""
        return [r for r in self.records if not r.ok]

    @property
    def retried(self) -> int:
        return sum(r.retried for r in self.records)

    @property
    def by_version(self) -> Counter[str | None]:
        return Counter(r.version for r in self.records if r.status is not None)

    @property
    def by_port(self) -> Counter[str | None]:
        return Counter(r.port for r in self.records if r.status is not None)

    def last_seen(
        self, *, version: str | None = None, port: int | str | None = None
    ) -> float | None:
        """When the last request answered by ``version`` (and/or ``port``) was sent."""
        times = [r.sent for r in self._matching(version, port)]
        return max(times) if times else None

    def first_seen(
        self, *, version: str | None = None, port: int | str | None = None
    ) -> float | None:
        """When the first request answered by ``version`` (and/or ``port``) was sent."""
        times = [r.sent for r in self._matching(version, port)]
        return min(times) if times else None

    def _matching(self, version: str | None, port: int | str | None) -> Iterable[Record]:
        for r in self.records:
            if r.status is None:
                continue
            if version is not None and r.version != version:
                continue
            if port is not None and r.port != str(port):
                continue
            yield r

    def switch_lag(
        self,
        switched: float,
        *,
        port: int | str | None = None,
        version: str | None = None,
        until: float | None = None,
    ) -> float:
        """Seconds from ``switched`` to the last request sent (before ``until``) that the
        old slot (``port`` and/or ``version``) still answered; 0 when none did."""
        window = self.between(switched, until if until is not None else float("inf"))
        last = window.last_seen(version=version, port=port)
        return 0.0 if last is None else last - switched

    def between(self, start: float, end: float) -> Summary:
        """Only the requests sent in ``[start, end)``."""
        return Summary([r for r in self.records if start <= r.sent < end])

    @property
    def span(self) -> float:
        if not self.records:
            return 0.0
        return max(r.sent for r in self.records) - min(r.sent for r in self.records)

    @property
    def rate(self) -> float:
        """Requests sent per second over the run."""
        return (self.total - 1) / self.span if self.span > 0 else 0.0

    def latency(self, q: float) -> float:
        return _percentile([r.latency for r in self.records if r.status is not None], q)

    def describe(self, limit: int = 10) -> str:
        """A short text for assertion messages: counts, failures with times."""
        lines = [
            f"{self.total} requests at {self.rate:.0f}/s, {len(self.failures)} failed, "
            f"by version {dict(self.by_version)}, by port {dict(self.by_port)}, "
            f"p50 {self.latency(0.5) * 1000:.1f} ms, p99 {self.latency(0.99) * 1000:.1f} ms"
        ]
        for r in self.failures[:limit]:
            lines.append(
                f"  at {r.sent:.3f} (conn {r.connection}, reused {r.reused}): "
                f"{r.status if r.status is not None else r.error}"
            )
        return "\n".join(lines)


@dataclass
class LoadClient:
    """A steady, bounded client; use as a context manager or :meth:`start`/:meth:`join`."""

    url: str
    rate: float = 100.0
    duration: float | None = None
    count: int | None = None
    keepalive: bool = False
    connections: int = 4
    workers: int = 8
    timeout: float = 5.0
    retry_stale: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    on_record: Callable[[Record], None] | None = None
    records: list[Record] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _ticks: queue.Queue[float | None] = field(default_factory=queue.Queue, init=False)
    started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.duration is None and self.count is None:
            raise ValueError("a load client needs a duration or a count")
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        parts = urlsplit(self.url)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"load clients only talk to loopback, not {self.url}")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self.keepalive:
            self.workers = self.connections

    # -- running -------------------------------------------------------------------
    def start(self) -> LoadClient:
        self.started = time.time()
        for index in range(self.workers):
            worker = threading.Thread(
                target=self._work, args=(index,), name=f"load-{index}", daemon=True
            )
            worker.start()
            self._threads.append(worker)
        scheduler = threading.Thread(target=self._schedule, name="load-scheduler", daemon=True)
        scheduler.start()
        self._threads.append(scheduler)
        return self

    def stop(self) -> None:
        """Stop sending new requests now (those in flight finish)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> Summary:
        """Wait until the run is over (bounded by its duration/count plus ``timeout``)."""
        limit = timeout if timeout is not None else (self.duration or 0) + self.timeout * 2 + 10
        deadline = time.monotonic() + limit
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.summary()

    def __enter__(self) -> LoadClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join()

    def summary(self) -> Summary:
        with self._lock:
            return Summary(sorted(self.records, key=lambda r: r.sent))

    def _schedule(self) -> None:
        interval = 1.0 / self.rate
        start = time.monotonic()
        sent = 0
        try:
            while not self._stop.is_set():
                if self.count is not None and sent >= self.count:
                    break
                due = start + sent * interval
                if self.duration is not None and due - start >= self.duration:
                    break
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                self._ticks.put(due)
                sent += 1
        finally:
            for _ in range(self.workers):
                self._ticks.put(None)

    # -- one worker ----------------------------------------------------------------
    def _work(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        used = False
        while True:
            tick = self._ticks.get()
            if tick is None:
                break
            if conn is None or not self.keepalive:
                conn = self._connect()
                used = False
            record, keep = self._request(conn, index, reused=used)
            if record.status is None and used and self.retry_stale and record.error_before_answer:
                conn.close()
                conn = self._connect()
                record, keep = self._request(conn, index, reused=False, retried_from=record)
            self._add(record.record)
            used = True
            if not (self.keepalive and keep):
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _request(
        self,
        conn: http.client.HTTPConnection,
        index: int,
        *,
        reused: bool,
        retried_from: _Attempt | None = None,
    ) -> tuple[_Attempt, bool]:
        headers = dict(self.headers)
        if not self.keepalive:
            headers["Connection"] = "close"
        sent = retried_from.record.sent if retried_from else time.time()
        answered_any = False
        try:
            conn.request("GET", self._path, headers=headers)
            response = conn.getresponse()
            answered_any = True
            response.read()
            keep = not response.will_close
            record = Record(
                sent=sent,
                answered=time.time(),
                status=response.status,
                error=None,
                version=response.getheader("X-App-Version"),
                port=response.getheader("X-App-Port"),
                upstream=response.getheader("X-Upstream"),
                connection=index,
                reused=reused,
                retried=retried_from is not None,
            )
            return _Attempt(record, False), keep
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            record = Record(
                sent=sent,
                answered=time.time(),
                status=None,
                error=f"{type(exc).__name__}: {exc}",
                version=None,
                port=None,
                upstream=None,
                connection=index,
                reused=reused,
                retried=retried_from is not None,
            )
            return _Attempt(record, not answered_any and _stale(exc)), False

    def _add(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)


@dataclass(frozen=True)
class _Attempt:
    record: Record
    error_before_answer: bool

    @property
    def status(self) -> int | None:
        return self.record.status


def _stale(exc: BaseException) -> bool:
    """Errors a kept-alive connection closed by the server gives before any answer."""
    return isinstance(
        exc,
        http.client.RemoteDisconnected
        | ConnectionResetError
        | BrokenPipeError
        | ConnectionAbortedError,
    ) and not isinstance(exc, socket.timeout)
