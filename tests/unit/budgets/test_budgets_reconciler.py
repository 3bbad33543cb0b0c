"""Reservations whose function died before settling: the Reconciler books or releases them, exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from budgets_support import TABLES, FakeClock, item_of, ledger_entry, reservations, tat_of
from finops.budgets import gcra
from finops.budgets.governor import BudgetGovernor
from finops.budgets.policy import BudgetPolicy, load_policy
from finops.budgets.reconciler import Reconciler
from finops.budgets.store import BucketStore
from finops.keys.service import KeyRecord
from finops.ledger.repository import LedgerRepository
from finops.tags import CostTags

TAGS = CostTags(project_id="checkout-web", user_id="alice", environment="production", department_id="payments")
KEY = KeyRecord(key_id="vk_rec", name="t", tier="pro", projects=("*",), environments=("*",),
                created_at="2026-11-29T14:30:00.000000Z")
WORST = Decimal("0.25")


def governor(store: BucketStore) -> BudgetGovernor:
    base = json.loads(json.dumps(load_policy().model_dump(mode="json")))
    base["users"] = {"*": {"daily_usd": 2}}
    return BudgetGovernor(BudgetPolicy.model_validate(json.loads(json.dumps(base), parse_float=Decimal)), store)


def crash_after_admission(store: BucketStore, clock: FakeClock, request_id: str = "req-crash") -> Any:
    """Admit a call as the gateway does and never settle it (the function died mid-call)."""
    ts = datetime.fromtimestamp(clock(), UTC).isoformat()
    return governor(store).admit(
        request_id, KEY, TAGS, "gpt-4o", WORST, "hash-1",
        reservation={"project_id": TAGS.project_id, "user_id": TAGS.user_id, "environment": TAGS.environment,
                     "department_id": TAGS.department_id, "model": "gpt-4o", "provider": "openai",
                     "key_id": KEY.key_id, "tier": KEY.tier, "ts": ts, "parent_request_id": request_id})


BUDGET_PKS = ("bucket#key#vk_rec", "bucket#user#alice")
CAP_PK = "cap#vk_rec#gpt-4o#2026-11-29"  # the per-UTC-day request count (attribute ``n``) of START's day
BREAKER_PKS = ("breaker#key#vk_rec", "breaker#user#alice", "breaker#project#checkout-web")


def held(ddb: Any) -> dict[str, int | None]:
    """What each refundable cell's item holds: the budgets' TAT and the cap's count."""
    return {**{pk: tat_of(ddb, pk) for pk in BUDGET_PKS}, CAP_PK: tat_of(ddb, CAP_PK, "n"),
            **{pk: tat_of(ddb, pk, "usd") for pk in BREAKER_PKS}}


def open_reservations(ddb: Any) -> list[tuple[str, str]]:
    items = ddb.scan(TableName=TABLES.budgets)["Items"]
    return sorted((i["pk"]["S"], a) for i in items for a in reservations(i))


def test_book_keeps_the_worst_case_and_writes_a_reconciled_row(store: BucketStore, ledger: LedgerRepository,
                                                              ddb: Any, clock: FakeClock) -> None:
    ticket = crash_after_admission(store, clock)
    before = held(ddb)
    assert before[CAP_PK] == 1
    # every item with a refundable cell holds the reservation: 2 budgets, the day's cap, 3 breaker spend cells
    assert open_reservations(ddb) == sorted((pk, "r_req-crash") for pk in (*BUDGET_PKS, CAP_PK, *BREAKER_PKS))
    assert json.loads(item_of(ddb, CAP_PK)["r_req-crash"]["S"])["cells"] == {"n": 1}
    assert reservations(item_of(ddb, "loop#vk_rec#hash-1")) == []  # counts only: nothing to refund
    reconciler = Reconciler(store, ledger, "book", "v-test")

    # not expired yet: nothing happens
    assert reconciler.run(clock() + 899).__dict__ == {"booked": 0, "released": 0, "already_settled": 0}
    assert ledger.get("req-crash") is None

    clock.advance(901)
    summary = reconciler.run(clock())
    assert summary.__dict__ == {"booked": 6, "released": 0, "already_settled": 0}  # one per reserved item
    row = ledger.get("req-crash")
    assert row is not None
    assert row.status == "reconciled" and row.error_code == "booked_unsettled"
    assert row.cost_usd == WORST == row.reserved_usd
    assert (row.key_id, row.tier, row.model, row.project_id, row.user_id, row.department_id) == (
        "vk_rec", "pro", "gpt-4o", "checkout-web", "alice", "payments")
    assert row.parent_request_id == "req-crash"
    assert held(ddb) == before  # the buckets keep the amount, the cap keeps the call counted
    assert open_reservations(ddb) == []
    assert ticket.admission is not None

    # a second run does nothing more
    assert reconciler.run(clock() + 10_000).__dict__ == {"booked": 0, "released": 0, "already_settled": 0}
    assert held(ddb) == before


def test_release_gives_the_amount_back_and_books_zero(store: BucketStore, ledger: LedgerRepository, ddb: Any,
                                                      clock: FakeClock) -> None:
    start = clock.us
    crash_after_admission(store, clock)
    assert tat_of(ddb, "bucket#key#vk_rec") == start + gcra.increment(WORST, 5, gcra.DAY_US)
    assert tat_of(ddb, CAP_PK, "n") == 1
    clock.advance(1000)
    reconciler = Reconciler(store, ledger, "release", "v-test")
    summary = reconciler.run(clock())
    assert summary.__dict__ == {"booked": 0, "released": 6, "already_settled": 0}
    row = ledger.get("req-crash")
    assert row is not None
    assert row.status == "reconciled" and row.error_code == "released_unsettled"
    assert row.cost_usd == 0 and row.reserved_usd == WORST
    released = {**dict.fromkeys(BUDGET_PKS, start), CAP_PK: 0, **dict.fromkeys(BREAKER_PKS, start)}
    assert held(ddb) == released  # exactly the amount reserved came back, and the call no longer counts
    assert open_reservations(ddb) == []
    assert reconciler.run(clock() + 10_000).__dict__ == {"booked": 0, "released": 0, "already_settled": 0}
    assert held(ddb) == released


def test_a_settled_call_is_left_alone(store: BucketStore, ledger: LedgerRepository, ddb: Any,
                                      clock: FakeClock) -> None:
    ticket = crash_after_admission(store, clock, "req-ok")
    g = governor(store)
    g.settle(ticket, Decimal("0.05"), True, ledger.item(ledger_entry("req-ok", "0.05")))
    after_settle = {pk: item_of(ddb, pk) for pk in (*BUDGET_PKS, CAP_PK, *BREAKER_PKS)}
    assert after_settle[CAP_PK]["n"] == {"N": "1"}
    assert open_reservations(ddb) == []
    clock.advance(5000)
    summary = Reconciler(store, ledger, "book", "v-test").run(clock())
    assert summary.__dict__ == {"booked": 0, "released": 0, "already_settled": 0}
    assert {pk: item_of(ddb, pk) for pk in (*BUDGET_PKS, CAP_PK, *BREAKER_PKS)} == after_settle
    row = ledger.get("req-ok")
    assert row is not None and row.status == "ok" and row.cost_usd == Decimal("0.05")


@pytest.mark.parametrize(("cost", "refunded"), [(WORST, False), (Decimal("0.07"), True)])
def test_a_reservation_with_a_row_written_elsewhere_is_settled_with_the_rows_cost(
        store: BucketStore, ledger: LedgerRepository, ddb: Any, clock: FakeClock, cost: Decimal,
        refunded: bool) -> None:
    crash_after_admission(store, clock, "req-x")
    key_tat = tat_of(ddb, "bucket#key#vk_rec")
    # The row came back from the spill log; the restore's settle has not run yet.
    assert ledger.append(ledger_entry("req-x", str(cost)))
    clock.advance(1000)
    summary = Reconciler(store, ledger, "release", "v-test").run(clock())
    assert summary.__dict__ == {"booked": 0, "released": 0, "already_settled": 6}
    after = tat_of(ddb, "bucket#key#vk_rec")
    # Charged what the row cost: the unused part of the reservation back, whatever the policy for lost calls.
    assert (after < key_tat) if refunded else (after == key_tat)
    assert tat_of(ddb, CAP_PK, "n") == 1  # the call stays counted
    assert open_reservations(ddb) == []
    row = ledger.get("req-x")
    assert row is not None and row.cost_usd == cost and row.status == "ok"


@pytest.mark.parametrize("policy", ["book", "release"])
def test_a_late_settle_after_reconciliation_changes_nothing(store: BucketStore, ledger: LedgerRepository,
                                                             ddb: Any, clock: FakeClock, policy: str) -> None:
    ticket = crash_after_admission(store, clock, "req-late")
    clock.advance(1000)
    Reconciler(store, ledger, policy, "v-test").run(clock())
    state = {pk: item_of(ddb, pk) for pk in (*BUDGET_PKS, CAP_PK, *BREAKER_PKS)}
    assert state[CAP_PK]["n"] == {"N": "1" if policy == "book" else "0"}
    governor(store).settle(ticket, Decimal("0.01"), True, ledger.item(ledger_entry("req-late", "0.01")))
    assert {pk: item_of(ddb, pk) for pk in (*BUDGET_PKS, CAP_PK, *BREAKER_PKS)} == state
    row = ledger.get("req-late")
    assert row is not None and row.status == "reconciled"
