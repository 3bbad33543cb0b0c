"""Admission control for one call: which buckets it is charged to, the 429s, tax mode and the breaker.

``admit`` reserves the call's worst-case cost in every bucket that applies (key/tier, user, project,
department, per-model request cap, breaker cells) in one write; ``settle`` returns the unused part and
writes the ledger row in one write. Pure planning lives here; DynamoDB lives in :mod:`store`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from ..errors import BudgetExceeded, CircuitOpen, ModelNotAllowed, RequestCapExceeded, ServiceUnavailable
from ..keys.service import KeyRecord
from ..pricing import format_usd
from ..tags import CostTags
from . import gcra
from .alerts import AlertPublisher
from .policy import BudgetPolicy, ScopeBudget, TierPolicy
from .store import Admission, BucketStore, Cell, Refusal, Refused, StoreUnavailable

logger = Logger(child=True)
ZERO = Decimal(0)


def prompt_hash(model: str, messages: list[dict[str, Any]]) -> str:
    canonical = json.dumps({"model": model, "messages": messages}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _remaining(cell: Cell, state: int | None, now: int) -> Decimal:
    if cell.is_counter:
        return max(ZERO, cell.capacity - (state or 0))
    return gcra.remaining(state, now, cell.capacity, cell.period_us)


CAP_PREFIX = "cap#"  # request-cap items: a reserved request is counted, whatever the call cost
EXTENSION_SEP = "+"  # a stream's n-th reservation extension is held as ``<request id>+<n>``


def extension_id(request_id: str, n: int) -> str:
    """The id a stream's ``n``-th (from 1) reservation extension is admitted and held under."""
    return f"{request_id}{EXTENSION_SEP}{n}"


def extension_number(request_id: str, held_id: str) -> int | None:
    """``n`` when ``held_id`` is ``request_id``'s ``n``-th extension (:func:`extension_id`), else None."""
    prefix = request_id + EXTENSION_SEP
    if not held_id.startswith(prefix):
        return None
    n = held_id[len(prefix):]
    return int(n) if n.isdigit() else None


def units_used(inc: int, counted: bool, worst: Decimal, actual: Decimal, succeeded: bool) -> int:
    """Units a reserved cell of ``inc`` units consumed, for a call reserved at ``worst`` that cost ``actual``:
    nothing if it failed; all of it for a counted cell (a request cap counts the call); otherwise the share
    actual/worst, rounded up (above the reservation when the call cost more)."""
    if not succeeded:
        return 0
    if counted:
        return inc
    if worst <= 0:
        return 0
    return int((Decimal(inc) * actual / worst).to_integral_value(rounding="ROUND_CEILING"))


def cost_shares(worst: Sequence[Decimal], actual: Decimal) -> list[Decimal]:
    """A stream's cost split over its reservation and its extensions (reserved at ``worst``): each covers the
    cost in turn, the first also any overrun."""
    remaining, shares = actual, []
    for reserved in worst:
        share = min(remaining, reserved)
        shares.append(share)
        remaining -= share
    shares[0] += remaining
    return shares


def utc_day(now_us: int) -> tuple[str, int]:
    """The UTC day containing ``now_us`` and the microsecond at which it ends."""
    day_start = now_us - now_us % gcra.DAY_US
    return datetime.fromtimestamp(day_start / gcra.MICROS, UTC).strftime("%Y-%m-%d"), day_start + gcra.DAY_US


@dataclass(frozen=True)
class TaxedScope:
    cell: Cell
    daily_usd: Decimal
    multiplier: Decimal


@dataclass
class Ticket:
    """What admission reserved, carried to settlement."""

    request_id: str
    worst_usd: Decimal
    admission: Admission | None
    bypassed: bool = False
    taxed: list[TaxedScope] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        """The rate-limit headers as of admission (computed on demand: the gateway answers with the ones
        returned by settlement)."""
        if self.admission is None:
            return {}
        return BudgetGovernor.rate_headers(self.admission.now, self.admission.cells, self.admission.tats)

    def used(self, cell: Cell, actual: Decimal, succeeded: bool) -> int:
        """Units ``cell`` consumed for a call that cost ``actual`` (0 if it failed)."""
        return units_used(cell.inc, cell.is_counter or cell.kind == "cap", self.worst_usd, actual, succeeded)

    def tax_on(self, actual: Decimal) -> Decimal:
        """Tax-mode surcharge: the part of ``actual`` that landed above a taxed scope's daily budget, times
        (multiplier - 1); the largest over the scopes charged."""
        if self.admission is None:
            return ZERO
        tax = ZERO
        for taxed in self.taxed:
            cell = taxed.cell
            backlog = self.admission.tats[cell.key] - self.admission.now - cell.inc + self.used(cell, actual, True)
            over = gcra.level(backlog + self.admission.now, self.admission.now, taxed.daily_usd, gcra.DAY_US)
            over -= taxed.daily_usd
            tax = max(tax, min(actual, max(ZERO, over)) * (taxed.multiplier - 1))
        return tax


class BudgetGovernor:
    def __init__(self, policy: BudgetPolicy, store: BucketStore, alerts: AlertPublisher | None = None) -> None:
        self.policy = policy
        self.store = store
        self.alerts = alerts

    # --- planning -------------------------------------------------------------------------------------

    def tier(self, key: KeyRecord) -> TierPolicy:
        return self.policy.tier(key.tier)

    def check_model(self, key: KeyRecord, model: str) -> None:
        if not self.tier(key).allows(model):
            raise ModelNotAllowed(f"The `{key.tier}` tier may not use `{model}`.", param="model")

    def _scopes(self, key: KeyRecord, tags: CostTags) -> list[tuple[str, ScopeBudget]]:
        scopes = [(f"key:{key.key_id}", self.tier(key).budget)]
        for kind, scope_id, budget in (
            ("user", tags.user_id, self.policy.user_budget(tags.user_id)),
            ("project", tags.project_id, self.policy.project_budget(tags.project_id)),
            ("department", tags.department_id, self.policy.department_budget(tags.department_id)),
        ):
            if budget is not None:
                scopes.append((f"{kind}:{scope_id}", budget))
        return [(s, b) for s, b in scopes if b.daily_usd is not None]

    @staticmethod
    def _budget_cell(scope: str, budget: ScopeBudget, worst: Decimal) -> Cell:
        assert budget.daily_usd is not None
        daily = budget.daily_usd
        hard = budget.tax.ceiling_usd if budget.tax else daily
        period = gcra.increment(hard, daily, gcra.DAY_US)  # max backlog: the hard ceiling at budget/day
        return Cell(pk=f"bucket#{scope.replace(':', '#', 1)}", attr="tat",
                    inc=gcra.increment(worst, daily, gcra.DAY_US), period_us=period, capacity=hard,
                    kind="budget", scope=scope, refundable=True)

    @staticmethod
    def _count_cell(pk: str, attr: str, limit: int, window_us: int, kind: str, scope: str,
                    ttl_s: int | None = None) -> Cell:
        """``limit`` calls per rolling ``window_us``: each call is exactly 1/limit of the window."""
        inc = -(-window_us // limit)
        return Cell(pk=pk, attr=attr, inc=inc, period_us=inc * limit, capacity=Decimal(limit), kind=kind,
                    scope=scope, refundable=False, ttl_s=ttl_s)

    def plan(self, key: KeyRecord, tags: CostTags, model: str, worst: Decimal, loop_hash: str | None,
             now_us: int) -> tuple[list[Cell], list[str], dict[str, ScopeBudget]]:
        tier = self.tier(key)
        budgets = dict(self._scopes(key, tags))
        cells = [self._budget_cell(scope, budget, worst) for scope, budget in budgets.items()]
        cap = tier.request_caps.get(model)
        if cap:  # requests per UTC calendar day: a counter item per day, expiring after two
            day, window_end = utc_day(now_us)
            cells.append(Cell(pk=f"{CAP_PREFIX}{key.key_id}#{model}#{day}", attr="n", inc=1, period_us=gcra.DAY_US,
                              capacity=Decimal(cap), kind="cap", scope=f"key:{key.key_id}:{model}", refundable=True,
                              window_end_us=window_end, ttl_s=2 * 86_400))
        breaker = tier.breaker
        window = breaker.window_seconds * gcra.MICROS
        breaker_pks = []
        for scope in (f"key:{key.key_id}", f"user:{tags.user_id}", f"project:{tags.project_id}"):
            pk = "breaker#" + scope.replace(":", "#", 1)
            breaker_pks.append(pk)
            if breaker.max_requests:
                cells.append(self._count_cell(pk, "req", breaker.max_requests, window, "breaker_requests", scope))
            if breaker.max_spend_usd:
                # One call larger than the whole threshold fills the window rather than tripping on its own.
                inc = min(window, gcra.increment(worst, breaker.max_spend_usd, window))
                cells.append(Cell(pk=pk, attr="usd", inc=inc, period_us=window, capacity=breaker.max_spend_usd,
                                  kind="breaker_spend", scope=scope, refundable=True))
        if breaker.max_repeats and loop_hash:
            cells.append(self._count_cell(f"loop#{key.key_id}#{loop_hash}", "tat", breaker.max_repeats, window,
                                          "loop", f"key:{key.key_id}", ttl_s=2 * breaker.window_seconds))
        return cells, breaker_pks, budgets

    # --- admission ------------------------------------------------------------------------------------

    def admit(self, request_id: str, key: KeyRecord, tags: CostTags, model: str, worst: Decimal,
              loop_hash: str | None, reservation: dict[str, Any], *, retry: bool = False,
              budgets_only: bool = False) -> Ticket:
        """Reserve ``worst`` in every scope that applies, or raise the typed 429/503.

        ``retry``: another attempt of a call already admitted once (a retry or a fallback model): its
        reservation follows the new model's price, but it is not another request for the breaker's request
        and repeat counters. ``budgets_only``: an extension of a running stream's reservation (budget and
        spend cells only).
        """
        cells, breaker_pks, budgets = self.plan(key, tags, model, worst, loop_hash, self.store.now_us())
        if retry or budgets_only:
            skip = {"loop", "breaker_requests"} | ({"cap"} if budgets_only else set())
            cells = [c for c in cells if c.kind not in skip]
        reservation = {**reservation, "exp": int(self.store.clock()) + self.policy.reservation_ttl_seconds,
                       "worst_usd": str(worst)}
        try:
            admission = self.store.reserve(request_id, cells, breaker_pks, reservation)
        except Refused as refused:
            raise self._refusal_error(refused.refusal, key, cells) from None
        except StoreUnavailable as exc:
            if self.policy.fail_mode == "open":
                logger.warning("budget store unavailable: admitting without a reservation (fail-open)")
                return Ticket(request_id, worst, None, bypassed=True)
            raise ServiceUnavailable("The budget store is unavailable; the call was not admitted.",
                                     code="budget_store_unavailable") from exc
        taxed = [TaxedScope(c, budgets[c.scope].daily_usd, budgets[c.scope].tax.multiplier)  # type: ignore[arg-type,union-attr]
                 for c in cells if c.kind == "budget" and budgets[c.scope].tax is not None]
        return Ticket(request_id, worst, admission, taxed=taxed)

    def _refusal_error(self, refusal: Refusal, key: KeyRecord, cells: list[Cell]) -> Exception:
        retry = None if refusal.retry_after_us is None else max(1, math.ceil(refusal.retry_after_us / gcra.MICROS))
        headers = {"Retry-After": str(retry)} if retry is not None else {}
        now = self.store.now_us()
        if refusal.reason == "circuit_open":
            pk = str(refusal.state.get("pk", ""))
            return CircuitOpen("The circuit breaker is open for this scope after runaway usage; retry later.",
                               headers=headers, details={"scope": pk.removeprefix("breaker#").replace("#", ":", 1)})
        cell = refusal.cell
        assert cell is not None
        if refusal.reason in ("loop", "breaker_requests", "breaker_spend"):
            breaker = self.tier(key).breaker
            pk = "breaker#" + cell.scope.replace(":", "#", 1)
            try:
                self.store.trip(pk, breaker.cooldown_seconds * gcra.MICROS, cell)
            except StoreUnavailable:
                logger.warning("could not open the breaker", extra={"pk": pk})
            why = {"loop": "the same prompt repeated too often", "breaker_requests": "request rate",
                   "breaker_spend": "spend rate"}[refusal.reason]
            return CircuitOpen(f"Circuit breaker tripped ({why} over {breaker.window_seconds}s); retry later.",
                               headers={"Retry-After": str(breaker.cooldown_seconds)},
                               details={"scope": cell.scope, "trigger": refusal.reason})
        headers.update(self.rate_headers(now, [cell], {cell.key: refusal.state.get("tat")}))
        if refusal.reason == "too_large":
            return BudgetExceeded(
                f"This call's worst-case cost exceeds the whole limit of {cell.scope}; lower max_tokens.",
                headers=headers, details={"scope": cell.scope})
        if refusal.reason == "cap":
            return RequestCapExceeded(
                f"Daily request cap reached for this model ({cell.capacity} requests/day).",
                headers=headers, details={"scope": cell.scope})
        return BudgetExceeded(f"Daily budget exhausted for {cell.scope}; retry after {retry}s or upgrade the tier.",
                              headers=headers, details={"scope": cell.scope})

    # --- headers ----------------------------------------------------------------------------------------

    @staticmethod
    def rate_headers(now: int, cells: list[Cell], tats: dict[tuple[str, str], int | None]) -> dict[str, str]:
        """x-ratelimit-* for the tightest dollar budget and the request cap among ``cells``."""
        headers: dict[str, str] = {}
        for kind, suffix in (("budget", "usd"), ("cap", "requests")):
            candidates = [c for c in cells if c.kind == kind]
            if not candidates:
                continue
            cell = min(candidates, key=lambda c: _remaining(c, tats.get(c.key), now))
            state = tats.get(cell.key)
            left = _remaining(cell, state, now)
            if cell.is_counter:
                assert cell.window_end_us is not None
                reset = math.ceil(max(0, cell.window_end_us - now) / gcra.MICROS)
            else:
                reset = gcra.seconds_until_full(state, now)
            if kind == "budget":
                limit, left_text = format_usd(cell.capacity, 6), format_usd(left, 6)
            else:
                limit, left_text = str(cell.capacity), str(int(left))
            headers[f"x-ratelimit-limit-{suffix}"] = limit
            headers[f"x-ratelimit-remaining-{suffix}"] = left_text
            headers[f"x-ratelimit-reset-{suffix}"] = f"{reset}s"
        return headers

    # --- settlement -------------------------------------------------------------------------------------

    def settle_all(self, tickets: Sequence[Ticket], actual: Decimal, succeeded: bool,
                   ledger_item: dict[str, Any]) -> dict[str, str]:
        """Settle a stream's reservation and its extensions: each covers the cost in turn, the first also any
        overrun, and the ledger row is written with the first (extensions first, so a crash in between leaves
        the row's reservation to the reconciler, never a row without its charge)."""
        shares = cost_shares([t.worst_usd for t in tickets], actual)
        for ticket, share in reversed(list(zip(tickets[1:], shares[1:], strict=True))):
            self.settle(ticket, share, succeeded, None)
        return self.settle(tickets[0], shares[0], succeeded, ledger_item)

    def settle(self, ticket: Ticket, actual: Decimal, succeeded: bool,
               ledger_item: dict[str, Any] | None) -> dict[str, str]:
        """Refund the unused reservation and write the ledger row. Returns fresh rate-limit headers."""
        if ticket.admission is None:
            self.store.settle(Admission(ticket.request_id, self.store.now_us(), [], {}, set(), 0), {},
                              ledger_item)
            return {}
        used = {c.key: ticket.used(c, actual, succeeded) for c in ticket.admission.cells if c.refundable}
        self.store.settle(ticket.admission, used, ledger_item)
        admission = ticket.admission
        if self.alerts is not None and succeeded:
            self.alerts.check(admission.now, [c for c in admission.cells if c.kind == "budget"], admission.tats)
        return self.rate_headers(admission.now, admission.cells, admission.tats)
