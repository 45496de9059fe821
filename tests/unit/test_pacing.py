"""The delete pacer under simulated, hidden rate limits (fake clock: runs instantly)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest

from tagkeeper.registries.pacing import DeletePacer, PacerSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SlidingLimit:
    """A hidden server budget: at most ``limit`` accepted deletes in any 60 s window."""

    limit: int
    window: float = 60.0
    accepted: deque[float] = field(default_factory=deque)

    def attempt(self, now: float) -> float | None:
        """``None`` when accepted, else the retry-after a server would send."""
        while self.accepted and self.accepted[0] <= now - self.window:
            self.accepted.popleft()
        if len(self.accepted) >= self.limit:
            return max(1.0, self.accepted[0] + self.window - now)
        self.accepted.append(now)
        return None


@dataclass
class Bucket:
    """A hidden token bucket: ``limit`` per minute, full at the start."""

    limit: int
    tokens: float = -1.0
    last: float | None = None

    def attempt(self, now: float) -> float | None:
        if self.last is None:
            self.tokens, self.last = float(self.limit), now
        self.tokens = min(float(self.limit), self.tokens + (now - self.last) * self.limit / 60)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return max(1.0, (1 - self.tokens) * 60 / self.limit)


@dataclass
class Run:
    sends: list[float]
    deleted: list[float]
    limit_answers: int
    elapsed: float


def simulate(limiter: SlidingLimit | Bucket | None, deletes: int, latency: float = 0.05) -> Run:
    clock = FakeClock()
    pacer = DeletePacer(clock)
    start = clock.now
    sends: list[float] = []
    deleted: list[float] = []
    answers = 0
    while len(deleted) < deletes:
        wait = pacer.reserve()
        assert wait >= 0  # one delete in flight at a time here
        clock.now += wait
        sent = clock.now
        sends.append(sent)
        retry_after = limiter.attempt(sent) if limiter is not None else None
        clock.now += latency
        if retry_after is None:
            deleted.append(sent)
            pacer.accepted(sent)
        else:
            answers += 1
            pacer.limited(retry_after)
    return Run(sends, deleted, answers, clock.now - start)


def max_in_window(times: list[float], window: float = 60.0) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_never_above_180_a_minute_without_any_limit_answer() -> None:
    run = simulate(None, 1000, latency=0.0)
    assert max_in_window(run.sends) <= 180
    # and it does get close to the documented ceiling once warmed up
    late = [t for t in run.sends if t >= run.sends[0] + 60]
    assert max_in_window(late) >= 170


@pytest.mark.parametrize("limit", [60, 180])
def test_reaches_90_percent_of_a_hidden_sliding_limit_with_few_limit_answers(
    limit: int,
) -> None:
    run = simulate(SlidingLimit(limit), 1000)
    rate = len(run.deleted) / (run.elapsed / 60)
    assert rate >= 0.9 * limit, f"{rate:.1f}/min against a limit of {limit}/min"
    assert run.limit_answers < 0.02 * len(run.deleted)
    assert max_in_window(run.sends) <= 180


def test_a_token_bucket_limit_is_learned_too() -> None:
    run = simulate(Bucket(60), 1000)
    rate = len(run.deleted) / (run.elapsed / 60)
    assert rate >= 0.9 * 60
    assert run.limit_answers < 0.02 * len(run.deleted)


def test_a_limit_answer_cuts_the_rate_at_least_in_half_and_waits_as_told() -> None:
    clock = FakeClock()
    pacer = DeletePacer(clock)
    for _ in range(30):
        clock.now += pacer.reserve()
        pacer.accepted(clock.now)
    before = pacer.rate
    assert before > 60  # it climbed while nothing complained
    wait = pacer.limited(42.0)
    assert wait == pytest.approx(42.0)
    assert pacer.rate <= before / 2
    assert pacer.reserve() == pytest.approx(42.0)  # the next slot is after retry-after


def test_a_limit_answer_without_retry_after_waits_a_minute() -> None:
    clock = FakeClock()
    pacer = DeletePacer(clock)
    assert pacer.limited(None) == pytest.approx(60.0)


def test_deletes_in_flight_are_bounded() -> None:
    clock = FakeClock()
    pacer = DeletePacer(clock, PacerSettings(max_in_flight=2))
    assert pacer.reserve() >= 0
    assert pacer.reserve() >= 0
    assert pacer.reserve() == -1.0  # a third must wait for an answer
    pacer.accepted(clock.now)
    assert pacer.reserve() >= 0


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="rates"):
        PacerSettings(start_rate=200.0)
    with pytest.raises(ValueError, match="cut"):
        PacerSettings(cut=1.5)


def test_limited_again_while_settled_lowers_the_estimate() -> None:
    clock = FakeClock()
    pacer = DeletePacer(clock)
    for _ in range(40):
        clock.now += pacer.reserve()
        pacer.accepted(clock.now)
        clock.now += 0.05
    pacer.limited(1.0)
    first = pacer.estimate
    assert first == 40.0  # what passed in the last minute
    for _ in range(20):  # settled below the estimate, still limited: it was too high
        clock.now += pacer.reserve()
        pacer.accepted(clock.now)
    pacer.limited(1.0)
    assert pacer.estimate is not None
    assert pacer.estimate < first
