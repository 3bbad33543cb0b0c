"""Pure planning of a call's cells, 429 headers, settlement shares and tax (no AWS: the store is never used)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from budgets_support import units_of
from finops.budgets import gcra
from finops.budgets.governor import (
    BudgetGovernor,
    TaxedScope,
    Ticket,
    extension_id,
    extension_number,
    prompt_hash,
    utc_day,
)
from finops.budgets.policy import BudgetPolicy, load_policy
from finops.budgets.store import Admission, Cell
from finops.errors import ModelNotAllowed
from finops.keys.service import KeyRecord
from finops.tags import CostTags
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

# No deadline: these assert values, never timing (a loaded CI box must not fail them).
untimed = settings(deadline=None)
NOW = 1_795_962_600 * gcra.MICROS  # 2026-11-29T14:30:00Z
MIDNIGHT = 1_795_996_800 * gcra.MICROS  # 2026-11-30T00:00:00Z, 34 200 s later


def key(tier: str, key_id: str = "vk_test") -> KeyRecord:
    return KeyRecord(key_id=key_id, name="t", tier=tier, projects=("*",), environments=("*",),
                     created_at="2026-11-29T14:30:00.000000Z")


TAGS = CostTags(project_id="checkout-web", user_id="alice", environment="production", department_id="payments")


def policy(**overrides: Any) -> BudgetPolicy:
    base = json.loads(json.dumps(load_policy().model_dump(mode="json")))
    base.update(overrides)
    return BudgetPolicy.model_validate(json.loads(json.dumps(base), parse_float=Decimal))


def governor(p: BudgetPolicy | None = None) -> BudgetGovernor:
    return BudgetGovernor(p or load_policy(), store=None)  # type: ignore[arg-type]


# --- shipped policy --------------------------------------------------------------------------------------------


def test_shipped_tiers_match_the_product_table() -> None:
    p = load_policy()
    assert set(p.tiers) == {"free", "pro", "enterprise"}
    assert p.tier("free").budget.daily_usd == Decimal("0.50")
    assert p.tier("pro").budget.daily_usd == Decimal("5.00")
    assert p.tier("enterprise").budget.daily_usd is None
    assert p.tier("pro").request_caps["gpt-4o"] == 50
    assert not p.tier("free").allows("gpt-4o")
    assert p.tier("free").allows("gpt-4o-mini")
    assert p.tier("enterprise").allows("any-model-at-all")
    assert p.fail_mode == "closed"
    assert p.reconcile_policy == "book"
    assert p.alert_thresholds == (Decimal("0.8"),)


def test_tax_ceiling_must_be_above_the_budget() -> None:
    with pytest.raises(ValidationError, match="ceiling"):
        policy(projects={"p": {"daily_usd": 1, "tax": {"multiplier": 1.5, "ceiling_usd": 1}}})
    with pytest.raises(ValidationError, match="ceiling"):
        policy(projects={"p": {"tax": {"multiplier": 1.5, "ceiling_usd": 3}}})
    ok = policy(projects={"p": {"daily_usd": 1, "tax": {"multiplier": 1.5, "ceiling_usd": 3}}})
    tax = ok.project_budget("p").tax  # type: ignore[union-attr]
    assert tax is not None and tax.ceiling_usd == 3


def test_scope_tables_fall_back_to_star() -> None:
    p = policy(users={"*": {"daily_usd": 2}, "bob": {"daily_usd": 7}})
    assert p.user_budget("bob").daily_usd == 7  # type: ignore[union-attr]
    assert p.user_budget("anyone").daily_usd == 2  # type: ignore[union-attr]
    assert p.project_budget("x") is None


def test_unknown_policy_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        policy(fail_mode="sometimes")
    with pytest.raises(ValidationError):
        policy(budgetz={})


# --- planning --------------------------------------------------------------------------------------------------


def test_plan_charges_every_scope_that_applies() -> None:
    p = policy(users={"*": {"daily_usd": 2}}, projects={"checkout-web": {"daily_usd": 3}},
               departments={"payments": {"daily_usd": 4}})
    worst = Decimal("0.02")
    cells, breaker_pks, budgets = governor(p).plan(key("pro"), TAGS, "gpt-4o", worst, "h" * 32, NOW)
    by_kind: dict[str, list[Any]] = {}
    for c in cells:
        by_kind.setdefault(c.kind, []).append(c)
    budget_scopes = {c.scope: c for c in by_kind["budget"]}
    assert set(budget_scopes) == {"key:vk_test", "user:alice", "project:checkout-web", "department:payments"}
    assert set(budgets) == set(budget_scopes)
    for scope, daily in (("key:vk_test", 5), ("user:alice", 2), ("project:checkout-web", 3),
                         ("department:payments", 4)):
        cell = budget_scopes[scope]
        assert cell.pk == "bucket#" + scope.replace(":", "#", 1)
        assert cell.capacity == daily
        assert cell.period_us == gcra.DAY_US
        assert cell.inc == gcra.increment(worst, Decimal(daily), gcra.DAY_US)
        assert cell.refundable
    # the request cap: a counter of calls in this UTC day, one item per day, expiring after two
    [cap] = by_kind["cap"]
    assert (cap.pk, cap.attr, cap.inc, cap.capacity, cap.refundable) == ("cap#vk_test#gpt-4o#2026-11-29", "n", 1,
                                                                        50, True)
    assert cap.is_counter and cap.window_end_us == MIDNIGHT and cap.ttl_s == 2 * 86_400
    assert cap.scope == "key:vk_test:gpt-4o"
    assert breaker_pks == ["breaker#key#vk_test", "breaker#user#alice", "breaker#project#checkout-web"]
    window = 300 * gcra.MICROS  # the shipped Pro breaker: 300 requests, $2.50, 20 repeats per 300 s
    for c in by_kind["breaker_requests"]:  # exactly 300 calls fit: each is ceil(window / 300) of the window
        assert (c.attr, c.inc, c.period_us, c.capacity) == ("req", window // 300, window, 300)
        assert not c.refundable and c.ttl_s is None and not c.is_counter
    for c in by_kind["breaker_spend"]:
        assert (c.attr, c.inc, c.period_us, c.capacity) == ("usd", gcra.increment(worst, Decimal("2.5"), window),
                                                            window, Decimal("2.5"))
        assert c.refundable and c.ttl_s is None
    assert {c.pk for c in by_kind["breaker_requests"]} == set(breaker_pks)
    assert {c.pk for c in by_kind["breaker_spend"]} == set(breaker_pks)
    [loop] = by_kind["loop"]
    assert loop.pk == "loop#vk_test#" + "h" * 32 and not loop.refundable and loop.capacity == 20
    assert (loop.attr, loop.inc, loop.period_us) == ("tat", window // 20, window)
    assert loop.ttl_s == 600  # the loop item expires two windows after its last write
    assert all(c.ttl_s is None for c in by_kind["budget"])  # budgets never expire


def test_the_cap_counter_is_per_utc_calendar_day() -> None:
    g = governor()
    last_us = MIDNIGHT - 1  # 23:59:59.999999 on the 29th
    assert utc_day(NOW) == ("2026-11-29", MIDNIGHT)
    assert utc_day(last_us) == ("2026-11-29", MIDNIGHT)
    assert utc_day(MIDNIGHT) == ("2026-11-30", MIDNIGHT + gcra.DAY_US)
    pks = []
    for now_us in (NOW - 14 * 3600 * gcra.MICROS - 30 * 60 * gcra.MICROS, last_us, MIDNIGHT):
        cells, _, _ = g.plan(key("pro"), TAGS, "gpt-4o", Decimal("0.01"), None, now_us)
        [cap] = [c for c in cells if c.kind == "cap"]
        pks.append((cap.pk, cap.window_end_us))
    assert pks == [("cap#vk_test#gpt-4o#2026-11-29", MIDNIGHT), ("cap#vk_test#gpt-4o#2026-11-29", MIDNIGHT),
                   ("cap#vk_test#gpt-4o#2026-11-30", MIDNIGHT + gcra.DAY_US)]
    cells, _, _ = g.plan(key("pro"), TAGS, "gpt-4o-mini", Decimal("0.01"), None, NOW)
    assert not [c for c in cells if c.kind == "cap"]  # only capped models get a cap cell


@pytest.mark.parametrize(("limit", "window_s"), [(7, 86_400), (3, 10), (300, 300), (13, 1)])
def test_count_cells_fit_exactly_limit_calls(limit: int, window_s: int) -> None:
    window = window_s * gcra.MICROS
    cell = BudgetGovernor._count_cell("loop#vk#h", "tat", limit, window, "loop", "key:vk", ttl_s=2 * window_s)
    assert cell.inc == -(-window // limit) and cell.period_us == cell.inc * limit
    assert (cell.kind, cell.scope, cell.refundable, cell.ttl_s) == ("loop", "key:vk", False, 2 * window_s)
    tat = None
    for _ in range(limit):
        decision = cell.decide(tat, NOW)
        assert decision.allowed
        tat = decision.new_tat
    assert not cell.decide(tat, NOW).allowed


def test_the_breaker_spend_cell_of_one_huge_call_fills_the_window_but_still_fits() -> None:
    """A call larger than the whole spend threshold is clamped to the window: it never trips on its own."""
    window = 300 * gcra.MICROS
    cells, _, _ = governor().plan(key("pro"), TAGS, "gpt-4o", Decimal("2.62"), None, NOW)  # > $2.50 per 300 s
    spend = [c for c in cells if c.kind == "breaker_spend"]
    assert len(spend) == 3
    assert gcra.increment(Decimal("2.62"), Decimal("2.5"), window) > window
    assert all(c.inc == window and c.fits_ever() for c in spend)
    assert all(c.decide(None, NOW).allowed for c in spend)  # an idle window admits it...
    assert not any(c.decide(NOW + 1, NOW).allowed for c in spend)  # ...only an idle one


def test_enterprise_has_no_budget_cell_but_keeps_the_breaker() -> None:
    cells, breaker_pks, budgets = governor().plan(key("enterprise"), TAGS, "gpt-4o", Decimal("0.5"), "abc", NOW)
    assert budgets == {}
    assert not [c for c in cells if c.kind in ("budget", "cap")]
    assert {c.kind for c in cells} == {"breaker_requests", "breaker_spend", "loop"}
    assert len(breaker_pks) == 3


def test_tax_budget_cell_holds_up_to_the_ceiling_at_the_daily_rate() -> None:
    p = policy(projects={"checkout-web": {"daily_usd": 1, "tax": {"multiplier": 1.5, "ceiling_usd": 3}}})
    cells, _, _ = governor(p).plan(key("enterprise"), TAGS, "gpt-4o", Decimal("0.25"), None, NOW)
    [cell] = [c for c in cells if c.kind == "budget"]
    assert cell.capacity == 3
    assert cell.period_us == 3 * gcra.DAY_US  # 3 dollars at 1 dollar/day
    assert cell.inc == gcra.DAY_US // 4
    assert not [c for c in cells if c.kind == "loop"]  # no prompt hash, no loop cell


def test_free_tier_may_not_use_gpt_4o() -> None:
    g = governor()
    with pytest.raises(ModelNotAllowed) as caught:
        g.check_model(key("free"), "gpt-4o")
    assert caught.value.status == 403 and caught.value.code == "model_not_allowed"
    g.check_model(key("free"), "gpt-4o-mini")
    g.check_model(key("enterprise"), "gpt-4o")


def test_prompt_hash_is_stable_and_distinguishes_prompts() -> None:
    a = prompt_hash("gpt-4o", [{"role": "user", "content": "hi"}])
    assert a == prompt_hash("gpt-4o", [{"content": "hi", "role": "user"}])
    assert a != prompt_hash("gpt-4o", [{"role": "user", "content": "hi!"}])
    assert a != prompt_hash("gpt-4o-mini", [{"role": "user", "content": "hi"}])
    assert len(a) == 32


# --- headers ---------------------------------------------------------------------------------------------------


def test_rate_headers_report_the_tightest_budget_and_the_cap() -> None:
    p = policy(users={"*": {"daily_usd": 1}})
    cells, _, _ = governor(p).plan(key("pro"), TAGS, "gpt-4o", Decimal("0.10"), None, NOW)
    key_cell = next(c for c in cells if c.scope == "key:vk_test" and c.kind == "budget")
    user_cell = next(c for c in cells if c.scope == "user:alice" and c.kind == "budget")
    cap = next(c for c in cells if c.kind == "cap")
    tats = {key_cell.key: NOW + gcra.DAY_US // 10,  # $0.50 of $5 used
            user_cell.key: NOW + gcra.DAY_US // 4,  # $0.25 of $1 used: the tightest ($0.75 left)
            cap.key: 2}  # two gpt-4o calls so far today
    headers = BudgetGovernor.rate_headers(NOW, cells, tats)
    assert headers["x-ratelimit-limit-usd"] == "1"
    assert headers["x-ratelimit-remaining-usd"] == "0.75"
    assert headers["x-ratelimit-reset-usd"] == "21600s"
    assert headers["x-ratelimit-limit-requests"] == "50"
    assert headers["x-ratelimit-remaining-requests"] == "48"
    assert headers["x-ratelimit-reset-requests"] == "34200s"  # the count resets at the next UTC midnight
    # the reset is the same whatever the count; an exhausted cap says 0 left
    late = BudgetGovernor.rate_headers(MIDNIGHT - 1, [cap], {cap.key: 50})
    assert late == {"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": "1s"}
    assert BudgetGovernor.rate_headers(NOW, [cap], {})["x-ratelimit-remaining-requests"] == "50"


# --- settlement shares and tax -----------------------------------------------------------------------------------


def _ticket(cells: list[Any], worst: Decimal) -> Ticket:
    return Ticket("req-1", worst, Admission("req-1", NOW, cells, {c.key: NOW + c.inc for c in cells},
                                            {c.key for c in cells}, 1))


@untimed
@given(worst=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(2), places=6),
       share=st.decimals(min_value=0, max_value=1, places=6))
def test_used_charges_the_actual_share_of_each_budget_and_the_whole_cap(worst: Decimal, share: Decimal) -> None:
    actual = worst * share
    cells, _, _ = governor().plan(key("pro"), TAGS, "gpt-4o", worst, "h", NOW)
    ticket = _ticket(cells, worst)
    refundable = [c for c in cells if c.refundable]
    assert {c.kind for c in refundable} == {"budget", "cap", "breaker_spend"}
    for cell in refundable:
        used = ticket.used(cell, actual, succeeded=True)
        if cell.kind == "cap":
            assert used == cell.inc == 1  # a call that went through counts in full
        else:
            exact = Decimal(cell.inc) * actual / worst  # the actual share of the reserved time
            assert exact <= used < exact + 1
            assert used <= cell.inc  # no more than reserved when the call cost no more than its worst case
            if cell.kind == "budget":
                assert used < actual * cell.period_us / cell.capacity + 2  # two roundings up
        assert ticket.used(cell, actual, succeeded=False) == 0  # a failed call consumed nothing, cap included


def test_settlement_charges_the_actual_cost_even_above_the_reserved_worst_case() -> None:
    """The worst case is an estimate (non-OpenAI tokenizers, tools, images are not counted before the call):
    a call that costs 2x its estimate is charged 2x to the budget, as the ledger books it."""
    worst = Decimal("0.10")
    cells, _, _ = governor().plan(key("pro"), TAGS, "llama-3.3-70b-versatile", worst, None, NOW)
    ticket = _ticket(cells, worst)
    [budget] = [c for c in cells if c.kind == "budget"]
    used = ticket.used(budget, 2 * worst, succeeded=True)
    assert used == 2 * budget.inc  # above the reservation, not capped at it
    assert units_of(used, budget.capacity, budget.period_us) >= 2 * worst - Decimal("0.000001")
    for spend in (c for c in cells if c.kind == "breaker_spend"):
        assert ticket.used(spend, 3 * worst, succeeded=True) == 3 * spend.inc
    assert ticket.used(budget, 2 * worst, succeeded=False) == 0
    assert Ticket("r", Decimal(0), None).used(budget, Decimal("0.01"), succeeded=True) == 0  # no estimate: no share


# --- tax: computed at settlement from the actual cost ---------------------------------------------------------------

DAILY, CEILING = Decimal(1), Decimal(2)


def _taxed_ticket(backlog_before_usd: str, worst: str, *taxed: tuple[Cell, Decimal, Decimal]) -> Ticket:
    """A ticket whose taxed budget cells held ``backlog_before_usd`` (at $1/day) before this call was admitted."""
    before = gcra.increment(Decimal(backlog_before_usd), DAILY, gcra.DAY_US)
    scopes = [TaxedScope(cell, daily, multiplier) for cell, daily, multiplier in taxed]
    cells = [t.cell for t in scopes]
    tats = {c.key: NOW + before + c.inc for c in cells}
    return Ticket("req-1", Decimal(worst), Admission("req-1", NOW, cells, tats, set(tats), 1), taxed=scopes)


def _tax_cell(scope: str, worst: str) -> Cell:
    p = policy(projects={"checkout-web": {"daily_usd": 1, "tax": {"multiplier": 1.5, "ceiling_usd": 2}}})
    cells, _, budgets = governor(p).plan(key("enterprise"), TAGS, "gpt-4o", Decimal(worst), None, NOW)
    [cell] = [c for c in cells if c.kind == "budget"]
    assert budgets[cell.scope].tax is not None and cell.capacity == CEILING
    return cell if scope == cell.scope else replace(cell, pk="bucket#" + scope.replace(":", "#", 1), scope=scope)


@pytest.mark.parametrize(("before", "actual", "tax"), [
    ("0.4", "0.4", "0"),  # 0.4 -> 0.8: under the daily budget
    ("0.6", "0.4", "0"),  # 0.6 -> 1.0: exactly at it
    ("0.8", "0.4", "0.1"),  # 0.8 -> 1.2: 0.2 of 0.4 lands above $1, taxed at +50%
    ("0.8", "0.2", "0"),  # the same call, half its worst case: 0.8 -> 1.0, nothing above the budget
    ("0.8", "0.3", "0.05"),  # 0.8 -> 1.1: taxed on what it really cost, not on the reservation
    ("1.2", "0.4", "0.2"),  # 1.2 -> 1.6: all of it above
    ("1.2", "0.1", "0.05"),  # all of a small actual cost above
    ("0.8", "0.8", "0.3"),  # cost twice its estimate: 0.8 -> 1.6, 0.6 above
    ("1.5", "0.8", "0.4"),  # never more than the call itself, however far above
])
def test_tax_is_the_actual_cost_above_the_daily_budget_times_the_surcharge(before: str, actual: str,
                                                                           tax: str) -> None:
    cell = _tax_cell("project:checkout-web", "0.4")
    ticket = _taxed_ticket(before, "0.4", (cell, DAILY, Decimal("1.5")))
    assert ticket.tax_on(Decimal(actual)) == Decimal(tax)


def test_tax_is_the_largest_over_the_taxed_scopes() -> None:
    project = _tax_cell("project:checkout-web", "0.4")
    user = _tax_cell("user:alice", "0.4")
    # both at 0.8 -> 1.2 with $1/day: the project surcharges +50% (0.1), the user +100% (0.2)
    ticket = _taxed_ticket("0.8", "0.4", (project, DAILY, Decimal("1.5")), (user, DAILY, Decimal(2)))
    assert ticket.tax_on(Decimal("0.4")) == Decimal("0.2")
    assert ticket.tax_on(Decimal("0.2")) == 0  # the refund leaves both at exactly $1


def test_no_tax_without_a_taxed_scope_or_an_admission() -> None:
    cell = _tax_cell("project:checkout-web", "0.4")
    untaxed = _taxed_ticket("1.5", "0.4")
    assert untaxed.taxed == [] and untaxed.tax_on(Decimal("0.4")) == 0
    bypassed = Ticket("r", Decimal("0.4"), None, bypassed=True, taxed=[TaxedScope(cell, DAILY, Decimal("1.5"))])
    assert bypassed.tax_on(Decimal("0.4")) == 0


def test_extension_ids_are_read_back_only_for_their_call() -> None:
    assert extension_id("rid", 3) == "rid+3"
    assert extension_number("rid", extension_id("rid", 3)) == 3
    assert extension_number("rid", extension_id("rid", 12)) == 12
    # the call itself, another call sharing the prefix, an attempt's extension, and garbage are not extensions
    for other in ("rid", "rid2+1", extension_id("rid.2", 1), "rid+", "rid+x", "rid+1+2"):
        assert extension_number("rid", other) is None, other
    assert extension_number("rid.2", extension_id("rid.2", 1)) == 1
