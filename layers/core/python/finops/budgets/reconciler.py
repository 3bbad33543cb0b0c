"""Reservations whose function died before settling: book them (default) or release them.

Every reservation carries an expiry. After it passes, the scheduled reconciler either
- ``book``s it: the bucket keeps the worst-case amount and a ledger row records it (status ``reconciled``,
  cost = the reserved worst case, since the provider may have been paid), or
- ``release``s it: the bucket gets the amount back and the ledger row records cost 0.
Either way the row is written once (idempotent on request id) and the reservation is removed, so no
reservation outlives ``reservation_ttl_seconds`` by more than one reconciler period.

A call whose settle write failed (budget store throttled or down) logged its row as ``ledger_spill`` and still
holds its reservation. :meth:`Reconciler.restore` takes those rows (a CloudWatch Logs subscription delivers
them): it writes each row and settles the reservations of its call with the row's cost, as the failed write
would have. A row restored after its reservation expired finds the reconciler's row: the ledger is immutable,
so that one stands. Conversely, a scheduled run that finds a reservation whose call already has a row it did
not write (restored, its settle not yet done) settles it with that row's cost too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from ..ledger.entry import LedgerEntry
from ..ledger.repository import LedgerRepository
from ..tags import UNALLOCATED
from .governor import CAP_PREFIX, cost_shares, extension_number, units_used
from .store import BucketStore

logger = Logger(child=True)


@dataclass
class ReconcileSummary:
    booked: int = 0
    released: int = 0
    already_settled: int = 0


@dataclass
class RestoreSummary:
    restored: int = 0  # spilled rows written to the ledger
    present: int = 0  # spilled rows the ledger already had (written after all, or booked by the reconciler)
    settled: int = 0  # reservations settled with a restored row's cost


def _entry(request_id: str, payload: dict[str, Any], policy: str, price_version: str) -> LedgerEntry:
    booked = policy == "book"
    ts = datetime.fromisoformat(payload["ts"]) if payload.get("ts") else datetime.now(UTC)
    return LedgerEntry(
        request_id=request_id, ts=ts, project_id=payload.get("project_id", UNALLOCATED),
        user_id=payload.get("user_id", UNALLOCATED), environment=payload.get("environment", UNALLOCATED),
        department_id=payload.get("department_id", UNALLOCATED), requested_model=payload.get("model", "unknown"),
        model=payload.get("model", "unknown"), provider=payload.get("provider", "unknown"),
        usage_source="reservation", cost_usd=Decimal(payload.get("worst_usd", "0")) if booked else Decimal(0),
        reserved_usd=Decimal(payload.get("worst_usd", "0")), price_version=price_version,
        status="reconciled", http_status=0, error_code="booked_unsettled" if booked else "released_unsettled",
        key_id=payload.get("key_id"), tier=payload.get("tier"),
        # the call it belongs to, as for its attempts' rows (a stream's extensions ``<id>+<n>`` included)
        parent_request_id=payload.get("parent_request_id"))


class Reconciler:
    def __init__(self, store: BucketStore, ledger: LedgerRepository, policy: str, price_version: str) -> None:
        self.store = store
        self.ledger = ledger
        self.policy = policy
        self.price_version = price_version

    def run(self, now_s: float) -> ReconcileSummary:
        summary = ReconcileSummary()
        seen: dict[str, bool] = {}  # request id -> this reservation is ours to book or release
        rows: dict[str, LedgerEntry] = {}  # request id -> its row, written by someone else
        for pk, request_id, payload in list(self.store.reservations(expired_by=now_s)):
            if request_id not in seen:
                written = self.ledger.append(_entry(request_id, payload, self.policy, self.price_version))
                existing = None if written else self.ledger.get(request_id)
                # A row from an earlier reconciler run means: carry on with the same policy.
                seen[request_id] = written or (existing is not None and existing.status == "reconciled")
                if not seen[request_id] and existing is not None:
                    rows[request_id] = existing
            if not seen[request_id]:
                # A row exists that the reconciler did not write (restored from the spill log, its settle still
                # to come): settle the reservation with the row's cost, as that settle would.
                row = rows.get(request_id)
                if row is None or not self._settle(row, {request_id: [(pk, payload)]}):
                    self.store.resolve_reservation(pk, request_id, {})
                summary.already_settled += 1
                continue
            refund = {attr: int(inc) for attr, inc in payload.get("cells", {}).items()}
            if self.store.resolve_reservation(pk, request_id, refund if self.policy == "release" else {}):
                if self.policy == "release":
                    summary.released += 1
                else:
                    summary.booked += 1
            logger.info("reservation reconciled", extra={"pk": pk, "request_id": request_id,
                                                         "policy": self.policy})
        return summary

    def restore(self, entries: Iterable[LedgerEntry]) -> RestoreSummary:
        """Write spilled rows back (idempotent) and settle the reservations their calls still hold."""
        summary = RestoreSummary()
        entries = list(entries)
        if not entries:
            return summary
        held: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # request id -> (item, reservation), expired or not
        for pk, request_id, payload in self.store.reservations():
            held.setdefault(request_id, []).append((pk, payload))
        for entry in entries:
            row: LedgerEntry | None = entry
            if self.ledger.append(entry):
                summary.restored += 1
            else:
                summary.present += 1
                row = self.ledger.get(entry.request_id)
            if row is not None and row.status != "reconciled":  # a reconciler row settled its reservation itself
                summary.settled += self._settle(row, held)
        logger.info("spilled rows restored", extra=summary.__dict__)
        return summary

    def _settle(self, row: LedgerEntry, held: dict[str, list[tuple[str, dict[str, Any]]]]) -> int:
        """Settle ``row``'s reservation and its stream extensions (``<id>+<n>``) as the gateway would have
        (:meth:`BudgetGovernor.settle_all`): each takes its share of the cost in turn, the first any overrun."""
        numbered = ((extension_number(row.request_id, rid), rid) for rid in held)
        extensions = sorted((n, rid) for n, rid in numbered if n is not None)
        tickets = [rid for rid in (row.request_id, *(rid for _, rid in extensions)) if rid in held]
        if not tickets:
            return 0
        worst = [Decimal(str(held[rid][0][1].get("worst_usd", "0"))) for rid in tickets]
        shares = cost_shares(worst, row.cost_usd)
        succeeded = row.http_status == 200  # the gateway settles a failed attempt with nothing used
        settled = 0
        for rid, reserved, share in zip(tickets, worst, shares, strict=True):
            for pk, payload in held[rid]:
                counted = pk.startswith(CAP_PREFIX)  # a request cap counts the call
                refund = {attr: int(inc) - units_used(int(inc), counted, reserved, share, succeeded)
                          for attr, inc in payload.get("cells", {}).items()}
                settled += self.store.resolve_reservation(pk, rid, refund)
        return settled
