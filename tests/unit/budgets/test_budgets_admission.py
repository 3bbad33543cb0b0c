"""BudgetGovernor over a real BucketStore (moto): the 429s it maps, tax, caps, breaker and item hygiene."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from budgets_support import TABLES, FakeClock, item_of, tat_of

from finops.budgets import gcra
from finops.budgets.governor import BudgetGovernor
from finops.budgets.policy import BudgetPolicy, load_policy
from finops.budgets.store import BucketStore
from finops.errors import BudgetExceeded, CircuitOpen, FinOpsError, RequestCapExceeded, ServiceUnavailable
from finops.keys.service import KeyRecord
from finops.tags import CostTags

TAGS = CostTags(project_id="checkout-web", user_id="alice", environment="production", department_id="unallocated")


def key(tier: str, key_id: str = "vk_adm") -> KeyRecord:
    return KeyRecord(key_id=key_id, name="t", tier=tier, projects=("*",), environments=("*",),
                     created_at="2026-11-29T14:30:00.000000Z")


def policy(**overrides: Any) -> BudgetPolicy:
    base = json.loads(json.dumps(load_policy().model_dump(mode="json")))
    for name, value in overrides.items():
        if name.startswith("tier_"):
            base["tiers"][name.removeprefix("tier_")].update(value)
        else:
            base[name] = value
    return BudgetPolicy.model_validate(json.loads(json.dumps(base), parse_float=Decimal))


def admit(g: BudgetGovernor, request_id: str, k: KeyRecord, worst: str, model: str = "gpt-4o-mini",
          loop_hash: str | None = None) -> Any:
    return g.admit(request_id, k, TAGS, model, Decimal(worst), loop_hash, reservation={"model": model})


def refused(g: BudgetGovernor, *args: Any, **kw: Any) -> FinOpsError:
    with pytest.raises(FinOpsError) as caught:
        admit(g, *args, **kw)
    return caught.value


# --- request caps ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [3, 7])
def test_a_request_cap_of_n_admits_exactly_n_calls(store: BucketStore, cap: int) -> None:
    """Fails today for cap=7: ``increment(1, 7, DAY_US)`` rounds up, 7 increments exceed the day by 1 us."""
    g = BudgetGovernor(policy(tier_pro={"request_caps": {"gpt-4o": cap}}), store)
    k = key("pro")
    for i in range(cap):
        admit(g, f"req-{i}", k, "0.001", model="gpt-4o")
    error = refused(g, "req-last", k, "0.001", model="gpt-4o")
    assert isinstance(error, RequestCapExceeded)
    assert error.headers["x-ratelimit-limit-requests"] == str(cap)
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.details == {"scope": f"key:{k.key_id}:gpt-4o"}


def test_cap_refusal_headers_and_retry_after(store: BucketStore, clock: FakeClock) -> None:
    g = BudgetGovernor(policy(tier_pro={"request_caps": {"gpt-4o": 3}}), store)
    k = key("pro")
    for i in range(3):
        admit(g, f"req-{i}", k, "0.001", model="gpt-4o")
    error = refused(g, "req-3", k, "0.001", model="gpt-4o")
    assert error.status == 429 and error.code == "request_cap_exceeded"
    assert error.headers["Retry-After"] == "28800"  # one third of a day until one request fits
    assert error.headers["x-ratelimit-reset-requests"] == "86400s"
    clock.advance(28_799)
    assert isinstance(refused(g, "req-3", k, "0.001", model="gpt-4o"), RequestCapExceeded)
    clock.advance(1)
    admit(g, "req-3", k, "0.001", model="gpt-4o")
    # the cap is per model: other models are not capped
    admit(g, "req-4", k, "0.001", model="gpt-4o-mini")


# --- budgets -----------------------------------------------------------------------------------------------------


def test_budget_refusal_names_the_scope_and_carries_rate_headers(store: BucketStore, clock: FakeClock) -> None:
    g = BudgetGovernor(policy(tier_free={"breaker": {"window_seconds": 300}}), store)
    k = key("free")
    for i in range(5):
        admit(g, f"req-{i}", k, "0.10")  # $0.50 of $0.50
    error = refused(g, "req-5", k, "0.10")
    assert isinstance(error, BudgetExceeded)
    assert error.status == 429 and error.code == "budget_exceeded"
    assert error.envelope()["error"]["scope"] == f"key:{k.key_id}"
    assert f"key:{k.key_id}" in error.message
    assert error.headers["Retry-After"] == "17280"  # $0.10 refills in a fifth of a day
    assert error.headers["x-ratelimit-limit-usd"] == "0.5"
    assert error.headers["x-ratelimit-remaining-usd"] == "0"
    assert error.headers["x-ratelimit-reset-usd"] == "86400s"


def test_a_call_larger_than_the_whole_budget_says_lower_max_tokens(store: BucketStore) -> None:
    g = BudgetGovernor(load_policy(), store)
    error = refused(g, "req-1", key("free"), "0.51")
    assert isinstance(error, BudgetExceeded)
    assert "Retry-After" not in error.headers
    assert "max_tokens" in error.message


def test_tax_mode_admits_past_the_budget_up_to_the_ceiling(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    p = policy(projects={"checkout-web": {"daily_usd": 1, "tax": {"multiplier": 1.5, "ceiling_usd": 2}}})
    g = BudgetGovernor(p, store)
    k = key("enterprise")
    fractions = []
    for i in range(5):  # 0.4 + 0.4 = 0.8 | 1.2 (straddles: 0.2 of 0.4 over) | 1.6 | 2.0 (all over)
        ticket = admit(g, f"req-{i}", k, "0.4")
        fractions.append(ticket.taxed_fraction)
        assert ticket.tax_multiplier == (Decimal("1.5") if i >= 2 else None)
    assert fractions == [0, 0, Decimal("0.5"), 1, 1]
    assert tat_of(ddb, "bucket#project#checkout-web") == clock.us + 2 * gcra.DAY_US
    error = refused(g, "req-5", k, "0.01")
    assert isinstance(error, BudgetExceeded)
    assert error.headers["x-ratelimit-limit-usd"] == "2"


# --- breaker ----------------------------------------------------------------------------------------------------


def test_loop_refusal_trips_the_breaker_for_the_cooldown(store: BucketStore, clock: FakeClock) -> None:
    p = policy(tier_free={"breaker": {"window_seconds": 300, "max_repeats": 3, "cooldown_seconds": 60}})
    g = BudgetGovernor(p, store)
    k = key("free")
    for i in range(3):
        admit(g, f"req-{i}", k, "0.0001", loop_hash="same")
    error = refused(g, "req-3", k, "0.0001", loop_hash="same")
    assert isinstance(error, CircuitOpen)
    assert error.headers == {"Retry-After": "60"}
    assert error.details == {"scope": f"key:{k.key_id}", "trigger": "loop"}
    clock.advance(20)
    other = refused(g, "req-4", k, "0.0001", loop_hash="different")
    assert isinstance(other, CircuitOpen)
    assert other.headers == {"Retry-After": "40"}
    clock.advance(40)
    admit(g, "req-5", k, "0.0001", loop_hash="different")


def test_loop_items_expire_via_ttl(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    """One ``loop#<key>#<prompt hash>`` item per distinct prompt: they must carry ``expires_at`` (the table's TTL).

    Fails today: ``BucketStore._update`` never sets ``expires_at``, so the table grows by one item for every
    distinct prompt ever sent (store.py docstring: "expires via TTL"; table.py: "TTL ... on loop counters").
    """
    g = BudgetGovernor(load_policy(), store)
    admit(g, "req-1", key("free"), "0.0001", loop_hash="abc123")
    item = item_of(ddb, "loop#vk_adm#abc123")
    assert item, "the loop counter was written"
    assert "expires_at" in item
    assert int(item["expires_at"]["N"]) >= int(clock()) + 300


def test_one_oversized_call_does_not_trip_the_breaker(store: BucketStore, clock: FakeClock) -> None:
    """A single call whose worst case exceeds the breaker's spend window is not a runaway loop.

    Fails today: ``BucketStore.reserve`` refuses ``inc > period`` with the cell's kind ``breaker_spend`` and
    ``BudgetGovernor._refusal_error`` then trips the breaker, so one honest request (e.g. n=16 on gpt-4o for
    a Pro key: $2.62 worst case > $2.50 max_spend_usd) locks the key, user and project out for the cooldown.
    """
    g = BudgetGovernor(load_policy(), store)
    k = key("pro")
    big = refused(g, "req-1", k, "2.62", model="gpt-4o")
    assert big.status == 429
    admit(g, "req-2", k, "0.01", model="gpt-4o")  # a normal call right after must still be admitted


# --- the store failing ----------------------------------------------------------------------------------------------


def test_store_failure_is_503_when_closed_and_a_bypass_when_open(ddb: Any, clock: FakeClock) -> None:
    broken = BucketStore(ddb, TABLES.budgets + "-missing", ledger_table=TABLES.ledger + "-missing", clock=clock, sleep=lambda _: None)
    closed = BudgetGovernor(load_policy(), broken)
    with pytest.raises(ServiceUnavailable) as caught:
        admit(closed, "req-1", key("free"), "0.01")
    assert caught.value.status == 503 and caught.value.code == "budget_store_unavailable"
    opened = BudgetGovernor(policy(fail_mode="open"), broken)
    ticket = admit(opened, "req-2", key("free"), "0.01")
    assert ticket.bypassed and ticket.admission is None
