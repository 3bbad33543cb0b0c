"""The DynamoDB bucket engine (BucketStore) against moto: round trips, atomicity, refunds, idempotency."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from budgets_support import (
    TABLES,
    CallLog,
    FakeClock,
    budget_cell,
    cap_cell,
    item_of,
    ledger_entry,
    reservations,
    set_tat,
    tat_of,
)

from finops.budgets import gcra
from finops.budgets.store import Admission, BucketStore, Refused, StoreUnavailable
from finops.ledger.repository import LedgerRepository

RES = {"exp": 0, "worst_usd": "0.05"}


def three_scopes(worst: str = "0.05") -> list[Any]:
    return [budget_cell("key:vk_a", "1", worst), budget_cell("user:alice", "2", worst),
            budget_cell("project:web", "3", worst)]


# --- admission: one round trip -------------------------------------------------------------------------------


def test_single_scope_reserve_is_one_update_item(store: BucketStore, call_log: CallLog, ddb: Any,
                                                 clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.05")
    admission = store.reserve("req-1", [cell], [], RES)
    assert call_log.ops == ["UpdateItem"]
    assert admission.attempts == 1
    assert tat_of(ddb, cell.pk) == clock.us + cell.inc == admission.tats[cell.key]
    assert cell.inc == gcra.DAY_US // 20  # $0.05 of $1/day
    item = item_of(ddb, cell.pk)
    assert reservations(item) == ["r_req-1"]
    payload = json.loads(item["r_req-1"]["S"])
    assert payload["cells"] == {"tat": cell.inc}
    assert payload["worst_usd"] == "0.05"


def test_multi_scope_reserve_is_one_transaction(store: BucketStore, call_log: CallLog, ddb: Any,
                                                clock: FakeClock) -> None:
    cells = three_scopes()
    admission = store.reserve("req-1", cells, [], RES)
    assert call_log.ops == ["TransactWriteItems"]
    assert len(call_log.params[0]["TransactItems"]) == 3
    for cell in cells:
        assert tat_of(ddb, cell.pk) == clock.us + cell.inc == admission.tats[cell.key]
        assert reservations(item_of(ddb, cell.pk)) == ["r_req-1"]


def test_second_call_from_the_same_store_guesses_debt_and_needs_one_round_trip(
        store: BucketStore, call_log: CallLog, ddb: Any, clock: FakeClock) -> None:
    cells = three_scopes()
    store.reserve("req-1", cells, [], RES)
    clock.advance(10)
    call_log.clear()
    admission = store.reserve("req-2", cells, [], RES)
    assert call_log.ops == ["TransactWriteItems"]
    assert admission.attempts == 1
    start = clock.us - 10 * gcra.MICROS
    for cell in cells:
        assert tat_of(ddb, cell.pk) == start + 2 * cell.inc


# --- atomicity across scopes -------------------------------------------------------------------------------------


def test_one_exhausted_scope_charges_none_of_the_others(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    cells = three_scopes()
    store.reserve("req-1", cells, [], RES)  # every scope now holds one call
    user = cells[1]
    set_tat(ddb, user.pk, clock.us + gcra.DAY_US - user.inc // 2)  # the user budget has half a call left
    before = {c.pk: item_of(ddb, c.pk) for c in cells}
    with pytest.raises(Refused) as refused:
        store.reserve("req-2", cells, [], RES)
    assert refused.value.refusal.cell == user
    assert refused.value.refusal.reason == "budget"
    after = {c.pk: item_of(ddb, c.pk) for c in cells}
    assert after == before
    assert all("r_req-2" not in item for item in after.values())


def test_refusal_on_a_single_scope_leaves_the_item_untouched(store: BucketStore, ddb: Any,
                                                              clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.30")
    for i in range(3):
        store.reserve(f"req-{i}", [cell], [], RES)
    before = item_of(ddb, cell.pk)
    with pytest.raises(Refused):
        store.reserve("req-4", [cell], [], RES)
    assert item_of(ddb, cell.pk) == before


# --- a wrong guess of the case recovers -------------------------------------------------------------------------


def test_fresh_guess_on_an_item_in_debt_recovers(new_store: Callable[[], BucketStore], call_log: CallLog,
                                                 ddb: Any, clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.05")
    debt = clock.us + 3 * gcra.DAY_US // 10  # $0.30 already in use, written by another function
    set_tat(ddb, cell.pk, debt)
    call_log.clear()
    cold = new_store()
    admission = cold.reserve("req-1", [cell], [], RES)
    assert admission.attempts == 2
    assert call_log.ops == ["UpdateItem", "UpdateItem"]
    assert tat_of(ddb, cell.pk) == debt + cell.inc  # added to the debt, not reset to now + inc
    assert admission.tats[cell.key] == debt + cell.inc


def test_fresh_guesses_on_several_items_in_debt_recover_in_one_retry(
        new_store: Callable[[], BucketStore], call_log: CallLog, ddb: Any, clock: FakeClock) -> None:
    cells = three_scopes()
    debts = {c.pk: clock.us + (i + 1) * gcra.DAY_US // 100 for i, c in enumerate(cells)}
    for pk, tat in debts.items():
        set_tat(ddb, pk, tat)
    call_log.clear()
    admission = new_store().reserve("req-1", cells, [], RES)
    assert admission.attempts == 2
    assert call_log.ops == ["TransactWriteItems", "TransactWriteItems"]
    for cell in cells:
        assert tat_of(ddb, cell.pk) == debts[cell.pk] + cell.inc


def test_debt_guess_on_a_bucket_that_refilled_recovers(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.05")
    store.reserve("req-1", [cell], [], RES)  # this store now believes the bucket is in debt
    set_tat(ddb, cell.pk, clock.us - 1)  # ...but another function released it: the bucket is full
    clock.advance(1)
    admission = store.reserve("req-2", [cell], [], RES)
    assert admission.attempts == 2
    assert tat_of(ddb, cell.pk) == clock.us + cell.inc


def test_a_wrong_guess_that_is_really_full_is_refused_not_retried_forever(
        new_store: Callable[[], BucketStore], call_log: CallLog, ddb: Any, clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.05")
    set_tat(ddb, cell.pk, clock.us + gcra.DAY_US)  # empty
    call_log.clear()
    with pytest.raises(Refused):
        new_store().reserve("req-1", [cell], [], RES)
    assert call_log.ops == ["UpdateItem"]


# --- refusal carries retry-after ----------------------------------------------------------------------------------


def test_refusal_says_exactly_when_the_call_fits(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.05")
    set_tat(ddb, cell.pk, clock.us + gcra.DAY_US - cell.inc + 7 * gcra.MICROS)  # 7 s short
    with pytest.raises(Refused) as refused:
        store.reserve("req-1", [cell], [], RES)
    assert refused.value.refusal.retry_after_us == 7 * gcra.MICROS
    assert refused.value.refusal.state["tat"] == clock.us + gcra.DAY_US - cell.inc + 7 * gcra.MICROS
    clock.advance(6)
    with pytest.raises(Refused) as again:
        store.reserve("req-1", [cell], [], RES)
    assert again.value.refusal.retry_after_us == 1 * gcra.MICROS
    clock.advance(1)
    assert store.reserve("req-1", [cell], [], RES).cells == [cell]


def test_a_call_that_can_never_fit_is_refused_without_writing(store: BucketStore, call_log: CallLog,
                                                               ddb: Any) -> None:
    cell = budget_cell("key:vk_a", "1", "1.01")
    with pytest.raises(Refused) as refused:
        store.reserve("req-1", [cell], [], RES)
    assert refused.value.refusal.retry_after_us is None
    assert call_log.ops == []


# --- settlement ---------------------------------------------------------------------------------------------------


def test_settle_refunds_removes_reservation_and_writes_ledger_in_one_transaction(
        store: BucketStore, ledger: LedgerRepository, call_log: CallLog, ddb: Any, clock: FakeClock) -> None:
    cells = three_scopes()
    admission = store.reserve("req-1", cells, [], RES)
    call_log.clear()
    used = {c.key: c.inc // 5 for c in cells}  # the call cost a fifth of its worst case
    assert store.settle(admission, used, ledger.item(ledger_entry("req-1", "0.01"))) is True
    assert call_log.ops == ["TransactWriteItems"]
    ops = call_log.params[0]["TransactItems"]
    assert [next(iter(op)) for op in ops] == ["Put", "Update", "Update", "Update"]
    assert ops[0]["Put"]["TableName"] == TABLES.ledger
    for cell in cells:
        item = item_of(ddb, cell.pk)
        assert reservations(item) == []
        assert int(item["tat"]["N"]) == clock.us + cell.inc // 5
        assert admission.tats[cell.key] == clock.us + cell.inc // 5
    row = ledger.get("req-1")
    assert row is not None and row.cost_usd == Decimal("0.01")


def test_single_scope_settle_is_also_one_transaction(store: BucketStore, ledger: LedgerRepository,
                                                     call_log: CallLog, ddb: Any, clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.05")
    admission = store.reserve("req-1", [cell], [], RES)
    call_log.clear()
    assert store.settle(admission, {cell.key: 1000}, ledger.item(ledger_entry("req-1")))
    assert call_log.ops == ["TransactWriteItems"]
    assert tat_of(ddb, cell.pk) == clock.us + 1000
    assert reservations(item_of(ddb, cell.pk)) == []


def test_settle_is_idempotent(store: BucketStore, ledger: LedgerRepository, ddb: Any, clock: FakeClock) -> None:
    cells = three_scopes()
    admission = store.reserve("req-1", cells, [], RES)
    used = {c.key: c.inc // 2 for c in cells}
    assert store.settle(admission, used, ledger.item(ledger_entry("req-1"))) is True
    after_first = {c.pk: item_of(ddb, c.pk) for c in cells}
    assert store.settle(admission, used, ledger.item(ledger_entry("req-1"))) is False
    assert {c.pk: item_of(ddb, c.pk) for c in cells} == after_first  # no double refund
    assert [c.key for c in cells if admission.tats[c.key] != clock.us + c.inc // 2] == []


def test_settle_without_the_reservation_writes_no_ledger_row(store: BucketStore, ledger: LedgerRepository,
                                                               ddb: Any, clock: FakeClock) -> None:
    """The row and the refund are one transaction: if the reservation was already taken, neither happens."""
    cell = budget_cell("key:vk_a", "1", "0.05")
    admission = store.reserve("req-1", [cell], [], RES)
    assert store.resolve_reservation(cell.pk, "req-1", {}) is True  # e.g. the reconciler booked it
    assert store.settle(admission, {cell.key: 0}, ledger.item(ledger_entry("req-1"))) is False
    assert ledger.get("req-1") is None
    assert tat_of(ddb, cell.pk) == clock.us + cell.inc


def test_failed_call_releases_everything_exactly(store: BucketStore, ledger: LedgerRepository, ddb: Any,
                                                 clock: FakeClock) -> None:
    budget = budget_cell("key:vk_a", "1", "0.05")
    cap = cap_cell("vk_a", "gpt-4o", 50)
    set_tat(ddb, budget.pk, clock.us + 12_345_678_901)  # both in debt: the refund must land exactly
    set_tat(ddb, cap.pk, clock.us + 3 * cap.inc)
    before = {budget.pk: item_of(ddb, budget.pk), cap.pk: item_of(ddb, cap.pk)}
    admission = store.reserve("req-1", [budget, cap], [], RES)
    assert tat_of(ddb, cap.pk) == clock.us + 4 * cap.inc
    clock.advance(2)  # the provider took 2 s to fail
    assert store.settle(admission, {}, ledger.item(ledger_entry("req-1", "0", status="provider_error",
                                                                http_status=503)))
    assert {budget.pk: item_of(ddb, budget.pk), cap.pk: item_of(ddb, cap.pk)} == before


def test_settle_without_refundable_cells_still_writes_the_row(store: BucketStore, ledger: LedgerRepository,
                                                               call_log: CallLog) -> None:
    bypass = Admission("req-9", 0, [], {}, set(), 0)
    assert store.settle(bypass, {}, ledger.item(ledger_entry("req-9")))
    assert call_log.ops == ["PutItem"]
    assert store.settle(bypass, {}, ledger.item(ledger_entry("req-9"))) is False
    assert ledger.get("req-9") is not None


# --- breaker item -------------------------------------------------------------------------------------------------


def test_an_open_breaker_refuses_until_open_until(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    cell = budget_cell("key:vk_a", "1", "0.01")
    open_until = store.trip("breaker#key#vk_a", 120 * gcra.MICROS)
    assert open_until == clock.us + 120 * gcra.MICROS
    assert item_of(ddb, "breaker#key#vk_a")["trips"] == {"N": "1"}
    before = item_of(ddb, cell.pk)
    clock.advance(30)
    with pytest.raises(Refused) as refused:
        store.reserve("req-1", [cell], ["breaker#key#vk_a"], RES)
    assert refused.value.refusal.reason == "circuit_open"
    assert refused.value.refusal.retry_after_us == 90 * gcra.MICROS
    assert item_of(ddb, cell.pk) == before
    clock.advance(90)
    store.reserve("req-2", [cell], ["breaker#key#vk_a"], RES)
    assert tat_of(ddb, cell.pk) == clock.us + cell.inc


# --- the store itself failing ---------------------------------------------------------------------------------------


def test_missing_table_is_store_unavailable(ddb: Any, clock: FakeClock) -> None:
    store = BucketStore(ddb, TABLES.budgets + "-missing", ledger_table=TABLES.ledger, clock=clock, sleep=lambda _: None)
    with pytest.raises(StoreUnavailable):
        store.reserve("req-1", [budget_cell("key:vk_a", "1", "0.01")], [], RES)
    with pytest.raises(StoreUnavailable):
        store.reserve("req-1", three_scopes(), [], RES)


def test_read_returns_the_raw_item(store: BucketStore, ddb: Any) -> None:
    cell = budget_cell("key:vk_a", "1", "0.01")
    store.reserve("req-1", [cell], [], RES)
    assert store.read(cell.pk) == item_of(ddb, cell.pk)
    assert store.read("bucket#nothing") == {}
    assert store.table == TABLES.budgets
