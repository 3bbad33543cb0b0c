"""Budget policy as configuration: tiers, per-scope daily budgets, caps, tax mode, breaker thresholds.

The shipped default (``data/budgets.json``) is the tier table from the product brief; a deployment points
``FINOPS_BUDGET_POLICY_PATH`` at its own file (same schema).
"""

from __future__ import annotations

import importlib.resources
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ALL_MODELS = "*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaxPolicy(_Strict):
    """Instead of refusing at the budget, admit up to ``ceiling_usd`` and book the overage x multiplier."""

    multiplier: Decimal = Field(default=Decimal("1.5"), ge=1)
    ceiling_usd: Decimal = Field(gt=0)


class ScopeBudget(_Strict):
    daily_usd: Decimal | None = Field(default=None, gt=0)  # None: unlimited (still metered)
    tax: TaxPolicy | None = None

    @model_validator(mode="after")
    def _ceiling_above_budget(self) -> ScopeBudget:
        if self.tax and (self.daily_usd is None or self.tax.ceiling_usd <= self.daily_usd):
            raise ValueError("tax.ceiling_usd must be above daily_usd")
        return self


class BreakerPolicy(_Strict):
    """Runaway-loop breaker thresholds over a rolling window (GCRA-smoothed)."""

    window_seconds: int = Field(default=300, gt=0)
    max_requests: int | None = Field(default=None, gt=0)
    max_spend_usd: Decimal | None = Field(default=None, gt=0)
    max_repeats: int | None = Field(default=None, gt=0)  # the same prompt hash within the window
    cooldown_seconds: int = Field(default=300, gt=0)


class TierPolicy(_Strict):
    budget: ScopeBudget = ScopeBudget()
    models: tuple[str, ...] = (ALL_MODELS,)
    request_caps: dict[str, int] = Field(default_factory=dict)  # model -> requests per day
    breaker: BreakerPolicy = BreakerPolicy()

    def allows(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models


class BudgetPolicy(_Strict):
    tiers: dict[str, TierPolicy]
    # Scope budgets by id; the key "*" is the default for any id not listed.
    users: dict[str, ScopeBudget] = Field(default_factory=dict)
    projects: dict[str, ScopeBudget] = Field(default_factory=dict)
    departments: dict[str, ScopeBudget] = Field(default_factory=dict)
    alert_thresholds: tuple[Decimal, ...] = (Decimal("0.8"),)
    reservation_ttl_seconds: int = Field(default=900, gt=0)
    fail_mode: Literal["closed", "open"] = "closed"
    reconcile_policy: Literal["book", "release"] = "book"

    def tier(self, name: str) -> TierPolicy:
        return self.tiers[name]

    @staticmethod
    def _lookup(table: dict[str, ScopeBudget], scope_id: str) -> ScopeBudget | None:
        return table.get(scope_id) or table.get(ALL_MODELS)

    def user_budget(self, user_id: str) -> ScopeBudget | None:
        return self._lookup(self.users, user_id)

    def project_budget(self, project_id: str) -> ScopeBudget | None:
        return self._lookup(self.projects, project_id)

    def department_budget(self, department_id: str) -> ScopeBudget | None:
        return self._lookup(self.departments, department_id)


@lru_cache(maxsize=4)
def load_policy(path: str | None = None) -> BudgetPolicy:
    raw = Path(path).read_text() if path else (
        importlib.resources.files("finops") / "data" / "budgets.json").read_text()
    return BudgetPolicy.model_validate(json.loads(raw, parse_float=Decimal))
