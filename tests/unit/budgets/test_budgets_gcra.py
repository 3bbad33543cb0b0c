"""Property tests of the GCRA arithmetic (finops.budgets.gcra): pure integers and Decimals, no AWS."""

from __future__ import annotations

from decimal import Decimal

import pytest
from budgets_support import units_of
from finops.budgets import gcra
from finops.budgets.gcra import Case
from finops.budgets.governor import BudgetGovernor
from hypothesis import example, given, settings
from hypothesis import strategies as st

# No deadline: these assert values, never timing (a loaded CI box must not fail them).
untimed = settings(deadline=None)
NOW = 1_795_962_600 * gcra.MICROS

periods = st.integers(min_value=1_000, max_value=2 * gcra.DAY_US)
capacities = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10_000), places=6)
money = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=9)
# Any stored TAT, from "never used" to far beyond a full backlog.
tats = st.one_of(st.none(), st.integers(min_value=NOW - 3 * gcra.DAY_US, max_value=NOW + 3 * gcra.DAY_US))
# A TAT the engine can actually leave behind: backlog between 0 and the period (or none at all).
backlogs = st.floats(min_value=0, max_value=1, allow_nan=False)

TINY = Decimal("1e-15")


def reachable(period: int, fraction: float) -> int:
    return NOW + int(period * fraction)


# --- level / remaining -------------------------------------------------------------------------------------


@untimed
@given(tat=tats, capacity=capacities, period=periods)
def test_remaining_is_never_negative_nor_above_capacity(tat: int | None, capacity: Decimal, period: int) -> None:
    left = gcra.remaining(tat, NOW, capacity, period)
    assert Decimal(0) <= left <= capacity
    assert gcra.level(tat, NOW, capacity, period) >= 0


@untimed
@given(capacity=capacities, period=periods)
def test_unused_bucket_is_full(capacity: Decimal, period: int) -> None:
    assert gcra.remaining(None, NOW, capacity, period) == capacity
    assert gcra.remaining(NOW - 1, NOW, capacity, period) == capacity
    assert gcra.remaining(NOW + period, NOW, capacity, period) == 0


@untimed
@given(capacity=capacities, period=periods, fraction=backlogs,
       idle=st.integers(min_value=0, max_value=3 * gcra.DAY_US))
def test_refill_is_capacity_times_idle_over_period_capped(capacity: Decimal, period: int, fraction: float,
                                                         idle: int) -> None:
    tat = reachable(period, fraction)
    before = gcra.remaining(tat, NOW, capacity, period)
    after = gcra.remaining(tat, NOW + idle, capacity, period)
    expected = min(capacity, before + capacity * idle / period)
    assert abs(after - expected) <= capacity * TINY
    assert after >= before  # idling never costs


@untimed
@given(capacity=capacities, period=periods)
def test_a_drained_bucket_refills_completely_in_one_period(capacity: Decimal, period: int) -> None:
    tat = NOW + period  # empty
    assert gcra.remaining(tat, NOW, capacity, period) == 0
    assert gcra.remaining(tat, NOW + period // 2, capacity, period) == pytest.approx(
        capacity * (period // 2) / period)
    assert gcra.remaining(tat, NOW + period, capacity, period) == capacity
    assert gcra.seconds_until_full(tat, NOW) == -(-period // gcra.MICROS)


# --- increment -----------------------------------------------------------------------------------------------


@untimed
@given(amount=money, capacity=capacities, period=periods)
def test_increment_rounds_up_by_less_than_one_time_unit(amount: Decimal, capacity: Decimal, period: int) -> None:
    inc = gcra.increment(amount, capacity, period)
    exact = amount * period / capacity
    assert exact <= inc < exact + 1


def test_increment_rejects_negative_amounts_and_empty_buckets() -> None:
    with pytest.raises(ValueError, match="amount"):
        gcra.increment(Decimal("-0.01"), Decimal(1), gcra.DAY_US)
    with pytest.raises(ValueError, match="capacity"):
        gcra.increment(Decimal("0.01"), Decimal(0), gcra.DAY_US)


# --- decide --------------------------------------------------------------------------------------------------


@untimed
@given(tat=tats, inc=st.integers(min_value=0, max_value=3 * gcra.DAY_US), period=periods)
def test_decide_never_admits_beyond_capacity(tat: int | None, inc: int, period: int) -> None:
    decision = gcra.decide(tat, NOW, inc, period)
    base = max(tat or NOW, NOW)
    assert decision.case is (Case.DEBT if tat is not None and tat > NOW else Case.FRESH)
    if decision.allowed:
        assert decision.new_tat == base + inc
        assert decision.new_tat - NOW <= period  # the level after admission is within capacity
        assert decision.retry_after_us is None
    else:
        assert decision.new_tat is None
        assert base + inc - NOW > period


@untimed
@given(tat=tats, inc=st.integers(min_value=1, max_value=2 * gcra.DAY_US), period=periods)
@example(tat=NOW + gcra.DAY_US, inc=1, period=gcra.DAY_US)
def test_retry_after_is_exactly_when_the_request_fits(tat: int | None, inc: int, period: int) -> None:
    decision = gcra.decide(tat, NOW, inc, period)
    if decision.allowed:
        return
    if inc > period:
        assert decision.retry_after_us is None  # can never fit, however long one waits
        assert not gcra.decide(None, NOW + 10 * period, inc, period).allowed
        return
    wait = decision.retry_after_us
    assert wait is not None and wait > 0
    assert gcra.decide(tat, NOW + wait, inc, period).allowed
    assert not gcra.decide(tat, NOW + wait - 1, inc, period).allowed


@settings(untimed, max_examples=60)
@given(capacity=capacities, period=periods,
       steps=st.lists(st.tuples(st.integers(min_value=0, max_value=gcra.DAY_US // 4), money), min_size=1,
                      max_size=40))
def test_a_sequence_of_admissions_never_overdraws(capacity: Decimal, period: int,
                                                  steps: list[tuple[int, Decimal]]) -> None:
    tat: int | None = None
    now = NOW
    for dt, amount in steps:
        now += dt
        inc = gcra.increment(amount, capacity, period)
        decision = gcra.decide(tat, now, inc, period)
        if decision.allowed:
            tat = decision.new_tat
        level = gcra.level(tat, now, capacity, period)
        assert level <= capacity
        assert gcra.remaining(tat, now, capacity, period) >= 0


@untimed
@given(window=st.one_of(st.sampled_from([gcra.DAY_US, 300 * gcra.MICROS, 60 * gcra.MICROS]),
                        st.integers(min_value=1_000, max_value=2 * gcra.DAY_US)),
       n=st.integers(min_value=1, max_value=400))
@example(window=gcra.DAY_US, n=7)
@example(window=300 * gcra.MICROS, n=7)
def test_a_count_cell_of_n_admits_exactly_n_calls_at_once(window: int, n: int) -> None:
    """A breaker of N requests (or N repeats) per window must admit N calls at once, then refuse the next.

    ``BudgetGovernor._count_cell`` rounds each call up to ``inc = ceil(window / N)`` and stretches the
    period to ``inc * N`` (by under one microsecond per call), so exactly N calls fit even when N does not
    divide the window in microseconds (7, 11, 13, ... per day).
    """
    cell = BudgetGovernor._count_cell("breaker#key#vk_a", "req", n, window, "breaker_requests", "key:vk_a")
    assert cell.inc == -(-window // n)
    assert cell.period_us == cell.inc * n
    assert 0 <= cell.period_us - window < n
    assert cell.capacity == n and cell.fits_ever() and not cell.is_counter
    tat: int | None = None
    for i in range(n):
        decision = cell.decide(tat, NOW)
        assert decision.allowed, f"call {i + 1} of {n} refused"
        tat = decision.new_tat
    assert tat == NOW + cell.period_us  # exactly full
    last = cell.decide(tat, NOW)
    assert not last.allowed
    assert last.retry_after_us == cell.inc  # one call's share of the window later, one more fits
    assert cell.decide(tat, NOW + cell.inc).allowed


def test_a_count_bucket_with_period_equal_to_the_window_loses_a_call_when_n_does_not_divide_it() -> None:
    """Why ``_count_cell`` stretches the period: with ``period = window`` and ``inc = increment(1, n, window)``
    the rounding makes N units exceed the window, and GCRA (rightly) never admits beyond its period."""
    inc = gcra.increment(1, 7, gcra.DAY_US)
    tat: int | None = None
    admitted = 0
    for _ in range(8):
        decision = gcra.decide(tat, NOW, inc, gcra.DAY_US)
        if decision.allowed:
            admitted += 1
            tat = decision.new_tat
    assert admitted == 6


# --- reserve + settle conserves money -------------------------------------------------------------------------


@untimed
@given(capacity=capacities, period=periods, fraction=backlogs, worst=money,
       actual_share=st.decimals(min_value=0, max_value=1, places=6))
def test_reserve_worst_then_refund_unused_nets_the_actual_cost(capacity: Decimal, period: int, fraction: float,
                                                              worst: Decimal, actual_share: Decimal) -> None:
    actual = (worst * actual_share).quantize(Decimal("0.000000001"))
    tat = reachable(period, fraction)
    inc_worst = gcra.increment(worst, capacity, period)
    decision = gcra.decide(tat, NOW, inc_worst, period)
    if not decision.allowed:
        return
    assert decision.new_tat is not None
    refund = inc_worst - gcra.increment(actual, capacity, period)
    settled = decision.new_tat - refund
    consumed = gcra.level(settled, NOW, capacity, period) - gcra.level(tat, NOW, capacity, period)
    one_unit = Decimal(capacity) / period
    assert actual - TINY <= consumed <= actual + one_unit + TINY
    # a full refund (failed call) puts the bucket exactly back
    assert decision.new_tat - inc_worst == max(tat, NOW)


@untimed
@given(inc=st.integers(min_value=0, max_value=gcra.DAY_US), capacity=capacities)
def test_units_of_inverts_increment_from_below(inc: int, capacity: Decimal) -> None:
    units = units_of(inc, capacity, gcra.DAY_US)
    assert units <= Decimal(inc) * capacity / gcra.DAY_US
    assert gcra.increment(units, capacity, gcra.DAY_US) <= inc


def test_debt_limit_is_the_highest_tat_that_still_admits() -> None:
    inc, period = 5_000, 60_000
    limit = gcra.debt_limit(NOW, inc, period)
    assert gcra.decide(limit, NOW, inc, period).allowed
    assert not gcra.decide(limit + 1, NOW, inc, period).allowed
