"""The deployed gateway handler (functions/gateway) with budgets: the HTTP answers as API Gateway returns them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from decimal import Decimal

from budgets_it_support import QUIET_BREAKER, BudgetStack, Reply, policy_dict

DAY_S = 86_400


def until_utc_midnight(t: float) -> int:
    """Seconds from ``t`` to the next UTC midnight, rounded up, in the gateway's integer microseconds."""
    now_us, day_us = int(t * 1_000_000), DAY_S * 1_000_000
    return math.ceil((day_us - now_us % day_us) / 1_000_000)


def timed(call: Callable[[], Reply]) -> tuple[Reply, float, float]:
    before = time.time()
    reply = call()
    return reply, before, time.time()


def assert_until_midnight(value: str | None, before: float, after: float) -> None:
    """``value`` is the wait until the UTC day that was current during the call ends (the handler runs on the
    real clock: anything between the wait measured before the call and after it)."""
    assert value is not None
    if int(before // DAY_S) != int(after // DAY_S):  # the call straddled midnight: either day may have counted
        assert 1 <= int(value) <= DAY_S
        return
    assert until_utc_midnight(after) <= int(value) <= until_utc_midnight(before)


def test_missing_or_unknown_key_is_401(bstack: BudgetStack) -> None:
    for key in (None, "sk-fin-unknownunknownunknownunknownunknown12345"):
        reply = bstack.invoke_gateway(key)
        assert reply.status == 401
        assert reply.code == "invalid_api_key"
        assert reply.request_id
    assert bstack.sim.count == 0


def test_answers_carry_budget_and_cap_headers(bstack: BudgetStack) -> None:
    bstack.use_policy(policy_dict(tier_pro={"request_caps": {"gpt-4o": 3}}))
    key = bstack.create_key("pro")
    reply, before, after = timed(lambda: bstack.invoke_gateway(key, bstack.body("hello", model="gpt-4o",
                                                                                 max_tokens=50)))
    assert reply.status == 200, reply.body
    assert reply.header("x-ratelimit-limit-usd") == "5"
    cost = Decimal(reply.header("x-finops-cost-usd") or "")
    left = Decimal(reply.header("x-ratelimit-remaining-usd") or "")
    assert abs(left - (Decimal(5) - cost)) <= Decimal("0.000002")
    assert reply.header("x-ratelimit-limit-requests") == "3"
    assert reply.header("x-ratelimit-remaining-requests") == "2"
    reset = reply.header("x-ratelimit-reset-requests") or ""
    assert reset.endswith("s")
    assert_until_midnight(reset.removesuffix("s"), before, after)  # the count resets at the next UTC midnight


def test_the_call_after_the_request_cap_is_429_request_cap_exceeded(bstack: BudgetStack) -> None:
    bstack.use_policy(policy_dict(tier_pro={"request_caps": {"gpt-4o": 3}}))
    key = bstack.create_key("pro")
    for i in range(3):
        assert bstack.invoke_gateway(key, bstack.body(f"q{i}", model="gpt-4o")).status == 200
    reply, before, after = timed(lambda: bstack.invoke_gateway(key, bstack.body("q3", model="gpt-4o")))
    assert reply.status == 429
    assert reply.code == "request_cap_exceeded"
    assert reply.error["type"] == "rate_limit_error"
    assert_until_midnight(reply.header("retry-after"), before, after)
    assert reply.header("x-ratelimit-limit-requests") == "3"
    assert reply.header("x-ratelimit-remaining-requests") == "0"
    reset = reply.header("x-ratelimit-reset-requests") or ""
    assert reset.endswith("s")
    assert_until_midnight(reset.removesuffix("s"), before, after)  # read a moment after Retry-After's instant
    assert reply.request_id
    assert bstack.sim.count == 3


def test_exhausted_budget_is_429_with_usd_headers(bstack: BudgetStack) -> None:
    bstack.use_policy(policy_dict(tier_free={"budget": {"daily_usd": 0.0005}, "breaker": QUIET_BREAKER}))
    key = bstack.create_key("free")
    prompt = "budget " * 2000
    assert bstack.invoke_gateway(key, bstack.body("a " + prompt, max_tokens=1)).status == 200
    reply = bstack.invoke_gateway(key, bstack.body("b " + prompt, max_tokens=1))
    assert reply.status == 429 and reply.code == "budget_exceeded"
    assert reply.error["scope"].startswith("key:vk_")
    assert int(reply.header("retry-after") or 0) > 0
    assert reply.header("x-ratelimit-limit-usd") == "0.0005"
    assert Decimal(reply.header("x-ratelimit-remaining-usd") or "") < Decimal("0.0003")
    assert (reply.header("x-ratelimit-reset-usd") or "").endswith("s")
    assert bstack.sim.count == 1


def test_breaker_trip_is_429_circuit_open_with_the_cooldown(bstack: BudgetStack) -> None:
    bstack.use_policy(policy_dict(tier_free={"breaker": {"window_seconds": 300, "max_repeats": 2,
                                                          "cooldown_seconds": 240}}))
    key = bstack.create_key("free")
    for _ in range(2):
        assert bstack.invoke_gateway(key, bstack.body("again", max_tokens=5)).status == 200
    reply = bstack.invoke_gateway(key, bstack.body("again", max_tokens=5))
    assert reply.status == 429 and reply.code == "circuit_open"
    assert reply.header("retry-after") == "240"
    other = bstack.invoke_gateway(key, bstack.body("something else", max_tokens=5))
    assert other.status == 429 and other.code == "circuit_open"
    assert 238 <= int(other.header("retry-after") or 0) <= 240
    assert bstack.sim.count == 2


def test_budget_store_down_fails_closed_with_503(bstack: BudgetStack) -> None:
    key = bstack.create_key("free")
    bstack.set_env(FINOPS_BUDGETS_TABLE=bstack.tables.budgets + "-missing")
    reply = bstack.invoke_gateway(key)
    assert reply.status == 503
    assert reply.code == "budget_store_unavailable"
    assert bstack.sim.count == 0
    assert bstack.entries() == []


def test_budget_store_down_fails_open_when_configured(bstack: BudgetStack) -> None:
    key = bstack.create_key("free")
    bstack.use_policy(policy_dict(fail_mode="open"))
    bstack.set_env(FINOPS_BUDGETS_TABLE=bstack.tables.budgets + "-missing")
    reply = bstack.invoke_gateway(key)
    assert reply.status == 200
    assert bstack.sim.count == 1
    [row] = bstack.entries()
    assert row.budget_bypassed is True and row.request_id == reply.request_id
