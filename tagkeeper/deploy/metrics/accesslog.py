"""Per-slot metrics from the proxy's JSON access log (nginx or Traefik).

Needs nothing but the proxy. Two line forms are read, each recognised by its fields:

- nginx, with the ``log_format tagkeeper_json`` that ``tagkeeper proxy-snippet`` prints:
  ``upstream`` (``$upstream_addr``), ``upstream_status``, ``upstream_time``
  (``$upstream_response_time``), ``status``, ``request_time``, ``probe``. When nginx
  tried several upstreams for one request (``"127.0.0.1:8521, 127.0.0.1:8520"``), each
  attempt counts for its own slot, with its own status: a slot that refused a connection
  answered badly even if the client got an answer from the other one;
- Traefik's JSON access log: ``ServiceAddr`` (or ``ServiceURL``), ``DownstreamStatus``,
  ``Duration`` (nanoseconds).

Only lines written after the mark count: the mark is the file's identity (device, inode)
and size. A rotated file (renamed, a new one created) is followed: the rest of the old
file is read when it is still in the same folder, else the reading says lines were lost.
A truncated file (``copytruncate``) is read from its start. A partial last line (being
written) is left for the next read. A line that is not JSON in one of the two forms is
counted as malformed and never trusted; tagkeeper's own probes are left out.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tagkeeper.deploy.metrics.model import MetricsError, NoData, Reading, SlotReading, SlotStats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

MAX_LINE = 64 * 1024  # an access log line is well under 1 KiB
MAX_WINDOW_BYTES = 256 * 1024 * 1024  # a step's window; more is read in part and said so
_SPLIT_RE = re.compile(r"\s*(?:,| : )\s*")
_PROBE_FIELDS = ("probe", "request_X-Tagkeeper-Probe")


@dataclass(frozen=True, slots=True)
class LogMark:
    """The start of a window in an access log: when, which file, how far it went."""

    at: float
    device: int
    inode: int
    offset: int


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile of ``values`` (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, status: int | None, seconds: float | None) -> None:
        self.requests += 1
        if status is None or status >= 500:
            self.errors += 1
        if seconds is not None:
            self.latencies.append(seconds)

    def stats(self) -> SlotStats:
        return SlotStats(self.requests, self.errors, percentile(self.latencies, 0.95))


class AccessLog:
    """A :class:`~tagkeeper.deploy.metrics.model.MetricsSource` over one JSON access log."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_bytes: int = MAX_WINDOW_BYTES,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.max_bytes = max_bytes

    def mark(self) -> LogMark:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return LogMark(self.clock(), 0, 0, 0)  # everything written from now on counts
        except OSError as exc:
            raise MetricsError(f"access log {self.path}: {exc.strerror or exc}") from None
        return LogMark(self.clock(), info.st_dev, info.st_ino, info.st_size)

    def ready(self, instance: str, since: float) -> str | None:
        """Always ready: the proxy logs every request it passes on."""
        del instance, since
        return None

    def read(self, mark: LogMark, slots: Mapping[str, str]) -> Reading:
        chunks, notes = self._since(mark)
        by_address = {address: name for name, address in slots.items()}
        tallies = {name: _Tally() for name in slots}
        malformed = good = 0
        for line in _lines(chunks, notes):
            entry = _entry(line)
            if entry is None:
                malformed += 1
                continue
            if any(entry.get(key) for key in _PROBE_FIELDS):
                continue  # tagkeeper's own probe
            attempts = _attempts(entry)
            if attempts is None:
                malformed += 1
                continue
            good += 1
            for address, status, seconds in attempts:
                name = by_address.get(address)
                if name is not None:
                    tallies[name].add(status, seconds)
        if malformed:
            notes.append(f"{malformed} lines could not be read and were not counted")
        readings: dict[str, SlotReading] = {}
        for name, tally in tallies.items():
            if tally.requests == 0 and good == 0 and malformed:
                readings[name] = NoData(f"no readable line in {self.path} since the mark")
            else:
                readings[name] = tally.stats()
        return Reading(readings, max(0.0, self.clock() - mark.at), malformed, tuple(notes))

    def _since(self, mark: LogMark) -> tuple[list[bytes], list[str]]:
        """The bytes written since ``mark`` (old file's rest first after a rotation)."""
        notes: list[str] = []
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise MetricsError(
                f"access log {self.path} does not exist",
                hint="check the proxy's access_log / accessLog.filePath and 'metrics'",
            ) from None
        except OSError as exc:
            raise MetricsError(f"access log {self.path}: {exc.strerror or exc}") from None
        budget = [self.max_bytes]
        same = mark.inode != 0 and (info.st_dev, info.st_ino) == (mark.device, mark.inode)
        if same and info.st_size >= mark.offset:
            return [self._slice(self.path, mark.offset, info.st_size, budget, notes)], notes
        if same:
            notes.append("the log was truncated since the mark: lines before that are lost")
            return [self._slice(self.path, 0, info.st_size, budget, notes)], notes
        chunks: list[bytes] = []
        if mark.inode != 0:
            old = _find_inode(self.path.parent, mark.device, mark.inode)
            if old is None:
                notes.append(
                    "the log was rotated and the old file is gone: lines written between the "
                    "mark and the rotation are lost"
                )
            else:
                size = old.stat().st_size
                chunk = self._slice(old, min(mark.offset, size), size, budget, notes)
                chunks.append(chunk if chunk.endswith(b"\n") or not chunk else chunk + b"\n")
                notes.append(f"the log was rotated; read the rest of {old.name}")
        chunks.append(self._slice(self.path, 0, info.st_size, budget, notes))
        return chunks, notes

    def _slice(
        self, path: Path, start: int, end: int, budget: list[int], notes: list[str]
    ) -> bytes:
        size = min(end - start, budget[0])
        if size < end - start:
            notes.append(f"more than {self.max_bytes} bytes since the mark: read in part")
        budget[0] -= size
        try:
            with path.open("rb") as handle:
                handle.seek(start)
                return handle.read(size)
        except OSError as exc:
            raise MetricsError(f"access log {path}: {exc.strerror or exc}") from None


def _find_inode(folder: Path, device: int, inode: int) -> Path | None:
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (info.st_dev, info.st_ino) == (device, inode) and entry.is_file():
                    return Path(entry.path)
    except OSError:
        return None
    return None


def _lines(chunks: Iterable[bytes], notes: list[str]) -> Iterable[bytes]:
    chunks = list(chunks)
    for index, chunk in enumerate(chunks):
        lines = chunk.split(b"\n")
        last = lines.pop()
        if last and index == len(chunks) - 1:
            notes.append("a partial last line (still being written) is left for later")
        elif last:
            lines.append(last)
        yield from (line for line in lines if line.strip())


def _entry(line: bytes) -> dict[str, Any] | None:
    if len(line) > MAX_LINE:
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        return int(value)
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _attempts(entry: dict[str, Any]) -> list[tuple[str, int | None, float | None]] | None:
    """(address, status, seconds) of each upstream attempt of one logged request."""
    if "DownstreamStatus" in entry or "ServiceAddr" in entry or "ServiceURL" in entry:
        status = _int(entry.get("DownstreamStatus"))
        address = entry.get("ServiceAddr")
        if not isinstance(address, str) or not address:
            url = entry.get("ServiceURL")
            address = urlsplit(url).netloc if isinstance(url, str) else ""
        if status is None:
            return None
        duration = _seconds(entry.get("Duration"))
        return [(address, status, None if duration is None else duration / 1e9)]
    if "upstream" in entry and "status" in entry:
        status = _int(entry.get("status"))
        if status is None or not isinstance(entry["upstream"], str):
            return None
        addresses = [a for a in _SPLIT_RE.split(entry["upstream"].strip()) if a]
        statuses = _SPLIT_RE.split(str(entry.get("upstream_status") or "").strip())
        times = _SPLIT_RE.split(str(entry.get("upstream_time") or "").strip())
        request_time = _seconds(entry.get("request_time"))
        if not addresses:
            return []  # nginx answered itself (no upstream was tried)
        if len(statuses) != len(addresses):
            return [(addresses[-1], status, request_time)]
        out: list[tuple[str, int | None, float | None]] = []
        for i, address in enumerate(addresses):
            seconds = _seconds(times[i]) if i < len(times) else None
            out.append((address, _int(statuses[i]), request_time if seconds is None else seconds))
        return out
    return None
