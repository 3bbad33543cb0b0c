"""A chat call through ChatGateway (real parts, moto, simulated provider, fake clock): auth, bindings, budgets,
caps, the headers, tax mode, failure release and the budget store failing."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import botocore.exceptions
import pytest
from budgets_it_support import QUIET_BREAKER, BudgetStack, policy_dict, remaining_usd
from finops.budgets import gcra

MONEY = Decimal("0.000001")
TO_MIDNIGHT = 34_200  # seconds from the fake clock's start (2026-11-29 14:30 UTC) to the end of that UTC day


def big(tag: str, words: int = 2000) -> str:
    """A prompt of ~``words`` tokens: with max_tokens=1 a call's actual cost is (almost) its worst case."""
    return f"{tag} " + "budget " * words


def no_open_reservations(stack: BudgetStack) -> bool:
    return not [a for i in stack.budget_items().values() for a in i if a.startswith("r_")]


# --- authentication and bindings ------------------------------------------------------------------------------


def test_missing_authorization_is_401_invalid_api_key(bstack: BudgetStack) -> None:
    gw = bstack.gateway()
    reply = bstack.chat(gw, None)
    assert reply.status == 401 and reply.code == "invalid_api_key"
    assert reply.error["type"] == "authentication_error"
    assert bstack.sim.count == 0


@pytest.mark.parametrize("key", ["sk-fin-" + "x" * 43, "sk-other-123", "sk-fin-" + "y" * 200])
def test_unknown_key_is_401(bstack: BudgetStack, key: str) -> None:
    gw = bstack.gateway()
    bstack.create_key("free")
    reply = bstack.chat(gw, key)
    assert reply.status == 401 and reply.code == "invalid_api_key"
    assert bstack.sim.count == 0
    assert bstack.entries() == []


def test_revoked_key_is_refused_once_the_key_cache_expires(bstack: BudgetStack) -> None:
    gw = bstack.gateway(key_cache_seconds=30)
    key = bstack.create_key("free")
    assert bstack.chat(gw, key, "first").status == 200
    bstack.key_service().revoke(bstack.key_id(key))  # the admin API runs in another function
    bstack.clock.advance(10)
    assert bstack.chat(gw, key, "cached").status == 200  # still inside the 30 s cache
    bstack.clock.advance(21)
    reply = bstack.chat(gw, key, "after ttl")
    assert reply.status == 401 and reply.code == "invalid_api_key"


def test_tags_outside_the_key_bindings_are_403(bstack: BudgetStack) -> None:
    gw = bstack.gateway()
    key = bstack.create_key("pro", projects=["checkout-web"], environments=["production"], user_id="alice")
    assert bstack.chat(gw, key).status == 200
    for tags, param in (({"project": "search"}, "X-Project-ID"), ({"environment": "staging"}, "X-Environment"),
                        ({"user": "bob"}, "X-User-ID"),
                        # the unallocated label sent as a value is a project like any other, not a way out
                        ({"project": "unallocated"}, "X-Project-ID"), ({"user": "unallocated"}, "X-User-ID")):
        reply = bstack.chat(gw, key, tags=tags)
        assert reply.status == 403 and reply.code == "key_binding_violation"
        assert reply.error["param"] == param
    assert bstack.sim.count == 1
    assert len(bstack.entries()) == 1


def test_free_key_asking_for_gpt_4o_is_403_model_not_allowed(bstack: BudgetStack) -> None:
    gw = bstack.gateway()
    key = bstack.create_key("free")
    reply = bstack.chat(gw, key, model="gpt-4o")
    assert reply.status == 403 and reply.code == "model_not_allowed"
    assert reply.error["param"] == "model"
    assert bstack.sim.count == 0
    assert bstack.budget_items() == {}
    assert bstack.chat(gw, bstack.create_key("pro"), model="gpt-4o").status == 200


# --- budgets ---------------------------------------------------------------------------------------------------


def test_successful_answers_carry_the_remaining_budget(bstack: BudgetStack) -> None:
    gw = bstack.gateway()
    key = bstack.create_key("free")
    reply = bstack.chat(gw, key, big("a"), max_tokens=1)
    assert reply.status == 200
    row = bstack.entry(reply.request_id)
    assert row.cost_usd > Decimal("0.0002")
    key_id = bstack.key_id(key)
    tat = bstack.tat(f"bucket#key#{key_id}")
    assert tat is not None
    left = remaining_usd(tat, bstack.clock.us, "0.50")
    assert reply.header("x-ratelimit-limit-usd") == "0.5"
    assert Decimal(reply.header("x-ratelimit-remaining-usd") or "") == left.quantize(MONEY)
    assert abs(left - (Decimal("0.5") - row.cost_usd)) <= MONEY  # the bucket holds the actual cost
    assert reply.header("x-ratelimit-reset-usd") == f"{math.ceil((tat - bstack.clock.us) / 1e6)}s"
    assert reply.header("x-finops-cost-usd") == format(row.cost_usd.normalize(), "f")
    assert row.reserved_usd >= row.cost_usd
    assert no_open_reservations(bstack)


def test_exhausted_budget_is_429_budget_exceeded_with_rate_headers(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(tier_free={"budget": {"daily_usd": 0.001}, "breaker": QUIET_BREAKER}))
    key = bstack.create_key("free")
    costs = []
    for i in range(3):
        reply = bstack.chat(gw, key, big(f"call {i}"), max_tokens=1)
        assert reply.status == 200, reply.body
        costs.append(bstack.entry(reply.request_id).cost_usd)
    assert Decimal("0.0009") < sum(costs) <= Decimal("0.001")
    calls = bstack.sim.count
    key_id = bstack.key_id(key)
    tat = bstack.tat(f"bucket#key#{key_id}")
    assert tat is not None
    before = bstack.item(f"bucket#key#{key_id}")

    reply = bstack.chat(gw, key, big("call 3"), max_tokens=1)
    assert reply.status == 429 and reply.code == "budget_exceeded"
    assert reply.error["type"] == "rate_limit_error"
    assert reply.error["scope"] == f"key:{key_id}"
    assert f"key:{key_id}" in reply.error["message"]
    assert bstack.sim.count == calls  # the provider was not called
    assert bstack.item(f"bucket#key#{key_id}") == before

    worst = bstack.entries()[0].reserved_usd  # every call here has the same worst case
    inc = gcra.increment(worst, Decimal("0.001"), gcra.DAY_US)
    now = bstack.clock.us
    assert reply.header("retry-after") == str(math.ceil((tat + inc - gcra.DAY_US - now) / 1e6))
    assert reply.header("x-ratelimit-limit-usd") == "0.001"
    assert Decimal(reply.header("x-ratelimit-remaining-usd") or "") == remaining_usd(tat, now, "0.001").quantize(
        MONEY)
    assert reply.header("x-ratelimit-reset-usd") == f"{math.ceil((tat - now) / 1e6)}s"

    bstack.clock.advance(int(reply.header("retry-after") or 0))
    assert bstack.chat(gw, key, big("call 4"), max_tokens=1).status == 200


def test_every_scope_budget_that_applies_is_charged(bstack: BudgetStack) -> None:
    policy = policy_dict(users={"*": {"daily_usd": 1}, "bob": {"daily_usd": 0.0005}},
                         projects={"checkout-web": {"daily_usd": 2}},
                         departments={"payments": {"daily_usd": 3}})
    gw = bstack.gateway(policy, project_departments={"checkout-web": "payments"})
    key = bstack.create_key("pro")
    key_id = bstack.key_id(key)
    reply = bstack.chat(gw, key, big("alice"), max_tokens=1)
    assert reply.status == 200
    cost = bstack.entry(reply.request_id).cost_usd
    now = bstack.clock.us
    for pk, daily in ((f"bucket#key#{key_id}", "5"), ("bucket#user#alice", "1"),
                      ("bucket#project#checkout-web", "2"), ("bucket#department#payments", "3")):
        used = remaining_usd(None, now, daily) - remaining_usd(bstack.tat(pk), now, daily)
        assert abs(used - cost) <= MONEY, pk
    assert bstack.entry(reply.request_id).department_id == "payments"

    # bob has his own (small) user budget; the key, project and department budgets are shared
    first = bstack.chat(gw, key, big("bob 1"), max_tokens=1, tags={"user": "bob"})
    assert first.status == 200
    assert first.header("x-ratelimit-limit-usd") == "0.0005"  # the tightest budget is reported
    project_before = bstack.item("bucket#project#checkout-web")
    second = bstack.chat(gw, key, big("bob 2"), max_tokens=1, tags={"user": "bob"})
    assert second.status == 429 and second.code == "budget_exceeded"
    assert second.error["scope"] == "user:bob"
    assert bstack.item("bucket#project#checkout-web") == project_before  # refused everywhere at once
    # another project without a budget of its own is charged to key, user and no project bucket
    other = bstack.chat(gw, key, big("carol"), max_tokens=1, tags={"project": "search", "user": "carol"})
    assert other.status == 200
    assert "bucket#project#search" not in bstack.budget_items()
    assert bstack.tat("bucket#user#carol") is not None


def test_request_cap_refuses_the_call_after_the_cap(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(tier_pro={"request_caps": {"gpt-4o": 3}}))
    key = bstack.create_key("pro")
    key_id = bstack.key_id(key)
    for i in range(3):
        reply = bstack.chat(gw, key, f"question {i}", model="gpt-4o")
        assert reply.status == 200
        assert reply.header("x-ratelimit-limit-requests") == "3"
        assert reply.header("x-ratelimit-remaining-requests") == str(2 - i)
        assert reply.header("x-ratelimit-reset-requests") == f"{TO_MIDNIGHT - 60 * i}s"
        bstack.clock.advance(60)
    calls = bstack.sim.count
    reply = bstack.chat(gw, key, "question 3", model="gpt-4o")
    assert reply.status == 429 and reply.code == "request_cap_exceeded"
    assert reply.header("retry-after") == str(TO_MIDNIGHT - 180)  # the next UTC midnight
    assert reply.header("x-ratelimit-limit-requests") == "3"
    assert reply.header("x-ratelimit-remaining-requests") == "0"
    assert reply.header("x-ratelimit-reset-requests") == f"{TO_MIDNIGHT - 180}s"
    assert reply.error["scope"] == f"key:{key_id}:gpt-4o"
    assert bstack.sim.count == calls
    assert bstack.tat(f"cap#{key_id}#gpt-4o#2026-11-29", "n") == 3
    assert bstack.chat(gw, key, "mini is not capped", model="gpt-4o-mini").status == 200
    # a new UTC day, a new count
    bstack.clock.advance(TO_MIDNIGHT - 180)
    again = bstack.chat(gw, key, "question 4", model="gpt-4o")
    assert again.status == 200
    assert again.header("x-ratelimit-remaining-requests") == "2"
    assert again.header("x-ratelimit-reset-requests") == "86400s"
    assert bstack.tat(f"cap#{key_id}#gpt-4o#2026-11-30", "n") == 1


def test_provider_failure_releases_the_reservation_in_full(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(tier_pro={"request_caps": {"gpt-4o": 5}}))
    key = bstack.create_key("pro")
    key_id = bstack.key_id(key)
    assert bstack.chat(gw, key, "warm up", model="gpt-4o").status == 200
    pks = (f"bucket#key#{key_id}", f"cap#{key_id}#gpt-4o#2026-11-29")
    before = {pk: bstack.item(pk) for pk in pks}
    assert all(before.values())
    assert before[pks[1]]["n"] == {"N": "1"}
    # Every model of the fallback chain fails (the directive applies to all): each attempt reserved its own
    # model's price and released it.
    reply = bstack.chat(gw, key, "boom [[sim:status=503]]", model="gpt-4o", max_tokens=500)
    assert reply.status == 503 and reply.code == "provider_overloaded"
    assert reply.header("x-finops-cost-usd") == "0"
    assert {pk: bstack.item(pk) for pk in pks} == before  # exactly where it was, cap included
    row = bstack.entry(reply.request_id)
    assert row.cost_usd == 0 and row.status == "provider_overloaded" and row.http_status == 503
    assert row.reserved_usd > 0
    retries = [bstack.entry(f"{reply.request_id}.{n}") for n in (1, 2, 3)]
    assert all(r is not None and r.cost_usd == 0 and r.parent_request_id == reply.request_id for r in retries)
    assert no_open_reservations(bstack)


def test_enterprise_is_unlimited_but_metered(bstack: BudgetStack) -> None:
    gw = bstack.gateway()
    key = bstack.create_key("enterprise")
    reply = bstack.chat(gw, key, big("ent", 500), model="gpt-4o", max_tokens=1)
    assert reply.status == 200
    row = bstack.entry(reply.request_id)
    assert row.tier == "enterprise" and row.key_id == bstack.key_id(key)
    assert row.cost_usd > Decimal("0.001")
    assert reply.header("x-ratelimit-limit-usd") is None
    assert not [pk for pk in bstack.budget_items() if pk.startswith(("bucket#", "cap#"))]
    assert bstack.tat(f"breaker#key#{row.key_id}", "req") is not None  # the breaker still counts


# --- tax mode --------------------------------------------------------------------------------------------------


def test_tax_mode_admits_past_the_budget_up_to_the_ceiling_and_books_the_surcharge(bstack: BudgetStack) -> None:
    """Each call is admitted on its worst case but charged, and taxed, on what it actually cost: the part of
    the actual cost that lands above the daily budget, times (multiplier - 1)."""
    daily, ceiling = Decimal("0.001"), Decimal("0.002")
    policy = policy_dict(projects={"checkout-web": {"daily_usd": 0.001,
                                                    "tax": {"multiplier": 1.5, "ceiling_usd": 0.002}}},
                         tier_enterprise={"breaker": QUIET_BREAKER})
    gw = bstack.gateway(policy)
    key = bstack.create_key("enterprise")
    pk = "bucket#project#checkout-web"
    taxes, admitted = [], Decimal(0)
    for i in range(12):
        tat = bstack.tat(pk)
        # ~2000 prompt tokens; 20 of the 200 output tokens allowed: it costs ~3/4 of its worst case
        reply = bstack.chat(gw, key, big(f"t{i}") + " [[sim:tokens=20]]", max_tokens=200)
        if reply.status != 200:
            break
        row = bstack.entry(reply.request_id)
        cost, worst = row.cost_usd, row.reserved_usd
        assert 0 < cost < worst
        admitted += cost
        now = bstack.clock.us
        base = max(tat or now, now)
        used = math.ceil(Decimal(gcra.increment(worst, daily, gcra.DAY_US)) * cost / worst)
        assert bstack.tat(pk) == base + used  # the bucket holds the actual cost, not the reservation
        over = Decimal(base + used - now) * daily / gcra.DAY_US - daily  # dollars above the budget after it
        expected = min(cost, max(Decimal(0), over)) * Decimal("0.5")
        assert abs(row.tax_usd - expected) <= Decimal("1e-15"), i
        taxes.append((cost, row.tax_usd))
    else:
        pytest.fail("the ceiling never refused")
    assert reply.status == 429 and reply.code == "budget_exceeded"
    assert reply.error["scope"] == "project:checkout-web"
    assert reply.header("x-ratelimit-limit-usd") == "0.002"
    assert admitted > daily  # past the soft budget...
    assert admitted <= ceiling  # ...never past the ceiling
    assert taxes[0][1] == 0  # rows under the budget carry no tax
    assert any(0 < t < c / 2 for c, t in taxes)  # the call that straddles the budget: part of it taxed
    assert abs(taxes[-1][1] - taxes[-1][0] / 2) <= Decimal("1e-15")  # all of it above: taxed in full
    assert [t > 0 for _, t in taxes] == sorted(t > 0 for _, t in taxes)  # untaxed calls, then taxed ones


# --- the budget store failing -------------------------------------------------------------------------------------


def test_missing_budgets_table_fails_closed_with_503(bstack: BudgetStack) -> None:
    gw = bstack.gateway(budgets_table=bstack.tables.budgets + "-missing")
    key = bstack.create_key("free")
    reply = bstack.chat(gw, key)
    assert reply.status == 503 and reply.code == "budget_store_unavailable"
    assert bstack.sim.count == 0
    assert bstack.entries() == []


def test_store_client_errors_fail_closed_without_calling_the_provider(bstack: BudgetStack) -> None:
    store = bstack.store()
    gw = bstack.gateway(store=store)
    key = bstack.create_key("pro")

    def down(*_: Any, **__: Any) -> Any:
        raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    store.client = type("Down", (), {"update_item": down, "transact_write_items": down, "put_item": down})()
    reply = bstack.chat(gw, key, model="gpt-4o")
    assert reply.status == 503 and reply.code == "budget_store_unavailable"
    assert bstack.sim.count == 0


def test_fail_open_admits_and_marks_the_row_bypassed(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(fail_mode="open"), budgets_table=bstack.tables.budgets + "-missing")
    key = bstack.create_key("free")
    reply = bstack.chat(gw, key)
    assert reply.status == 200
    assert bstack.sim.count == 1
    row = bstack.entry(reply.request_id)
    assert row.budget_bypassed is True
    assert row.cost_usd > 0 and row.status == "ok"
    assert reply.header("x-ratelimit-limit-usd") is None
