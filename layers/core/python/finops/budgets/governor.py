"""Admission control for one call: which buckets it is charged to, the 429s, tax mode and the breaker.

``admit`` reserves the call's worst-case cost in every bucket that applies (key/tier, user, project,
department, per-model request cap, breaker cells) in one write; ``settle`` returns the unused part and
writes the ledger row in one write. Pure planning lives here; DynamoDB lives in :mod:`store`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from ..errors import BudgetExceeded, CircuitOpen, ModelNotAllowed, RequestCapExceeded, ServiceUnavailable
from ..keys.service import KeyRecord
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


def _money(value: Decimal) -> str:
    text = format(value.quantize(Decimal("0.000001")).normalize(), "f")
    return "0" if text in ("-0", "") else text


@dataclass
class Ticket:
    """What admission reserved, carried to settlement."""

    request_id: str
    worst_usd: Decimal
    admission: Admission | None
    bypassed: bool = False
    tax_multiplier: Decimal | None = None
    taxed_fraction: Decimal = ZERO
    headers: dict[str, str] = field(default_factory=dict)

    def tax_on(self, cost: Decimal) -> Decimal:
        if self.tax_multiplier is None or not self.taxed_fraction:
            return ZERO
        return cost * self.taxed_fraction * (self.tax_multiplier - 1)


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

    def plan(self, key: KeyRecord, tags: CostTags, model: str, worst: Decimal,
             loop_hash: str | None) -> tuple[list[Cell], list[str], dict[str, ScopeBudget]]:
        tier = self.tier(key)
        budgets = dict(self._scopes(key, tags))
        cells = [self._budget_cell(scope, budget, worst) for scope, budget in budgets.items()]
        cap = tier.request_caps.get(model)
        if cap:
            cells.append(Cell(pk=f"cap#{key.key_id}#{model}", attr="tat", inc=gcra.increment(1, cap, gcra.DAY_US),
                              period_us=gcra.DAY_US, capacity=Decimal(cap), kind="cap",
                              scope=f"key:{key.key_id}:{model}", refundable=True))
        breaker = tier.breaker
        window = breaker.window_seconds * gcra.MICROS
        breaker_pks = []
        for scope in (f"key:{key.key_id}", f"user:{tags.user_id}", f"project:{tags.project_id}"):
            pk = "breaker#" + scope.replace(":", "#", 1)
            breaker_pks.append(pk)
            if breaker.max_requests:
                cells.append(Cell(pk=pk, attr="req", inc=gcra.increment(1, breaker.max_requests, window),
                                  period_us=window, capacity=Decimal(breaker.max_requests),
                                  kind="breaker_requests", scope=scope, refundable=False))
            if breaker.max_spend_usd:
                cells.append(Cell(pk=pk, attr="usd", inc=gcra.increment(worst, breaker.max_spend_usd, window),
                                  period_us=window, capacity=breaker.max_spend_usd, kind="breaker_spend",
                                  scope=scope, refundable=True))
        if breaker.max_repeats and loop_hash:
            cells.append(Cell(pk=f"loop#{key.key_id}#{loop_hash}", attr="tat",
                              inc=gcra.increment(1, breaker.max_repeats, window), period_us=window,
                              capacity=Decimal(breaker.max_repeats), kind="loop", scope=f"key:{key.key_id}",
                              refundable=False))
        return cells, breaker_pks, budgets

    # --- admission ------------------------------------------------------------------------------------

    def admit(self, request_id: str, key: KeyRecord, tags: CostTags, model: str, worst: Decimal,
              loop_hash: str | None, reservation: dict[str, Any]) -> Ticket:
        cells, breaker_pks, budgets = self.plan(key, tags, model, worst, loop_hash)
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
        ticket = Ticket(request_id, worst, admission)
        self._apply_tax(ticket, cells, budgets, worst)
        ticket.headers = self.rate_headers(admission.now, cells, admission.tats)
        return ticket

    def _apply_tax(self, ticket: Ticket, cells: list[Cell], budgets: dict[str, ScopeBudget],
                   worst: Decimal) -> None:
        assert ticket.admission is not None
        for cell in cells:
            budget = budgets.get(cell.scope) if cell.kind == "budget" else None
            if not budget or not budget.tax or not worst:
                continue
            assert budget.daily_usd is not None
            backlog = ticket.admission.tats[cell.key] - ticket.admission.now
            over = gcra.level(backlog + ticket.admission.now, ticket.admission.now, budget.daily_usd,
                              gcra.DAY_US) - budget.daily_usd
            fraction = min(Decimal(1), max(ZERO, over) / worst)
            if fraction > ticket.taxed_fraction:
                ticket.taxed_fraction = fraction
                ticket.tax_multiplier = budget.tax.multiplier

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
        headers.update(self.rate_headers(now, [cell], {cell.key: refusal.state.get("tat") or now}))
        if refusal.reason == "cap":
            return RequestCapExceeded(
                f"Daily request cap reached for this model ({cell.capacity} requests/day).",
                headers=headers, details={"scope": cell.scope})
        if retry is None:
            message = "This call's worst-case cost exceeds the daily budget; lower max_tokens."
        else:
            message = f"Daily budget exhausted for {cell.scope}; retry after {retry}s or upgrade the tier."
        return BudgetExceeded(message, headers=headers, details={"scope": cell.scope})

    # --- headers ----------------------------------------------------------------------------------------

    @staticmethod
    def rate_headers(now: int, cells: list[Cell], tats: dict[tuple[str, str], int]) -> dict[str, str]:
        """x-ratelimit-* for the tightest dollar budget and the request cap among ``cells``."""
        headers: dict[str, str] = {}
        for kind, suffix in (("budget", "usd"), ("cap", "requests")):
            candidates = [c for c in cells if c.kind == kind]
            if not candidates:
                continue
            cell = min(candidates, key=lambda c: gcra.remaining(tats.get(c.key), now, c.capacity, c.period_us))
            tat = tats.get(cell.key)
            left = gcra.remaining(tat, now, cell.capacity, cell.period_us)
            headers[f"x-ratelimit-limit-{suffix}"] = _money(cell.capacity) if kind == "budget" else str(cell.capacity)
            headers[f"x-ratelimit-remaining-{suffix}"] = (
                _money(left) if kind == "budget" else str(int(left)))
            headers[f"x-ratelimit-reset-{suffix}"] = f"{gcra.seconds_until_full(tat, now)}s"
        return headers

    # --- settlement -------------------------------------------------------------------------------------

    def used(self, ticket: Ticket, actual: Decimal, succeeded: bool) -> dict[tuple[str, str], int]:
        """Time units each refundable cell actually consumed."""
        assert ticket.admission is not None
        used: dict[tuple[str, str], int] = {}
        for cell in ticket.admission.cells:
            if not cell.refundable or not succeeded:
                continue
            if cell.kind == "cap":
                used[cell.key] = cell.inc
            elif ticket.worst_usd > 0:
                # actual / worst of the reserved time, rounded up; never more than reserved.
                share = Decimal(cell.inc) * actual / ticket.worst_usd
                used[cell.key] = min(cell.inc, int(share.to_integral_value(rounding="ROUND_CEILING")))
        return used

    def settle(self, ticket: Ticket, actual: Decimal, succeeded: bool,
               ledger_item: dict[str, Any]) -> dict[str, str]:
        """Refund the unused reservation and write the ledger row. Returns fresh rate-limit headers."""
        if ticket.admission is None:
            self.store.settle(Admission(ticket.request_id, self.store.now_us(), [], {}, set(), 0), {},
                              ledger_item)
            return {}
        used = self.used(ticket, actual, succeeded)
        self.store.settle(ticket.admission, used, ledger_item)
        admission = ticket.admission
        if self.alerts is not None and succeeded:
            self.alerts.check(admission.now, [c for c in admission.cells if c.kind == "budget"], admission.tats)
        return self.rate_headers(admission.now, admission.cells, admission.tats)
