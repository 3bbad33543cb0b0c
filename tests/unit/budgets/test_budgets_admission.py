"""BudgetGovernor over a real BucketStore (moto): the 429s it maps, tax, caps, breaker and item hygiene."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from budgets_support import START, TABLES, FakeClock, item_of, ledger_entry, tat_of
from finops.budgets import gcra
from finops.budgets.governor import BudgetGovernor
from finops.budgets.policy import BudgetPolicy, load_policy
from finops.budgets.store import BucketStore
from finops.errors import BudgetExceeded, CircuitOpen, FinOpsError, RequestCapExceeded, ServiceUnavailable
from finops.keys.service import KeyRecord
from finops.ledger.repository import LedgerRepository
from finops.tags import CostTags

TAGS = CostTags(project_id="checkout-web", user_id="alice", environment="production", department_id="unallocated")
TO_MIDNIGHT = 34_200  # seconds from START (14:30 UTC) to the end of its UTC day
BREAKER_PKS = ("breaker#key#vk_adm", "breaker#user#alice", "breaker#project#checkout-web")


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


def count_of(ddb: Any, day: str, key_id: str = "vk_adm", model: str = "gpt-4o") -> int | None:
    """The stored count of the per-day request cap item."""
    return tat_of(ddb, f"cap#{key_id}#{model}#{day}", "n")


# --- request caps ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [3, 7])
def test_a_request_cap_of_n_admits_exactly_n_calls(store: BucketStore, ddb: Any, cap: int) -> None:
    """The cap is a plain count per UTC day: exactly N calls, whatever N (7 does not divide a day in us)."""
    g = BudgetGovernor(policy(tier_pro={"request_caps": {"gpt-4o": cap}}), store)
    k = key("pro")
    for i in range(cap):
        ticket = admit(g, f"req-{i}", k, "0.001", model="gpt-4o")
        assert ticket.headers["x-ratelimit-remaining-requests"] == str(cap - 1 - i)
    assert count_of(ddb, "2026-11-29") == cap
    error = refused(g, "req-last", k, "0.001", model="gpt-4o")
    assert isinstance(error, RequestCapExceeded)
    assert error.headers["x-ratelimit-limit-requests"] == str(cap)
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.details == {"scope": f"key:{k.key_id}:gpt-4o"}
    assert count_of(ddb, "2026-11-29") == cap  # a refusal does not count


def test_pro_key_51st_gpt_4o_call_in_a_burst_is_refused(store: BucketStore) -> None:
    g = BudgetGovernor(load_policy(), store)  # the shipped tiers: Pro may call gpt-4o 50 times a day
    k = key("pro")
    for i in range(50):
        admit(g, f"req-{i}", k, "0.001", model="gpt-4o")
    error = refused(g, "req-50", k, "0.001", model="gpt-4o")
    assert isinstance(error, RequestCapExceeded)
    assert error.headers["x-ratelimit-limit-requests"] == "50"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["Retry-After"] == str(TO_MIDNIGHT)  # nothing refills before the next UTC day
    assert error.headers["x-ratelimit-reset-requests"] == f"{TO_MIDNIGHT}s"


def test_pro_key_51st_gpt_4o_call_of_the_same_day_is_refused(store: BucketStore, ddb: Any,
                                                             clock: FakeClock) -> None:
    """50 calls ten minutes apart (14:30 to 22:40 UTC), then a 51st at 22:50 the same day.

    Product brief: "Pro ... 50 gpt-4o calls per day": the cap counts calls per UTC calendar day, so calls
    spread over the day do not refill it (a rolling bucket would have refilled ~17 by 22:50).
    """
    g = BudgetGovernor(load_policy(), store)
    k = key("pro")
    for i in range(50):
        admit(g, f"req-{i}", k, "0.001", model="gpt-4o")
        clock.advance(600)
    error = refused(g, "req-50", k, "0.001", model="gpt-4o")
    assert isinstance(error, RequestCapExceeded)
    assert error.headers["Retry-After"] == "4200"  # 22:50 to midnight
    clock.advance(4199)
    assert isinstance(refused(g, "req-50", k, "0.001", model="gpt-4o"), RequestCapExceeded)
    clock.advance(1)  # 00:00 UTC: a new day, a new count
    ticket = admit(g, "req-50", k, "0.001", model="gpt-4o")
    assert ticket.headers["x-ratelimit-remaining-requests"] == "49"
    assert (count_of(ddb, "2026-11-29"), count_of(ddb, "2026-11-30")) == (50, 1)


def test_cap_refusal_headers_and_retry_after(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    g = BudgetGovernor(policy(tier_pro={"request_caps": {"gpt-4o": 3}}), store)
    k = key("pro")
    for i in range(3):
        admit(g, f"req-{i}", k, "0.001", model="gpt-4o")
    error = refused(g, "req-3", k, "0.001", model="gpt-4o")
    assert error.status == 429 and error.code == "request_cap_exceeded"
    assert error.headers["Retry-After"] == str(TO_MIDNIGHT)  # the count resets at the next UTC midnight
    assert error.headers["x-ratelimit-reset-requests"] == f"{TO_MIDNIGHT}s"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    clock.advance(TO_MIDNIGHT - 1)
    last_second = refused(g, "req-3", k, "0.001", model="gpt-4o")
    assert isinstance(last_second, RequestCapExceeded)
    assert last_second.headers["Retry-After"] == "1"
    assert last_second.headers["x-ratelimit-reset-requests"] == "1s"
    clock.advance(1)
    ticket = admit(g, "req-3", k, "0.001", model="gpt-4o")
    assert ticket.headers["x-ratelimit-remaining-requests"] == "2"
    assert ticket.headers["x-ratelimit-reset-requests"] == "86400s"
    # one counter item per day, each expiring (TTL) two days after its last write
    old, new = item_of(ddb, f"cap#{k.key_id}#gpt-4o#2026-11-29"), item_of(ddb, f"cap#{k.key_id}#gpt-4o#2026-11-30")
    assert (old["n"], new["n"]) == ({"N": "3"}, {"N": "1"})
    assert int(old["expires_at"]["N"]) == int(START) + 2 * 86_400
    assert int(new["expires_at"]["N"]) == int(clock()) + 2 * 86_400
    # the cap is per model: other models are not capped
    admit(g, "req-4", k, "0.001", model="gpt-4o-mini")
    assert item_of(ddb, f"cap#{k.key_id}#gpt-4o-mini#2026-11-30") == {}


def test_a_failed_call_gives_its_request_back(store: BucketStore, ddb: Any, ledger: LedgerRepository) -> None:
    g = BudgetGovernor(policy(tier_pro={"request_caps": {"gpt-4o": 2}}), store)
    k = key("pro")
    admit(g, "req-0", k, "0.001", model="gpt-4o")
    failed = admit(g, "req-1", k, "0.001", model="gpt-4o")
    assert count_of(ddb, "2026-11-29") == 2
    headers = g.settle(failed, Decimal(0), False, ledger.item(ledger_entry("req-1", "0", status="provider_error",
                                                                           http_status=502)))
    assert count_of(ddb, "2026-11-29") == 1  # ADD -1: the provider failure does not count
    assert headers["x-ratelimit-remaining-requests"] == "1"
    cap_item = item_of(ddb, f"cap#{k.key_id}#gpt-4o#2026-11-29")
    assert sorted(a for a in cap_item if a.startswith("r_")) == ["r_req-0"]  # req-0 is still in flight
    ok = admit(g, "req-2", k, "0.001", model="gpt-4o")
    g.settle(ok, Decimal("0.0005"), True, ledger.item(ledger_entry("req-2", "0.0005")))
    assert count_of(ddb, "2026-11-29") == 2  # a success counts in full, whatever it cost
    assert isinstance(refused(g, "req-3", k, "0.001", model="gpt-4o"), RequestCapExceeded)


@pytest.mark.parametrize(("at", "expected", "retry_after"), [
    (0, RequestCapExceeded, TO_MIDNIGHT),  # 14:30: the cap resets in 9.5 h, the budget has room in 8 h
    (30_000, BudgetExceeded, 28_800),  # 22:50: the cap resets in 70 min, the budget still needs 8 h
])
def test_retry_after_covers_both_the_cap_and_the_budget(store: BucketStore, clock: FakeClock, at: int,
                                                        expected: type, retry_after: int) -> None:
    """Three $0.01 calls exhaust both a $0.03/day budget and a cap of 3: a 4th fits only when both have room."""
    g = BudgetGovernor(policy(tier_pro={"request_caps": {"gpt-4o": 3}, "budget": {"daily_usd": 0.03}}), store)
    k = key("pro")
    clock.advance(at)
    for i in range(3):
        admit(g, f"req-{i}", k, "0.01", model="gpt-4o")
    error = refused(g, "req-3", k, "0.01", model="gpt-4o")
    assert type(error) is expected
    assert error.headers["Retry-After"] == str(retry_after)
    clock.advance(retry_after - 1)
    assert isinstance(refused(g, "req-3", k, "0.01", model="gpt-4o"), (RequestCapExceeded, BudgetExceeded))
    clock.advance(1)
    admit(g, "req-3", k, "0.01", model="gpt-4o")


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


def test_a_call_larger_than_the_whole_budget_says_lower_max_tokens(store: BucketStore, ddb: Any) -> None:
    g = BudgetGovernor(load_policy(), store)
    k = key("free")
    error = refused(g, "req-1", k, "0.51")
    assert isinstance(error, BudgetExceeded) and error.code == "budget_exceeded"
    assert "Retry-After" not in error.headers  # no wait ever lets it in
    assert "max_tokens" in error.message
    assert error.details == {"scope": f"key:{k.key_id}"}
    assert error.headers["x-ratelimit-limit-usd"] == "0.5"
    assert error.headers["x-ratelimit-remaining-usd"] == "0.5"  # nothing was charged
    assert ddb.scan(TableName=TABLES.budgets)["Items"] == []  # refused before any write, no breaker tripped
    admit(g, "req-2", k, "0.01")


def test_tax_mode_admits_past_the_budget_up_to_the_ceiling(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    p = policy(projects={"checkout-web": {"daily_usd": 1, "tax": {"multiplier": 1.5, "ceiling_usd": 2}}})
    g = BudgetGovernor(p, store)
    k = key("enterprise")
    tickets = []
    for i in range(5):  # 0.4 + 0.4 = 0.8 | 1.2 (straddles: 0.2 of 0.4 over) | 1.6 | 2.0 (all over)
        ticket = admit(g, f"req-{i}", k, "0.4")
        [taxed] = ticket.taxed
        assert taxed.cell.scope == "project:checkout-web"
        assert (taxed.daily_usd, taxed.multiplier) == (1, Decimal("1.5"))
        tickets.append(ticket)
    # the tax is computed from what each call really cost: at its worst case...
    assert [t.tax_on(Decimal("0.4")) for t in tickets] == [0, 0, Decimal("0.1"), Decimal("0.2"), Decimal("0.2")]
    # ...or at half of it: the straddling call (0.8 -> 1.0) then lands within the budget
    assert [t.tax_on(Decimal("0.2")) for t in tickets] == [0, 0, 0, Decimal("0.1"), Decimal("0.1")]
    assert tat_of(ddb, "bucket#project#checkout-web") == clock.us + 2 * gcra.DAY_US
    error = refused(g, "req-5", k, "0.01")
    assert isinstance(error, BudgetExceeded)
    assert error.headers["x-ratelimit-limit-usd"] == "2"


def test_only_scopes_in_tax_mode_are_taxed(store: BucketStore) -> None:
    p = policy(projects={"checkout-web": {"daily_usd": 1, "tax": {"multiplier": 2, "ceiling_usd": 2}}},
               users={"*": {"daily_usd": 1}})
    ticket = admit(BudgetGovernor(p, store), "req-1", key("pro"), "0.4")
    assert [t.cell.scope for t in ticket.taxed] == ["project:checkout-web"]
    assert ticket.tax_on(Decimal("0.4")) == 0
    plain = admit(BudgetGovernor(load_policy(), store), "req-2", key("pro", "vk_other"), "0.4")
    assert plain.taxed == [] and plain.tax_on(Decimal("0.4")) == 0


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
    """One ``loop#<key>#<prompt hash>`` item per distinct prompt: each carries ``expires_at`` (the table's TTL),
    two breaker windows after its last write, so the table does not grow by one item per prompt forever."""
    g = BudgetGovernor(load_policy(), store)  # free: a 300 s breaker window
    admit(g, "req-1", key("free"), "0.0001", loop_hash="abc123")
    item = item_of(ddb, "loop#vk_adm#abc123")
    assert item, "the loop counter was written"
    assert int(item["expires_at"]["N"]) == int(clock()) + 600
    clock.advance(100)
    admit(g, "req-2", key("free"), "0.0001", loop_hash="abc123")
    assert int(item_of(ddb, "loop#vk_adm#abc123")["expires_at"]["N"]) == int(clock()) + 600  # refreshed
    # budgets and breakers are long-lived: they never expire
    for pk in ("bucket#key#vk_adm", *BREAKER_PKS):
        stored = item_of(ddb, pk)
        assert stored and "expires_at" not in stored, pk


def test_one_oversized_call_does_not_trip_the_breaker(store: BucketStore, ddb: Any, ledger: LedgerRepository,
                                                      clock: FakeClock) -> None:
    """A single call whose worst case exceeds the breaker's spend threshold is not a runaway loop.

    E.g. n=16 on gpt-4o for a Pro key: $2.62 worst case > $2.50 max_spend_usd per 300 s, well within the
    $5 daily budget. It is admitted, filling the spend window (its share is clamped to the window), and
    settles at its actual cost, so the key, user and project are not locked out.
    """
    g = BudgetGovernor(load_policy(), store)
    k = key("pro")
    big = admit(g, "req-1", k, "2.62", model="gpt-4o")
    assert big.admission is not None
    for pk in BREAKER_PKS:
        item = item_of(ddb, pk)
        assert "open_until" not in item and "trips" not in item, pk
        assert int(item["usd"]["N"]) == clock.us + 300 * gcra.MICROS, pk  # the window is exactly full
    clock.advance(5)
    g.settle(big, Decimal("0.40"), True, ledger.item(ledger_entry("req-1", "0.40")))
    admit(g, "req-2", k, "0.01", model="gpt-4o")  # a normal call right after is admitted


# --- the store failing ----------------------------------------------------------------------------------------------


def test_store_failure_is_503_when_closed_and_a_bypass_when_open(ddb: Any, clock: FakeClock) -> None:
    broken = BucketStore(ddb, TABLES.budgets + "-missing", ledger_table=TABLES.ledger + "-missing", clock=clock,
                         sleep=lambda _: None)
    closed = BudgetGovernor(load_policy(), broken)
    with pytest.raises(ServiceUnavailable) as caught:
        admit(closed, "req-1", key("free"), "0.01")
    assert caught.value.status == 503 and caught.value.code == "budget_store_unavailable"
    opened = BudgetGovernor(policy(fail_mode="open"), broken)
    ticket = admit(opened, "req-2", key("free"), "0.01")
    assert ticket.bypassed and ticket.admission is None
