"""Watching a release: the live slot's health and metrics every interval, and the rule.

:func:`watch_slot` runs the checks; it is given everything it touches (a health probe,
the metrics source, a clock and a sleep) and decides nothing itself: each check's
verdict is :func:`~tagkeeper.deploy.judge.judge_step` on the live slot's window (the old
slot's over the same window is the comparison for ``max-p95-ratio``), and whether to
roll back is :func:`~tagkeeper.deploy.judge.watch_step` (a threshold crossed, or the
live slot unhealthy, twice in a row; four checks in a row without metrics).

Windows follow each other: the first starts when the watch starts (right after the
switch, so nothing from before it counts), each next one where the previous ended. A
check happens every ``interval``; the last one at the end of ``duration``. Without a
metrics source the watch judges health alone.

What the caller does about a roll-back decision (switch back, or deploy the previous
version) is the strategy's business: :mod:`tagkeeper.deploy.strategies.slotkit`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.judge import (
    Observation,
    Outcome,
    Thresholds,
    Verdict,
    WatchRule,
    WatchState,
    judge_step,
    watch_step,
)
from tagkeeper.deploy.metrics.model import MetricsError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tagkeeper.deploy.metrics.model import MetricsSource

MIN_CHECK = 0.5  # the last check of a watch is skipped when it would cover less than this


@dataclass(frozen=True, slots=True)
class WatchCheck:
    """One check: when (seconds since the watch began), what it saw, what it decided."""

    at: float
    seen: str  # pass, fail, inconclusive, no-data, unhealthy, read-error
    detail: str
    breaches: int
    read_errors: int
    verdict: Verdict | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 3),
            "seen": self.seen,
            "detail": self.detail,
            "breaches": self.breaches,
            "read_errors": self.read_errors,
            "verdict": None if self.verdict is None else self.verdict.to_json(),
        }


@dataclass(frozen=True, slots=True)
class WatchReport:
    """How a watch ended. ``rollback``: the rule says roll back, for ``reason``."""

    slot: str
    rollback: bool
    reason: str | None
    seconds: float
    checks: tuple[WatchCheck, ...] = field(default=())
    first_breach_at: float | None = None  # the first check of the streak that decided

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "rollback": self.rollback,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "checks": len(self.checks),
            "first_breach_at": (
                None if self.first_breach_at is None else round(self.first_breach_at, 3)
            ),
            "last": self.checks[-1].to_json() if self.checks else None,
        }

    def numbers(self) -> dict[str, Any]:
        """What the ledger keeps of it."""
        out: dict[str, Any] = {
            "watch_seconds": round(self.seconds, 3),
            "watch_checks": len(self.checks),
        }
        if self.rollback and self.checks:
            last = self.checks[-1]
            out["watch_reason"] = self.reason
            if last.verdict is not None:
                out["watch_verdict"] = last.verdict.to_json()
        return out


@dataclass(frozen=True, slots=True)
class WatchPlan:
    """What to watch: ``live`` at ``address``, ``other`` (the old slot) at its address."""

    live: str
    address: str
    other: str
    other_address: str
    duration: float
    interval: float
    thresholds: Thresholds
    rule: WatchRule = field(default_factory=WatchRule)


def watch_slot(
    plan: WatchPlan,
    *,
    health: Callable[[], str | None],
    source: MetricsSource[Any] | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_check: Callable[[WatchCheck], None] | None = None,
) -> WatchReport:
    """Watch ``plan.live`` for ``plan.duration``; see the module docs.

    ``health()`` answers ``None`` when the live slot is healthy now, else why not.
    """
    start = clock()
    end = start + plan.duration
    mark = source.mark() if source is not None else None
    state = WatchState()
    checks: list[WatchCheck] = []
    streak_from: float | None = None
    ticks = max(1, math.ceil(plan.duration / plan.interval - 1e-9))
    for tick in range(1, ticks + 1):
        due = min(start + tick * plan.interval, end)
        if tick == ticks and tick > 1 and due - (start + (tick - 1) * plan.interval) < MIN_CHECK:
            break
        pause = due - clock()
        if pause > 0:
            sleep(pause)
        seen, detail = _look(plan, health, source, mark)
        if source is not None:
            mark = _next_mark(source, mark)
        decision = watch_step(state, seen, plan.rule)
        if decision.state.breaches == 0:
            streak_from = None
        elif state.breaches == 0:
            streak_from = clock() - start
        state = decision.state
        verdict = seen if isinstance(seen, Verdict) else None
        word = str(seen.outcome) if isinstance(seen, Verdict) else str(seen)
        check = WatchCheck(clock() - start, word, detail, state.breaches, state.read_errors,
                           verdict)  # fmt: skip
        checks.append(check)
        if on_check is not None:
            on_check(check)
        if decision.rollback:
            first = streak_from if state.breaches >= plan.rule.breaches else None
            return WatchReport(plan.live, True, decision.reason, clock() - start,
                               tuple(checks), first)  # fmt: skip
    return WatchReport(plan.live, False, None, clock() - start, tuple(checks))


def _next_mark(source: MetricsSource[Any], previous: Any) -> Any:
    try:
        return source.mark()
    except MetricsError:
        return previous  # the next window is longer: nothing is skipped


def _look(
    plan: WatchPlan,
    health: Callable[[], str | None],
    source: MetricsSource[Any] | None,
    mark: Any,
) -> tuple[Verdict | Observation, str]:
    """One look at the live slot: its health, then its metrics since ``mark``."""
    why = health()
    if why is not None:
        return Observation.UNHEALTHY, f"slot {plan.live} is unhealthy: {why}"
    if source is None:
        return Verdict(Outcome.PASS, True, ("healthy (no metrics source)",)), "healthy"
    try:
        reading = source.read(mark, {plan.live: plan.address, plan.other: plan.other_address})
    except MetricsError as exc:
        return Observation.READ_ERROR, f"the metrics could not be read: {exc.message}"
    new = reading.slots.get(plan.live)
    if new is None:
        return Observation.READ_ERROR, "the metrics source said nothing of the live slot"
    verdict = judge_step(new, reading.slots.get(plan.other), plan.thresholds)
    if verdict.outcome is Outcome.INCONCLUSIVE:
        return verdict, (
            f"too little traffic to judge: {verdict.requests} requests reached slot "
            f"{plan.live} (min-requests {plan.thresholds.min_requests})"
        )
    return verdict, "; ".join(verdict.reasons)
