"""What a metrics source answers: per-slot request counts, 5xx errors and p95 latency.

Pure values and the :class:`MetricsSource` protocol. A reading covers a window that
starts at a *mark* (the start of a canary step, or the switch, for the watch) and never
earlier, so what a slot's previous container did cannot count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from tagkeeper.errors import RegistryError

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True, slots=True)
class SlotStats:
    """One slot over one window: requests, those answered 5xx, p95 latency (seconds)."""

    requests: int
    errors_5xx: int
    p95_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.requests < 0 or self.errors_5xx < 0 or self.errors_5xx > self.requests:
            raise ValueError(f"inconsistent counts: {self.errors_5xx} errors, {self.requests}")
        if self.p95_seconds is not None and (
            math.isnan(self.p95_seconds) or self.p95_seconds < 0
        ):
            raise ValueError(f"p95 of {self.p95_seconds!r} seconds")

    @property
    def error_rate(self) -> float | None:
        """The share of requests answered 5xx (0..1); ``None`` without requests."""
        return self.errors_5xx / self.requests if self.requests else None

    def to_json(self) -> dict[str, object]:
        rate = self.error_rate
        p95: object = self.p95_seconds
        if isinstance(p95, float):
            p95 = round(p95, 6) if math.isfinite(p95) else "inf"
        return {
            "requests": self.requests,
            "errors_5xx": self.errors_5xx,
            "error_rate": None if rate is None else round(rate, 6),
            "p95_seconds": p95,
        }


@dataclass(frozen=True, slots=True)
class NoData:
    """The source had nothing to say about a slot: never a pass."""

    reason: str

    def to_json(self) -> dict[str, object]:
        return {"no_data": self.reason}


SlotReading = SlotStats | NoData


@dataclass(frozen=True, slots=True)
class Reading:
    """A window's readings per slot name, and what was odd while reading them."""

    slots: Mapping[str, SlotReading]
    window_seconds: float
    malformed: int = 0  # lines or answers that could not be read (never counted)
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "window_seconds": round(self.window_seconds, 3),
            "slots": {name: value.to_json() for name, value in self.slots.items()},
            "malformed": self.malformed,
            "notes": list(self.notes),
        }


class MetricsError(RegistryError):
    """The metrics source could not be read (a read error, never a pass)."""


class Mark(Protocol):
    """Where a window starts; what it holds depends on the source."""

    @property
    def at(self) -> float:
        """Wall-clock time (Unix seconds) of the mark."""
        ...


M = TypeVar("M", bound=Mark)


class MetricsSource(Protocol[M]):
    """A source of per-slot request metrics (an access log, Prometheus).

    ``M`` is the source's own mark type (a file position, a time).
    """

    def mark(self) -> M:
        """The start of a window: only what happens after it is read."""
        ...

    def read(self, mark: M, slots: Mapping[str, str]) -> Reading:
        """Per slot (name -> ``host:port``), what happened since ``mark``.

        Raises :class:`MetricsError` when the source cannot be read at all.
        """
        ...

    def ready(self, instance: str, since: float) -> str | None:
        """``None`` when requests to ``instance`` (``host:port``) from now on will be seen;
        else why not yet. ``since``: wall-clock time the instance's container started.

        Prometheus must have scraped the instance after it started (a counter with no
        sample before the window cannot count the window's first requests); an access
        log sees every request the proxy logs.
        """
        ...
