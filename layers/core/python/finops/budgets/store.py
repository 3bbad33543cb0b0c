"""GCRA buckets in DynamoDB: reserve before the provider call, settle after, both in one round trip.

Items in the budgets table (hash key ``pk``):

- ``bucket#<scope>``: a daily dollar budget, attribute ``tat``; in-flight reservations as ``r_<request id>``.
- ``cap#<key id>#<model>``: requests per day for one model.
- ``breaker#<scope>``: the runaway-loop breaker: ``open_until`` plus rolling ``req``/``usd`` cells.
- ``loop#<key id>#<prompt hash>``: repeats of one prompt in the breaker window (expires via TTL).

Admission is one conditional ``UpdateItem`` (one item) or one ``TransactWriteItems`` (several), each item's
update guarded by GCRA conditions; a failed condition returns the item (``ALL_OLD``), which tells whether
the call is refused or the case was guessed wrong (then it retries with the right case). Settlement is one
``TransactWriteItems``: the ledger row (idempotent ``Put``) plus each bucket's refund of the unused part.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from . import gcra
from .gcra import Case
from .table import TTL_ATTRIBUTE

logger = Logger(child=True)
MAX_ATTEMPTS = 6
RESERVATION_PREFIX = "r_"


class StoreUnavailable(Exception):
    """The budget store could not be reached or kept throttling."""


@dataclass(frozen=True)
class Cell:
    """One limit on attribute ``attr`` of item ``pk``.

    A GCRA bucket (``window_end_us`` None): ``inc`` is time units and the attribute a TAT. A fixed-window
    counter (``window_end_us`` set, e.g. requests per UTC day): ``inc`` is a count, the attribute the count
    so far, and the item is a new one each window.
    """

    pk: str
    attr: str
    inc: int
    period_us: int  # GCRA: the largest backlog allowed; counter: unused
    capacity: Decimal
    kind: str  # budget | cap | breaker_requests | breaker_spend | loop
    scope: str  # e.g. "key:vk_1", "user:alice"
    refundable: bool  # settle returns the unused part; a failed call returns all of it
    window_end_us: int | None = None
    ttl_s: int | None = None  # the item expires (DynamoDB TTL) this long after its last write

    @property
    def key(self) -> tuple[str, str]:
        return (self.pk, self.attr)

    @property
    def is_counter(self) -> bool:
        return self.window_end_us is not None

    def fits_ever(self) -> bool:
        return self.inc <= (self.capacity if self.is_counter else self.period_us)

    def decide(self, stored: int | None, now: int) -> gcra.Decision:
        """Would this call fit, given the attribute's stored value?"""
        if self.is_counter:
            assert self.window_end_us is not None
            count = stored or 0
            if count + self.inc <= self.capacity:
                return gcra.Decision(True, Case.FRESH, count + self.inc, None)
            return gcra.Decision(False, Case.FRESH, None, max(0, self.window_end_us - now))
        return gcra.decide(stored, now, self.inc, self.period_us)


@dataclass(frozen=True)
class Refusal:
    cell: Cell | None
    reason: str  # budget | cap | breaker_requests | breaker_spend | loop | circuit_open
    retry_after_us: int | None
    state: dict[str, Any] = field(default_factory=dict)


BREAKER_REASONS = ("circuit_open", "loop", "breaker_requests", "breaker_spend")


def most_binding(refusals: list[Refusal]) -> Refusal:
    """The refusal to report: a breaker first (it must trip), else the one with the longest wait, so that
    ``Retry-After`` covers every exhausted scope (a wait of None, "never", is the longest)."""
    breakers = [r for r in refusals if r.reason in BREAKER_REASONS]
    if breakers:
        return min(breakers, key=lambda r: BREAKER_REASONS.index(r.reason))
    return max(refusals, key=lambda r: float("inf") if r.retry_after_us is None else r.retry_after_us)


class Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


@dataclass
class Admission:
    request_id: str
    now: int
    cells: list[Cell]
    tats: dict[tuple[str, str], int]  # TAT after admission: exact where known, else a lower bound
    exact: set[tuple[str, str]]
    attempts: int


def request_token(text: str) -> str:
    """A TransactWriteItems ClientRequestToken (<= 36 chars): botocore's own retries of the same
    transaction are then applied once by DynamoDB."""
    return hashlib.sha256(text.encode()).hexdigest()[:36]


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _cancellation_reasons(exc: ClientError) -> list[dict[str, Any]]:
    return list(exc.response.get("CancellationReasons") or [])


def _tat(item: dict[str, Any] | None, attr: str) -> int | None:
    if not item or attr not in item:
        return None
    return int(item[attr]["N"])


class BucketStore:
    def __init__(self, client: Any, table: str, *, ledger_table: str,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.table = table
        self.ledger_table = ledger_table
        self.clock = clock
        self.sleep = sleep
        self._estimates: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def now_us(self) -> int:
        return int(self.clock() * gcra.MICROS)

    # --- building writes ------------------------------------------------------------------------------

    def _guess(self, cell: Cell, now: int) -> Case:
        with self._lock:
            tat = self._estimates.get(cell.key)
        return Case.DEBT if tat is not None and tat > now else Case.FRESH

    def _update(self, pk: str, cells: list[Cell], cases: dict[tuple[str, str], Case], now: int,
                breaker: bool, reservation: str | None, request_id: str) -> dict[str, Any]:
        sets, adds, conds = [], [], []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":now": _n(now)}
        for i, cell in enumerate(cells):
            a = f"#a{i}"
            names[a] = cell.attr
            if cell.is_counter:
                adds.append(f"{a} :i{i}")
                values[f":i{i}"] = _n(cell.inc)
                values[f":l{i}"] = _n(int(cell.capacity) - cell.inc)
                conds.append(f"(attribute_not_exists({a}) OR {a} <= :l{i})")
            elif cases[cell.key] is Case.FRESH:
                sets.append(f"{a} = :t{i}")
                values[f":t{i}"] = _n(now + cell.inc)
                conds.append(f"(attribute_not_exists({a}) OR {a} <= :now)")
            else:
                sets.append(f"{a} = {a} + :i{i}")
                values[f":i{i}"] = _n(cell.inc)
                values[f":l{i}"] = _n(gcra.debt_limit(now, cell.inc, cell.period_us))
                conds.append(f"({a} > :now AND {a} <= :l{i})")
        if breaker:
            names["#open"] = "open_until"
            conds.append("(attribute_not_exists(#open) OR #open <= :now)")
        if reservation is not None:
            # Idempotent: a retried write (the first attempt applied, its answer lost) finds its own marker.
            names["#r"] = RESERVATION_PREFIX + request_id
            values[":r"] = {"S": reservation}
            sets.append("#r = :r")
            conds.append("attribute_not_exists(#r)")
        ttl = max((c.ttl_s for c in cells if c.ttl_s), default=None)
        if ttl:
            names["#exp"] = TTL_ATTRIBUTE
            values[":exp"] = _n(now // gcra.MICROS + ttl)
            sets.append("#exp = :exp")
        if not sets and not adds:  # a breaker item with no rolling cells: only its precondition matters
            names["#seen"] = "seen_at"
            sets.append("#seen = :now")
        expression = " ".join(part for part in (
            "SET " + ", ".join(sets) if sets else "", "ADD " + ", ".join(adds) if adds else "") if part)
        condition = " AND ".join(conds)
        if ":now" not in expression and ":now" not in condition:  # DynamoDB rejects unused values
            del values[":now"]
        return {
            "TableName": self.table,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    # --- admission ------------------------------------------------------------------------------------

    def reserve(self, request_id: str, cells: list[Cell], breaker_pks: Iterable[str],
                reservation: dict[str, Any]) -> Admission:
        """Reserve every cell atomically, or raise :class:`Refused` naming the cell that does not fit."""
        breaker_pks = set(breaker_pks)
        by_item: dict[str, list[Cell]] = {}
        for cell in cells:
            by_item.setdefault(cell.pk, []).append(cell)
        for pk in breaker_pks:
            by_item.setdefault(pk, [])
        for cell in cells:
            if not cell.fits_ever():  # larger than the whole limit: no state or wait lets it in
                raise Refused(Refusal(cell, "too_large", None))
        attempt = 0
        while True:
            attempt += 1
            now = self.now_us()
            cases = {c.key: Case.FRESH if c.is_counter else self._guess(c, now) for c in cells}
            ops = []
            for pk, item_cells in by_item.items():
                refundable = [c for c in item_cells if c.refundable]
                payload = None
                if refundable:
                    payload = json.dumps({**reservation, "cells": {c.attr: c.inc for c in refundable}},
                                         separators=(",", ":"), default=str)
                ops.append(self._update(pk, item_cells, cases, now, pk in breaker_pks, payload, request_id))
            try:
                new_items = self._write(ops, token=f"reserve:{request_id}:{attempt}")
            except ClientError as exc:
                failed = self._failed_items(exc, ops)
                if failed is None:  # not a condition failure: conflict or throttling
                    if attempt >= MAX_ATTEMPTS:
                        self._release_quietly(request_id, cells)
                        raise StoreUnavailable(str(exc)) from exc
                    self._backoff(attempt)
                    continue
                marker = RESERVATION_PREFIX + request_id
                if any(marker in item for item in failed.values()):
                    # An earlier attempt of ours was applied (transactions are all-or-nothing) and only its
                    # answer was lost: the reservation stands.
                    return self._admitted(request_id, cells, cases, now, failed, attempt)
                self._judge(failed, by_item, breaker_pks, cells, now)
                if attempt >= MAX_ATTEMPTS:
                    raise StoreUnavailable("budget store: too much contention") from exc
                continue
            except BotoCoreError as exc:
                self._release_quietly(request_id, cells)
                raise StoreUnavailable(str(exc)) from exc
            return self._admitted(request_id, cells, cases, now, new_items, attempt)

    def _release_quietly(self, request_id: str, cells: list[Cell]) -> None:
        """After a failed reservation whose outcome is unknown (timeout), remove it if it was applied."""
        by_item: dict[str, dict[str, int]] = {}
        for cell in cells:
            if cell.refundable:
                by_item.setdefault(cell.pk, {})[cell.attr] = cell.inc
        for pk, refund in by_item.items():
            try:
                self.resolve_reservation(pk, request_id, refund)
            except (ClientError, BotoCoreError):
                logger.warning("could not release an unknown reservation; the reconciler will",
                               extra={"pk": pk, "request_id": request_id})

    def _write(self, ops: list[dict[str, Any]], token: str) -> dict[str, dict[str, Any]]:
        """One UpdateItem (returns the new item) or one transaction. Returns new items where known."""
        if len(ops) == 1:
            op = ops[0]
            response = self.client.update_item(**op, ReturnValues="ALL_NEW",
                                               ReturnValuesOnConditionCheckFailure="ALL_OLD")
            return {op["Key"]["pk"]["S"]: response.get("Attributes", {})}
        self.client.transact_write_items(ClientRequestToken=request_token(token), TransactItems=[
            {"Update": {**op, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}} for op in ops])
        return {}

    @staticmethod
    def _failed_items(exc: ClientError, ops: list[dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ConditionalCheckFailedException":
            return {ops[0]["Key"]["pk"]["S"]: exc.response.get("Item") or {}}
        if code == "TransactionCanceledException":
            reasons = _cancellation_reasons(exc)
            failed = {ops[i]["Key"]["pk"]["S"]: r.get("Item") or {}
                      for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"}
            return failed or None
        return None

    def _judge(self, failed: dict[str, dict[str, Any]], by_item: dict[str, list[Cell]],
               breaker_pks: set[str], cells: list[Cell], now: int) -> None:
        """Read the returned items: raise the refusal if one is real, else learn the state and retry."""
        refusals: list[Refusal] = []
        for pk, item in failed.items():
            if pk in breaker_pks:
                open_until = _tat(item, "open_until")
                if open_until is not None and open_until > now:
                    refusals.append(Refusal(None, "circuit_open", open_until - now,
                                            state={"pk": pk, "trips": _tat(item, "trips") or 0}))
                    continue
            for cell in by_item.get(pk, []):
                tat = _tat(item, cell.attr)
                with self._lock:
                    if tat is None:
                        self._estimates.pop(cell.key, None)
                    else:
                        self._estimates[cell.key] = tat
                decision = cell.decide(tat, now)
                if not decision.allowed:
                    refusals.append(Refusal(cell, cell.kind, decision.retry_after_us, state={"tat": tat}))
        if refusals:
            raise Refused(most_binding(refusals))

    def _admitted(self, request_id: str, cells: list[Cell], cases: dict[tuple[str, str], Case], now: int,
                  new_items: dict[str, dict[str, Any]], attempts: int) -> Admission:
        tats: dict[tuple[str, str], int] = {}
        exact: set[tuple[str, str]] = set()
        with self._lock:
            for cell in cells:
                returned = _tat(new_items.get(cell.pk), cell.attr)
                if returned is not None:
                    tats[cell.key] = returned
                    exact.add(cell.key)
                elif cell.is_counter:  # at least this call; the exact count came back only without a transaction
                    tats[cell.key] = max(self._estimates.get(cell.key, 0), 0) + cell.inc
                elif cases[cell.key] is Case.FRESH:
                    tats[cell.key] = now + cell.inc
                    exact.add(cell.key)
                else:  # debt: at least our last estimate plus this call
                    tats[cell.key] = max(self._estimates.get(cell.key, now), now) + cell.inc
                self._estimates[cell.key] = tats[cell.key]
        return Admission(request_id, now, cells, tats, exact, attempts)

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(0.2, 0.005 * 2**attempt) * random.random())

    # --- settlement -----------------------------------------------------------------------------------

    def settle(self, admission: Admission, used: dict[tuple[str, str], int],
               ledger_item: dict[str, Any] | None) -> bool:
        """Refund each refundable cell's unused time and write the ledger row, in one transaction.

        ``used`` maps a cell key to the units actually consumed (absent: nothing consumed); more than
        reserved is charged too (the estimate before the call can be short, e.g. tools or images). Returns
        False if the ledger row already existed or the reconciler already took the reservation.
        """
        ops: list[dict[str, Any]] = []
        if ledger_item is not None:
            ops.append({"Put": {"TableName": self.ledger_table, "Item": ledger_item,
                                "ConditionExpression": "attribute_not_exists(request_id)"}})
        by_item: dict[str, list[Cell]] = {}
        for cell in admission.cells:
            if cell.refundable:
                by_item.setdefault(cell.pk, []).append(cell)
        for pk, item_cells in by_item.items():
            names = {"#r": RESERVATION_PREFIX + admission.request_id}
            values: dict[str, Any] = {}
            adds = []
            for i, cell in enumerate(item_cells):
                refund = cell.inc - used.get(cell.key, 0)  # negative: the call cost more than reserved
                if refund:
                    names[f"#a{i}"] = cell.attr
                    values[f":d{i}"] = _n(-refund)
                    adds.append(f"#a{i} :d{i}")
            update = {"TableName": self.table, "Key": {"pk": {"S": pk}},
                      "UpdateExpression": ("ADD " + ", ".join(adds) + " " if adds else "") + "REMOVE #r",
                      "ConditionExpression": "attribute_exists(#r)",
                      "ExpressionAttributeNames": names}
            if values:
                update["ExpressionAttributeValues"] = values
            ops.append({"Update": update})
        if not ops:
            return True
        written = True
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                if len(ops) == 1 and "Put" in ops[0]:
                    put = ops[0]["Put"]
                    self.client.put_item(**put)
                else:
                    self.client.transact_write_items(
                        ClientRequestToken=request_token(f"settle:{admission.request_id}:{attempt}"),
                        TransactItems=ops)
                self._after_settle(admission, used)
                return written
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "ConditionalCheckFailedException":
                    return False
                reasons = _cancellation_reasons(exc)
                failed = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
                if code == "TransactionCanceledException" and failed:
                    if ledger_item is not None and failed == [0] and len(ops) > 1:
                        # The row already exists (a replayed request): still release this reservation.
                        ops, ledger_item, written = ops[1:], None, False
                        continue
                    return False
                if attempt == MAX_ATTEMPTS:
                    raise StoreUnavailable(str(exc)) from exc
                self._backoff(attempt)
            except BotoCoreError as exc:
                raise StoreUnavailable(str(exc)) from exc
        return False  # pragma: no cover - loop always returns or raises

    def _after_settle(self, admission: Admission, used: dict[tuple[str, str], int]) -> None:
        with self._lock:
            for cell in admission.cells:
                if cell.refundable and cell.key in admission.tats:
                    refund = cell.inc - used.get(cell.key, 0)
                    admission.tats[cell.key] -= refund
                    self._estimates[cell.key] = admission.tats[cell.key]

    # --- breaker --------------------------------------------------------------------------------------

    def trip(self, pk: str, cooldown_us: int, cell: Cell | None = None) -> int:
        """Open the breaker item ``pk`` until now + cooldown; returns open_until.

        Half-open: the cell that tripped it is set so that, when the cooldown ends, it has room for exactly
        one more call. A probe that behaves lets the cell drain; a loop that continues re-trips at once.
        """
        now = self.now_us()
        open_until = now + cooldown_us
        breaker = {"TableName": self.table, "Key": {"pk": {"S": pk}},
                   "UpdateExpression": "SET open_until = :o, tripped_at = :n ADD trips :one",
                   "ExpressionAttributeValues": {":o": _n(open_until), ":n": _n(now), ":one": _n(1)}}
        ops = [breaker]
        if cell is not None:
            half_open = {":h": _n(open_until + cell.period_us - cell.inc)}
            if cell.pk == pk:
                breaker["UpdateExpression"] = "SET open_until = :o, tripped_at = :n, #c = :h ADD trips :one"
                breaker["ExpressionAttributeNames"] = {"#c": cell.attr}
                breaker["ExpressionAttributeValues"].update(half_open)
            else:
                ops.append({"TableName": self.table, "Key": {"pk": {"S": cell.pk}},
                            "UpdateExpression": "SET #c = :h", "ExpressionAttributeNames": {"#c": cell.attr},
                            "ExpressionAttributeValues": half_open})
        try:
            if len(ops) == 1:
                self.client.update_item(**ops[0])
            else:
                self.client.transact_write_items(TransactItems=[{"Update": op} for op in ops])
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        with self._lock:
            if cell is not None:
                self._estimates[cell.key] = open_until + cell.period_us - cell.inc
        return open_until

    # --- reconciliation -------------------------------------------------------------------------------

    def reservations(self, expired_by: float = math.inf) -> Iterable[tuple[str, str, dict[str, Any]]]:
        """(pk, request id, reservation) for every reservation held, or only those expired by ``expired_by``
        (epoch seconds)."""
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table):
            for item in page.get("Items", []):
                for attr, value in item.items():
                    if not attr.startswith(RESERVATION_PREFIX):
                        continue
                    payload = json.loads(value["S"])
                    if float(payload.get("exp", 0)) <= expired_by:
                        yield item["pk"]["S"], attr[len(RESERVATION_PREFIX):], payload

    def resolve_reservation(self, pk: str, request_id: str, refund: dict[str, int]) -> bool:
        """Remove one reservation, refunding ``refund`` (attr -> time units). False if already gone."""
        names = {"#r": RESERVATION_PREFIX + request_id}
        values: dict[str, Any] = {}
        adds = []
        for i, (attr, inc) in enumerate(sorted(refund.items())):
            if inc:
                names[f"#a{i}"] = attr
                values[f":d{i}"] = _n(-inc)
                adds.append(f"#a{i} :d{i}")
        update: dict[str, Any] = {
            "TableName": self.table, "Key": {"pk": {"S": pk}},
            "UpdateExpression": ("ADD " + ", ".join(adds) + " " if adds else "") + "REMOVE #r",
            "ConditionExpression": "attribute_exists(#r)", "ExpressionAttributeNames": names}
        if values:
            update["ExpressionAttributeValues"] = values
        try:
            self.client.update_item(**update)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    # --- reading state (CLI, tests) -------------------------------------------------------------------

    def read(self, pk: str) -> dict[str, Any]:
        item = self.client.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return item.get("Item", {})
