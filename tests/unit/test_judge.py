"""The canary step verdict and the watch rule: examples and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from tagkeeper.deploy.metrics.model import NoData, SlotStats
from tagkeeper.deploy.spec import DeploySpec

LIMITS = Thresholds()  # 1%, 800 ms, 50 requests, inconclusive fails


def test_no_data_never_passes_even_when_inconclusive_is_allowed() -> None:
    verdict = judge_step(
        NoData("no series"), SlotStats(500, 0, 0.1), Thresholds(inconclusive_fails=False)
    )
    assert verdict.outcome is Outcome.NO_DATA
    assert not verdict.passed
    assert "no series" in verdict.reasons[0]


def test_a_healthy_step_passes_with_its_numbers() -> None:
    verdict = judge_step(SlotStats(200, 1, 0.12), SlotStats(3800, 10, 0.1), LIMITS)
    assert verdict.outcome is Outcome.PASS
    assert verdict.passed
    assert verdict.requests == 200
    assert verdict.errors_5xx == 1
    assert verdict.error_rate == pytest.approx(0.005)
    assert verdict.p95_limit == pytest.approx(0.8)


def test_error_rate_above_the_limit_fails_and_says_the_numbers() -> None:
    verdict = judge_step(SlotStats(200, 3, 0.1), None, LIMITS)
    assert verdict.outcome is Outcome.FAIL
    assert "1.50%" in verdict.reasons[0]
    assert "3 of 200" in verdict.reasons[0]


def test_error_rate_exactly_at_the_limit_passes() -> None:
    assert judge_step(SlotStats(100, 1, 0.1), None, LIMITS).passed


def test_too_few_requests_is_inconclusive_and_fails_for_prod_only() -> None:
    prod = judge_step(SlotStats(49, 0, 0.1), None, LIMITS)
    assert prod.outcome is Outcome.INCONCLUSIVE
    assert not prod.passed
    assert "49" in prod.reasons[0]
    assert "50" in prod.reasons[0]
    dev = judge_step(SlotStats(49, 0, 0.1), None, Thresholds(inconclusive_fails=False))
    assert dev.outcome is Outcome.INCONCLUSIVE
    assert dev.passed


def test_errors_already_decisive_fail_even_below_min_requests() -> None:
    # every request of a canary answering 500: no need to wait for 50 of them
    verdict = judge_step(SlotStats(5, 5, 0.01), None, Thresholds(inconclusive_fails=False))
    assert verdict.outcome is Outcome.FAIL
    assert not verdict.passed
    # one error in 10 is not decisive at 1% of 50 (0.5 allowed)... it is: 1 > 0.5
    assert judge_step(SlotStats(10, 1, 0.01), None, LIMITS).outcome is Outcome.FAIL
    # with 10% allowed, 4 errors of 10 are under 5 of 50: still inconclusive
    loose = Thresholds(max_error_rate=0.1)
    assert judge_step(SlotStats(10, 4, 0.01), None, loose).outcome is Outcome.INCONCLUSIVE


def test_p95_above_max_fails() -> None:
    verdict = judge_step(SlotStats(100, 0, 0.95), None, LIMITS)
    assert verdict.outcome is Outcome.FAIL
    assert "950 ms" in verdict.reasons[0]
    assert "800 ms" in verdict.reasons[0]


def test_p95_infinite_fails() -> None:
    verdict = judge_step(SlotStats(100, 0, math.inf), None, LIMITS)
    assert verdict.outcome is Outcome.FAIL


def test_p95_ratio_against_the_old_slot() -> None:
    limits = Thresholds(max_p95=None, max_p95_ratio=1.5)
    slow = judge_step(SlotStats(100, 0, 0.4), SlotStats(1900, 0, 0.2), limits)
    assert slow.outcome is Outcome.FAIL
    assert slow.p95_limit == pytest.approx(0.3)
    assert slow.old_p95_seconds == pytest.approx(0.2)
    assert "1.5" in slow.reasons[0]
    fine = judge_step(SlotStats(100, 0, 0.29), SlotStats(1900, 0, 0.2), limits)
    assert fine.passed


def test_p95_ratio_ignores_milliseconds_of_noise() -> None:
    limits = Thresholds(max_p95=None, max_p95_ratio=1.5)
    assert judge_step(SlotStats(100, 0, 0.012), SlotStats(1900, 0, 0.002), limits).passed


def test_ratio_without_old_data_is_no_data_unless_max_p95_is_set() -> None:
    only_ratio = Thresholds(max_p95=None, max_p95_ratio=2)
    verdict = judge_step(SlotStats(100, 0, 0.1), NoData("gone"), only_ratio)
    assert verdict.outcome is Outcome.NO_DATA
    assert not verdict.passed
    both = Thresholds(max_p95=0.8, max_p95_ratio=2)
    assert judge_step(SlotStats(100, 0, 0.1), None, both).passed


def test_missing_p95_is_no_data_when_latency_is_judged() -> None:
    verdict = judge_step(SlotStats(100, 0, None), None, LIMITS)
    assert verdict.outcome is Outcome.NO_DATA
    unchecked = Thresholds(max_p95=None)
    assert judge_step(SlotStats(100, 0, None), None, unchecked).passed


def test_errors_fail_even_when_p95_is_missing() -> None:
    assert judge_step(SlotStats(100, 50, None), None, LIMITS).outcome is Outcome.FAIL


@st.composite
def stats(draw: st.DrawFn) -> SlotStats:
    requests = draw(st.integers(0, 5000))
    errors = draw(st.integers(0, requests))
    p95 = draw(st.none() | st.floats(0, 10, allow_nan=False))
    return SlotStats(requests, errors, p95)


limits_st = st.builds(
    Thresholds,
    max_error_rate=st.floats(0, 0.5),
    max_p95=st.none() | st.floats(0.01, 5),
    max_p95_ratio=st.none() | st.floats(1, 4),
    min_requests=st.integers(1, 500),
    inconclusive_fails=st.booleans(),
)


@given(stats(), st.none() | stats(), limits_st)
def test_a_pass_means_every_threshold_was_met(
    new: SlotStats, old: SlotStats | None, limits: Thresholds
) -> None:
    verdict = judge_step(new, old, limits)
    if not verdict.passed:
        return
    assert verdict.outcome in (Outcome.PASS, Outcome.INCONCLUSIVE)
    if verdict.outcome is Outcome.INCONCLUSIVE:
        assert not limits.inconclusive_fails
        assert new.requests < limits.min_requests
        return
    assert new.requests >= limits.min_requests
    assert new.errors_5xx <= limits.max_error_rate * new.requests + 1e-9
    if limits.max_p95 is not None:
        assert new.p95_seconds is not None
        assert new.p95_seconds <= limits.max_p95


@given(stats(), st.none() | stats(), limits_st, st.integers(1, 100))
def test_more_errors_never_turn_a_failure_into_a_pass(
    new: SlotStats, old: SlotStats | None, limits: Thresholds, extra: int
) -> None:
    worse = SlotStats(new.requests + extra, new.errors_5xx + extra, new.p95_seconds)
    if not judge_step(new, old, limits).passed and new.requests >= limits.min_requests:
        assert not judge_step(worse, old, limits).passed


@given(stats(), st.none() | stats(), limits_st, st.floats(0.001, 10))
def test_slower_never_turns_a_failure_into_a_pass(
    new: SlotStats, old: SlotStats | None, limits: Thresholds, slower: float
) -> None:
    if new.p95_seconds is None:
        return
    worse = SlotStats(new.requests, new.errors_5xx, new.p95_seconds + slower)
    if not judge_step(new, old, limits).passed:
        assert not judge_step(worse, old, limits).passed


@given(st.text(max_size=30), limits_st)
def test_no_data_is_never_a_pass(reason: str, limits: Thresholds) -> None:
    assert not judge_step(NoData(reason), None, limits).passed


# -- the watch ------------------------------------------------------------------------

GOOD = judge_step(SlotStats(200, 0, 0.1), None, LIMITS)
BAD = judge_step(SlotStats(200, 20, 0.1), None, LIMITS)
QUIET = judge_step(SlotStats(3, 0, 0.1), None, LIMITS)
BLIND = judge_step(NoData("no series"), None, LIMITS)


def run(seen: list[Verdict | Observation]) -> list[bool]:
    state = WatchState()
    out = []
    for item in seen:
        decision = watch_step(state, item)
        state = decision.state
        out.append(decision.rollback)
    return out


def test_one_breach_is_a_blip_two_in_a_row_roll_back() -> None:
    assert run([BAD]) == [False]
    assert run([BAD, BAD]) == [False, True]
    assert run([BAD, GOOD, BAD]) == [False, False, False]


def test_an_unhealthy_live_slot_counts_as_a_breach() -> None:
    assert run([Observation.UNHEALTHY, BAD]) == [False, True]


def test_four_read_errors_in_a_row_roll_back() -> None:
    errors: list[Verdict | Observation] = [Observation.READ_ERROR, BLIND] * 2
    assert run(errors) == [False, False, False, True]
    assert run([*errors[:3], GOOD, errors[0]]) == [False] * 5


def test_quiet_traffic_neither_clears_nor_counts_a_breach() -> None:
    assert run([BAD, QUIET, BAD]) == [False, False, True]
    assert run([QUIET] * 10) == [False] * 10


def test_the_reason_names_what_crossed() -> None:
    state = watch_step(WatchState(), BAD).state
    decision = watch_step(state, BAD)
    assert decision.rollback
    assert decision.reason is not None
    assert "2 times in a row" in decision.reason
    assert "error rate" in decision.reason


observations = st.sampled_from(
    [GOOD, BAD, QUIET, BLIND, Observation.READ_ERROR, Observation.UNHEALTHY]
)


@given(st.lists(observations, max_size=40))
def test_watch_rolls_back_exactly_when_the_rule_says(seen: list[Verdict | Observation]) -> None:
    rule = WatchRule()
    state = WatchState()
    breaches = errors = 0
    for item in seen:
        decision = watch_step(state, item, rule)
        state = decision.state
        # a reference model of the documented rule
        if item is GOOD:
            breaches = errors = 0
        elif item is QUIET:
            errors = 0
        elif item is BAD or item is Observation.UNHEALTHY:
            breaches, errors = breaches + 1, 0
        else:
            errors += 1
        expected = breaches >= rule.breaches or errors >= rule.read_errors
        assert decision.rollback == expected
        if decision.rollback:
            break


def _keys(environment: str) -> DeploySpec:
    return DeploySpec(
        environment,
        image="ghcr.io/acme/app",
        container="app",
        port=8520,
        max_error_rate=0.05,
        max_p95=None,
        max_p95_ratio=1.5,
        min_requests=10,
    )


def test_thresholds_come_from_the_spec_keys() -> None:
    limits = Thresholds.from_spec(_keys("dev"))  # dev rules: too little traffic passes
    assert limits == Thresholds(0.05, None, 1.5, 10, inconclusive_fails=False)
    assert Thresholds.from_spec(_keys("prod")).inconclusive_fails
