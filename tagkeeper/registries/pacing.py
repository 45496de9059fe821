"""Adaptive pacing of deletes under an unpublished rate limit (pure: the clock is injected).

GitHub documents at most 900 points a minute per endpoint (180 DELETE/min) but answers
package deletes with secondary-limit errors well below that, and a client that keeps
hitting the limit risks a ban. :class:`DeletePacer` therefore:

- never schedules more than ``max_rate`` deletes a minute (180) — deletes are spaced
  evenly, so no 60-second window ever holds more;
- starts moderately (``start_rate``, 60/min) and raises the rate additively after each
  accepted delete while no limit answer has come;
- on a limit answer, estimates the limit from the deletes accepted in the last minute,
  cuts the rate multiplicatively (``cut``), blocks until ``retry-after`` has passed, then
  climbs back quickly to ``settle`` times the estimate and stays there; after
  ``probe_after`` quiet deletes it raises the estimate a little, in case the limit was
  transient;
- bounds the deletes in flight (``max_in_flight``) for callers that delete in parallel.

The caller asks :meth:`DeletePacer.reserve` how long to wait before each delete, then
reports the answer with :meth:`accepted` or :meth:`limited`. All times are seconds
from ``clock()``; the pacer never sleeps itself.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

WINDOW = 60.0
SPACING = 1.002  # a hair over 60/rate: even spacing never crowds a 60 s window


@dataclass(frozen=True)
class PacerSettings:
    """Tuning of :class:`DeletePacer` (rates are deletes per minute)."""

    max_rate: float = 180.0
    start_rate: float = 60.0
    min_rate: float = 6.0
    increase: float = 4.0  # per accepted delete while no limit is known
    cut: float = 0.5  # multiplicative cut on a limit answer
    settle: float = 0.95  # fraction of the estimated limit to run at
    recover_steps: int = 5  # accepted deletes to climb from the cut back to ``settle``
    probe_after: int = 150  # quiet deletes before the estimate is raised
    probe_step: float = 0.04  # raise of the estimate per probe (fraction)
    recheck: float = 0.9  # estimate cut when limited again while settled below it
    default_wait: float = 60.0  # wait on a limit answer that gives no retry-after
    max_in_flight: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.start_rate <= self.max_rate:
            raise ValueError("rates must satisfy 0 < min_rate <= start_rate <= max_rate")
        if not 0 < self.cut < 1 or not 0 < self.settle <= 1:
            raise ValueError("cut must be in (0, 1) and settle in (0, 1]")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")


class DeletePacer:
    """Schedules deletes; thread-safe. See the module docstring for the strategy."""

    def __init__(self, clock: Callable[[], float], settings: PacerSettings | None = None) -> None:
        self.settings = settings or PacerSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = self.settings.start_rate
        self._estimate: float | None = None
        self._next = float("-inf")  # earliest start of the next delete
        self._blocked_until = float("-inf")
        self._accepted: deque[float] = deque()  # start times of accepted deletes
        self._quiet = 0
        self._probing = False
        self._in_flight = 0
        self.limits_seen = 0

    @property
    def rate(self) -> float:
        """The current target rate (deletes per minute)."""
        return self._rate

    @property
    def estimate(self) -> float | None:
        """The estimated limit (deletes per minute), once a limit answer came."""
        return self._estimate

    def reserve(self) -> float:
        """Book the next delete slot; return the seconds to wait before sending it.

        Returns ``-1.0`` (and books nothing) when ``max_in_flight`` deletes are already
        in flight: the caller waits for one of them and asks again.
        """
        with self._lock:
            if self._in_flight >= self.settings.max_in_flight:
                return -1.0
            now = self._clock()
            start = max(now, self._next, self._blocked_until)
            self._next = start + SPACING * WINDOW / self._rate
            self._in_flight += 1
            return start - now

    def _settle_rate(self, estimate: float) -> float:
        return min(self.settings.max_rate, self.settings.settle * estimate)

    def accepted(self, started: float) -> None:
        """A delete sent at ``started`` was answered without a limit error."""
        s = self.settings
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._accepted.append(started)
            self._trim(self._clock())
            if self._estimate is None:
                self._rate = min(s.max_rate, self._rate + s.increase)
                return
            self._quiet += 1
            if self._quiet >= s.probe_after:
                self._quiet = 0
                self._probing = True
                self._estimate *= 1 + s.probe_step
            target = self._settle_rate(self._estimate)
            step = max(target * (1 - s.cut) / s.recover_steps, 0.1)
            self._rate = min(target, self._rate + step)

    def limited(self, retry_after: float | None) -> float:
        """A limit answer came; return the seconds the caller must wait before retrying."""
        s = self.settings
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            now = self._clock()
            self._trim(now)
            self.limits_seen += 1
            self._quiet = 0
            observed = max(s.min_rate, float(len(self._accepted)))
            if self._estimate is None:  # the first limit: what passed in the last minute
                self._estimate = observed
            elif self._probing:  # a probe above the estimate failed: go back
                self._estimate = min(observed, self._estimate / (1 + s.probe_step))
            else:  # limited while settled below the estimate: it was too high
                self._estimate = min(observed, self._estimate) * s.recheck
            self._estimate = max(s.min_rate, self._estimate)
            self._probing = False
            self._rate = max(s.min_rate, min(self._rate, self._estimate) * s.cut)
            wait = s.default_wait if retry_after is None else max(0.0, retry_after)
            self._blocked_until = max(self._blocked_until, now + wait)
            self._next = max(self._next, self._blocked_until)
            return self._blocked_until - now

    def released(self) -> None:
        """A reserved delete was not sent or ended without an answer (an error)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def _trim(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - WINDOW:
            self._accepted.popleft()
