"""Pure decisions about metrics: a canary step's verdict and the watch's rule.

Nothing here reads a clock, a file or the network. The numbers that decided are part of
every verdict, so the ledger and the report can say why.

Canary step (:func:`judge_step`), on the new slot's window, in this order:

- the source had no data for the new slot: ``no-data``, never a pass;
- fewer than ``min_requests`` requests: ``inconclusive`` (which fails the step when
  ``inconclusive_fails``, the default for prod), unless the errors already seen are
  more than ``max_error_rate`` of ``min_requests``: then it is a ``fail`` at once
  (50 requests of which 10 failed are enough to know);
- error rate above ``max_error_rate``: ``fail``;
- p95 above ``max_p95``, or above ``max_p95_ratio`` times the old slot's p95 over the
  same window: ``fail``. A p95 that is needed but missing is ``no-data``. Under
  ``p95_floor`` (50 ms) a p95 never fails the ratio: a few milliseconds of noise are
  no regression;
- else ``pass``.

Watch (:func:`watch_step`): a threshold crossed (a failing verdict, or the live slot
unhealthy) twice in a row, or four reads of the metrics in a row that gave nothing (an
error or no data), roll back. A pass clears both counts; too little traffic
(``inconclusive``) clears neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from tagkeeper.deploy.metrics.model import NoData, SlotReading, SlotStats

if TYPE_CHECKING:
    from tagkeeper.deploy.spec import DeploySpec


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no-data"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What a slot must stay within. Defaults, and why:

    - ``max_error_rate`` 1%: a healthy service answers far fewer 5xx; one in a hundred
      is an incident for most teams;
    - ``max_p95`` 0.8 s: what users start to feel on an API call (``None``: not checked);
    - ``max_p95_ratio``: against the old slot over the same window, which follows the
      load of the moment (``None``: not checked);
    - ``min_requests`` 50: at 1% allowed, fewer requests cannot tell 0 errors from 1;
    - ``inconclusive_fails`` True: too little traffic fails a step (prod's default).
    """

    max_error_rate: float = 0.01
    max_p95: float | None = 0.8
    max_p95_ratio: float | None = None
    min_requests: int = 50
    inconclusive_fails: bool = True
    p95_floor: float = 0.05

    @classmethod
    def from_spec(cls, spec: DeploySpec) -> Thresholds:
        """The thresholds ``[deploy.ENV]`` sets (``inconclusive`` per its environment)."""
        return cls(
            max_error_rate=spec.max_error_rate,
            max_p95=spec.max_p95,
            max_p95_ratio=spec.max_p95_ratio,
            min_requests=spec.min_requests,
            inconclusive_fails=spec.fails_inconclusive(),
        )

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"max_error_rate {self.max_error_rate} is not in 0..1")
        if self.max_p95 is not None and not self.max_p95 > 0:
            raise ValueError(f"max_p95 {self.max_p95} is not positive")
        if self.max_p95_ratio is not None and not self.max_p95_ratio >= 1:
            raise ValueError(f"max_p95_ratio {self.max_p95_ratio} is below 1")
        if self.min_requests < 1:
            raise ValueError("min_requests must be at least 1")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A step's outcome, whether the step may go on, and the numbers that decided."""

    outcome: Outcome
    passed: bool
    reasons: tuple[str, ...]
    requests: int | None = None
    errors_5xx: int | None = None
    error_rate: float | None = None
    p95_seconds: float | None = None
    old_p95_seconds: float | None = None
    p95_limit: float | None = None

    @property
    def breach(self) -> bool:
        """A threshold was crossed (not merely too little traffic or data)."""
        return self.outcome is Outcome.FAIL

    def to_json(self) -> dict[str, object]:
        def num(value: float | None) -> object:
            if value is None:
                return None
            return round(value, 6) if math.isfinite(value) else "inf"

        return {
            "outcome": str(self.outcome),
            "passed": self.passed,
            "reasons": list(self.reasons),
            "requests": self.requests,
            "errors_5xx": self.errors_5xx,
            "error_rate": num(self.error_rate),
            "p95_seconds": num(self.p95_seconds),
            "old_p95_seconds": num(self.old_p95_seconds),
            "p95_limit": num(self.p95_limit),
        }


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f}%".replace(".00%", "%")


def _ms(seconds: float) -> str:
    return "inf" if not math.isfinite(seconds) else f"{seconds * 1000:.0f} ms"


def judge_step(new: SlotReading, old: SlotReading | None, limits: Thresholds) -> Verdict:
    """The verdict on the new slot's window, compared with the old slot's where needed."""
    if isinstance(new, NoData):
        return Verdict(Outcome.NO_DATA, False, (f"no data for the new slot: {new.reason}",))

    def verdict(
        outcome: Outcome,
        passed: bool,
        reasons: tuple[str, ...],
        old_p95: float | None = None,
        limit: float | None = None,
    ) -> Verdict:
        return Verdict(
            outcome, passed, reasons, new.requests, new.errors_5xx, new.error_rate,
            new.p95_seconds, old_p95, limit,
        )

    if new.requests < limits.min_requests:
        allowed = limits.max_error_rate * limits.min_requests
        if new.errors_5xx > allowed:
            return verdict(
                Outcome.FAIL,
                False,
                (
                    f"{new.errors_5xx} of {new.requests} requests failed (5xx): more than "
                    f"{_pct(limits.max_error_rate)} of even {limits.min_requests} requests",
                ),
            )
        word = "fails the step" if limits.inconclusive_fails else "the step goes on"
        return verdict(
            Outcome.INCONCLUSIVE,
            not limits.inconclusive_fails,
            (
                f"only {new.requests} requests reached the new slot (min-requests is "
                f"{limits.min_requests}): inconclusive, which {word}",
            ),
        )
    reasons: list[str] = []
    missing: list[str] = []
    rate = new.errors_5xx / new.requests
    if rate > limits.max_error_rate:
        reasons.append(
            f"error rate {_pct(rate)} ({new.errors_5xx} of {new.requests}) is above "
            f"max-error-rate {_pct(limits.max_error_rate)}"
        )
    old_p95: float | None = None
    limit: float | None = limits.max_p95
    if limits.max_p95_ratio is not None:
        if isinstance(old, SlotStats) and old.requests > 0 and old.p95_seconds is not None:
            old_p95 = old.p95_seconds
            by_ratio = max(limits.max_p95_ratio * old_p95, limits.p95_floor)
            limit = by_ratio if limit is None else min(limit, by_ratio)
        elif limits.max_p95 is None:
            missing.append("the old slot has no p95 over the same window to compare with")
    if limit is not None:
        if new.p95_seconds is None:
            missing.append("the new slot has no p95 latency")
        elif new.p95_seconds > limit:
            basis = (
                f"max-p95-ratio {limits.max_p95_ratio:g} x the old slot's {_ms(old_p95)}"
                if old_p95 is not None and limit != limits.max_p95
                else "max-p95"
            )
            reasons.append(f"p95 {_ms(new.p95_seconds)} is above {_ms(limit)} ({basis})")
    if reasons:
        return verdict(Outcome.FAIL, False, tuple(reasons), old_p95, limit)
    if missing:
        return verdict(Outcome.NO_DATA, False, tuple(missing), old_p95, limit)
    ok = f"error rate {_pct(rate)} over {new.requests} requests"
    if new.p95_seconds is not None:
        ok += f", p95 {_ms(new.p95_seconds)}"
    return verdict(Outcome.PASS, True, (ok,), old_p95, limit)


# -- the watch ----------------------------------------------------------------------


class Observation(StrEnum):
    """What one watch check saw, besides a verdict."""

    READ_ERROR = "read-error"  # the metrics source could not be read
    UNHEALTHY = "unhealthy"  # the live slot failed its health check


@dataclass(frozen=True, slots=True)
class WatchRule:
    """How many bad checks in a row roll back (defaults: 2 breaches, 4 read errors).

    Two breaches, not one: a single bad window can be a blip; two in a row, one watch
    interval apart, are a trend. Four read errors: a metrics source that cannot answer
    for two minutes (at the default 30 s interval) leaves the release unwatched.
    """

    breaches: int = 2
    read_errors: int = 4


@dataclass(frozen=True, slots=True)
class WatchState:
    checks: int = 0
    breaches: int = 0  # in a row
    read_errors: int = 0  # in a row


@dataclass(frozen=True, slots=True)
class WatchDecision:
    state: WatchState
    rollback: bool
    reason: str | None = None


def watch_step(
    state: WatchState, seen: Verdict | Observation, rule: WatchRule | None = None
) -> WatchDecision:
    """The watch's next state after one check, and whether to roll back now."""
    rule = rule or WatchRule()
    state = replace(state, checks=state.checks + 1)
    if isinstance(seen, Verdict):
        if seen.outcome is Outcome.PASS:
            return WatchDecision(replace(state, breaches=0, read_errors=0), False)
        if seen.outcome is Outcome.INCONCLUSIVE:
            return WatchDecision(replace(state, read_errors=0), False)
        if seen.outcome is Outcome.NO_DATA:
            why = "; ".join(seen.reasons)
            return _read_error(state, rule, why)
        state = replace(state, breaches=state.breaches + 1, read_errors=0)
        why = "; ".join(seen.reasons)
    elif seen is Observation.UNHEALTHY:
        state = replace(state, breaches=state.breaches + 1, read_errors=0)
        why = "the live slot failed its health check"
    else:
        return _read_error(state, rule, "the metrics could not be read")
    if state.breaches >= rule.breaches:
        return WatchDecision(
            state, True, f"thresholds crossed {state.breaches} times in a row (last: {why})"
        )
    return WatchDecision(state, False, why)


def _read_error(state: WatchState, rule: WatchRule, why: str) -> WatchDecision:
    state = replace(state, read_errors=state.read_errors + 1)
    if state.read_errors >= rule.read_errors:
        return WatchDecision(
            state,
            True,
            f"no metrics for {state.read_errors} checks in a row (last: {why}): the release "
            "cannot be watched",
        )
    return WatchDecision(state, False, why)
