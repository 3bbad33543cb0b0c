"""The DynamoDB bucket engine (BucketStore) against moto: round trips, atomicity, refunds, idempotency."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from budgets_support import (
    MIDNIGHT,
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
from finops.budgets.governor import BudgetGovernor
from finops.budgets.policy import load_policy
from finops.budgets.store import Admission, BucketStore, Cell, Refusal, Refused, StoreUnavailable, most_binding
from finops.keys.service import KeyRecord
from finops.ledger.repository import LedgerRepository
from finops.tags import CostTags

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


def test_retry_after_covers_every_exhausted_scope(store: BucketStore, ddb: Any, clock: FakeClock) -> None:
    """Two scopes exhausted: the call fits only when both have room, so Retry-After is the longer wait
    (the key budget alone would say 10 s, and a client retrying then would be refused for 90 s more)."""
    cells = three_scopes()
    key_cell, user_cell = cells[0], cells[1]
    set_tat(ddb, key_cell.pk, clock.us + gcra.DAY_US - key_cell.inc + 10 * gcra.MICROS)  # 10 s short
    set_tat(ddb, user_cell.pk, clock.us + gcra.DAY_US - user_cell.inc + 100 * gcra.MICROS)  # 100 s short
    with pytest.raises(Refused) as refused:
        store.reserve("req-1", cells, [], RES)
    assert refused.value.refusal.retry_after_us == 100 * gcra.MICROS
    assert refused.value.refusal.cell == user_cell
    clock.advance(99)
    with pytest.raises(Refused):
        store.reserve("req-1", cells, [], RES)
    clock.advance(1)
    store.reserve("req-1", cells, [], RES)  # retrying when told to succeeds


def test_most_binding_prefers_a_breaker_then_the_longest_wait() -> None:
    budget, cap = budget_cell("key:vk_a", "1", "0.05"), cap_cell("vk_a", "gpt-4o", 3, MIDNIGHT * gcra.MICROS - 1)
    short = Refusal(budget, "budget", 10 * gcra.MICROS)
    long = Refusal(cap, "cap", 1_000 * gcra.MICROS)
    never = Refusal(budget, "too_large", None)
    loop = Refusal(budget, "loop", 5 * gcra.MICROS)
    spend = Refusal(budget, "breaker_spend", 1)
    opened = Refusal(None, "circuit_open", 1, state={"pk": "breaker#key#vk_a"})
    assert most_binding([short, long]) is long
    assert most_binding([long, short]) is long
    assert most_binding([short, never, long]) is never  # None: it can never fit, the longest wait of all
    assert most_binding([long, spend, short]) is spend  # a breaker refusal must trip, whatever the waits
    assert most_binding([spend, loop]) is loop
    assert most_binding([loop, opened, long]) is opened  # already open: report it, do not trip again


def test_a_call_that_can_never_fit_is_refused_without_writing(store: BucketStore, call_log: CallLog,
                                                               ddb: Any) -> None:
    cell = budget_cell("key:vk_a", "1", "1.01")
    assert not cell.fits_ever()
    with pytest.raises(Refused) as refused:
        store.reserve("req-1", [budget_cell("user:alice", "2", "1.01"), cell], ["breaker#key#vk_a"], RES)
    assert refused.value.refusal.reason == "too_large"
    assert refused.value.refusal.cell == cell
    assert refused.value.refusal.retry_after_us is None
    assert call_log.ops == []


def test_an_oversized_breaker_cell_is_too_large_not_a_breaker_refusal(store: BucketStore, call_log: CallLog) -> None:
    """Whatever the cell's kind, a call that can never fit says "too_large": it must never trip the breaker."""
    window = 60 * gcra.MICROS
    spend = Cell(pk="breaker#key#vk_a", attr="usd", inc=window + 1, period_us=window, capacity=Decimal(1),
                 kind="breaker_spend", scope="key:vk_a", refundable=True)
    with pytest.raises(Refused) as refused:
        store.reserve("req-1", [spend], ["breaker#key#vk_a"], RES)
    assert (refused.value.refusal.reason, refused.value.refusal.retry_after_us) == ("too_large", None)
    counter = Cell(pk="cap#vk_a#m#2026-11-29", attr="n", inc=4, period_us=gcra.DAY_US, capacity=Decimal(3),
                   kind="cap", scope="key:vk_a:m", refundable=True, window_end_us=MIDNIGHT * gcra.MICROS)
    with pytest.raises(Refused) as too_many:
        store.reserve("req-2", [counter], [], RES)
    assert too_many.value.refusal.reason == "too_large"
    assert call_log.ops == []


# --- per-day counters (request caps) --------------------------------------------------------------------------------


def _cap_update(call_log: CallLog, pk: str) -> dict[str, Any]:
    [update] = [op["Update"] for op in call_log.params[-1]["TransactItems"] if op["Update"]["Key"]["pk"]["S"] == pk]
    return update


def test_a_counter_cell_adds_to_the_days_count_and_refuses_past_the_cap(store: BucketStore, call_log: CallLog,
                                                                       ddb: Any, clock: FakeClock) -> None:
    cap = cap_cell("vk_a", "gpt-4o", 2, clock.us)
    assert cap.pk == "cap#vk_a#gpt-4o#2026-11-29" and cap.window_end_us == MIDNIGHT * gcra.MICROS
    budget = budget_cell("key:vk_a", "1", "0.01")
    first = store.reserve("req-1", [budget, cap], [], RES)  # as the governor sends it: with other items
    update = _cap_update(call_log, cap.pk)
    assert "ADD #a0 :i0" in update["UpdateExpression"] and update["ExpressionAttributeValues"][":i0"] == {"N": "1"}
    assert update["ExpressionAttributeValues"][":l0"] == {"N": "1"}  # admitted only while the count is <= cap - 1
    assert first.tats[cap.key] == 1
    item = item_of(ddb, cap.pk)
    assert item["n"] == {"N": "1"}
    assert int(item["expires_at"]["N"]) == int(clock()) + 2 * 86_400
    assert json.loads(item["r_req-1"]["S"])["cells"] == {"n": 1}  # refundable: a failure gives it back
    clock.advance(600)
    assert store.reserve("req-2", [budget, cap], [], RES).tats[cap.key] == 2
    before = {c.pk: item_of(ddb, c.pk) for c in (budget, cap)}
    clock.advance(3600)
    with pytest.raises(Refused) as refused:
        store.reserve("req-3", [budget, cap], [], RES)
    assert refused.value.refusal.reason == "cap"
    assert refused.value.refusal.cell == cap
    assert refused.value.refusal.state == {"tat": 2}
    assert refused.value.refusal.retry_after_us == MIDNIGHT * gcra.MICROS - clock.us  # until the next UTC day
    assert {c.pk: item_of(ddb, c.pk) for c in (budget, cap)} == before  # a refusal writes nothing anywhere
    assert cap.decide(2, MIDNIGHT * gcra.MICROS - 1).retry_after_us == 1
    assert cap.decide(1, MIDNIGHT * gcra.MICROS - 1).allowed


def test_a_counter_in_a_transaction_is_counted_at_least_once(new_store: Callable[[], BucketStore], ddb: Any,
                                                             clock: FakeClock) -> None:
    """In a transaction the new count is not returned: the admission's count is a lower bound."""
    cap = cap_cell("vk_a", "gpt-4o", 5, clock.us)
    set_tat(ddb, cap.pk, 3, attr="n")  # three calls already counted by other functions
    admission = new_store().reserve("req-1", [cap, budget_cell("key:vk_a", "1", "0.01")], [], RES)
    assert admission.attempts == 1
    assert tat_of(ddb, cap.pk, "n") == 4
    assert 1 <= admission.tats[cap.key] <= 4 and cap.key not in admission.exact


def test_a_counter_cell_alone_is_one_valid_update_item(store: BucketStore, call_log: CallLog, ddb: Any,
                                                       clock: FakeClock) -> None:
    cap = cap_cell("vk_a", "gpt-4o", 2, clock.us)
    admission = store.reserve("req-1", [cap], [], RES)
    assert call_log.ops == ["UpdateItem"]
    assert admission.tats[cap.key] == 1 and cap.key in admission.exact
    assert tat_of(ddb, cap.pk, "n") == 1


def _placeholders(expression: str, prefix: str) -> set[str]:
    return set(re.findall(re.escape(prefix) + r"[A-Za-z0-9_]+", expression))


def test_every_admission_write_declares_only_the_placeholders_it_uses(store: BucketStore, call_log: CallLog,
                                                                      clock: FakeClock) -> None:
    """DynamoDB refuses an UpdateItem (alone or in TransactWriteItems) whose ExpressionAttributeValues or
    ExpressionAttributeNames hold a key its expressions do not use. Checked here on what is sent, since moto
    does not enforce it inside a transaction."""
    governor = BudgetGovernor(load_policy(), store)
    key = KeyRecord(key_id="vk_a", name="t", tier="pro", projects=("*",), environments=("*",),
                    created_at="2026-11-29T14:30:00.000000Z")
    tags = CostTags(project_id="web", user_id="alice", environment="production", department_id="x")
    governor.admit("req-1", key, tags, "gpt-4o", Decimal("0.01"), "hash", {})  # budget, cap, breakers, loop
    [params] = call_log.params
    updates = [op["Update"] for op in params["TransactItems"]]
    assert {u["Key"]["pk"]["S"] for u in updates} >= {"bucket#key#vk_a", "cap#vk_a#gpt-4o#2026-11-29",
                                                      "breaker#key#vk_a", "loop#vk_a#hash"}
    for update in updates:
        text = update["UpdateExpression"] + " " + update.get("ConditionExpression", "")
        pk = update["Key"]["pk"]["S"]
        assert set(update.get("ExpressionAttributeValues", {})) == _placeholders(text, ":"), pk
        assert set(update.get("ExpressionAttributeNames", {})) == _placeholders(text, "#"), pk


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


def test_settle_charges_above_the_reservation(store: BucketStore, ledger: LedgerRepository, call_log: CallLog,
                                              ddb: Any, clock: FakeClock) -> None:
    """A call that cost more than its worst-case estimate is charged in full: settle ADDs the difference."""
    cells = three_scopes()
    admission = store.reserve("req-1", cells, [], RES)
    call_log.clear()
    used = {c.key: 2 * c.inc + 7 for c in cells}
    assert store.settle(admission, used, ledger.item(ledger_entry("req-1", "0.10"))) is True
    updates = [op["Update"] for op in call_log.params[0]["TransactItems"] if "Update" in op]
    assert [u["ExpressionAttributeValues"][":d0"] for u in updates] == [{"N": str(c.inc + 7)} for c in cells]
    for cell in cells:
        assert tat_of(ddb, cell.pk) == clock.us + 2 * cell.inc + 7
        assert admission.tats[cell.key] == clock.us + 2 * cell.inc + 7
        assert reservations(item_of(ddb, cell.pk)) == []
    # the next admission starts from the charged level
    clock.advance(1)
    later = store.reserve("req-2", cells, [], RES)
    assert later.attempts == 1
    for cell in cells:
        assert tat_of(ddb, cell.pk) == clock.us - gcra.MICROS + 3 * cell.inc + 7


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
    cap = cap_cell("vk_a", "gpt-4o", 50, clock.us)
    set_tat(ddb, budget.pk, clock.us + 12_345_678_901)  # in debt: the refund must land exactly
    set_tat(ddb, cap.pk, 3, attr="n")  # three calls already today
    admission = store.reserve("req-1", [budget, cap], [], RES)
    assert tat_of(ddb, cap.pk, "n") == 4
    before = {budget.pk: item_of(ddb, budget.pk), cap.pk: item_of(ddb, cap.pk)}
    clock.advance(2)  # the provider took 2 s to fail
    assert store.settle(admission, {}, ledger.item(ledger_entry("req-1", "0", status="provider_error",
                                                                http_status=503)))
    after = {budget.pk: item_of(ddb, budget.pk), cap.pk: item_of(ddb, cap.pk)}
    assert tat_of(ddb, budget.pk) == clock.us - 2 * gcra.MICROS + 12_345_678_901
    assert tat_of(ddb, cap.pk, "n") == 3  # ADD -1: the failed call does not count
    for pk in (budget.pk, cap.pk):  # only the reservation and the amount changed
        assert reservations(after[pk]) == []
        assert {a: v for a, v in after[pk].items() if a not in ("tat", "n")} == {
            a: v for a, v in before[pk].items() if a not in ("tat", "n", "r_req-1")}


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


@pytest.mark.parametrize("repeats", [3, 7])
def test_half_open_leaves_room_for_exactly_one_probe(store: BucketStore, ddb: Any, clock: FakeClock,
                                                     repeats: int) -> None:
    window = 300 * gcra.MICROS
    loop = BudgetGovernor._count_cell("loop#vk_a#h", "tat", repeats, window, "loop", "key:vk_a", ttl_s=600)
    for i in range(repeats):
        store.reserve(f"req-{i}", [loop], ["breaker#key#vk_a"], RES)
    with pytest.raises(Refused) as refused:
        store.reserve("req-last", [loop], ["breaker#key#vk_a"], RES)
    assert refused.value.refusal.reason == "loop"
    open_until = store.trip("breaker#key#vk_a", 60 * gcra.MICROS, loop)
    assert open_until == clock.us + 60 * gcra.MICROS
    clock.advance(59)
    with pytest.raises(Refused) as still_open:
        store.reserve("req-4", [loop], ["breaker#key#vk_a"], RES)
    assert still_open.value.refusal.reason == "circuit_open"
    assert still_open.value.refusal.retry_after_us == 1 * gcra.MICROS
    clock.advance(1)
    store.reserve("req-5", [loop], ["breaker#key#vk_a"], RES)  # the probe
    with pytest.raises(Refused) as again:
        store.reserve("req-6", [loop], ["breaker#key#vk_a"], RES)
    assert again.value.refusal.reason == "loop"


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
