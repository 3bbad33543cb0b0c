"""Helpers shared by the budget-engine unit tests (imported by name: this directory is on sys.path)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from finops import aws
from finops.budgets import gcra
from finops.budgets import table as budget_table
from finops.budgets.governor import utc_day
from finops.budgets.store import Cell
from finops.gateway import factory
from finops.keys import model as keys_model
from finops.ledger import model as ledger_model
from finops.ledger.entry import LedgerEntry

START = 1_795_962_600.0  # 2026-11-29T14:30:00Z, a whole second (float-exact in microseconds)
DAY = "2026-11-29"  # the UTC day of START
MIDNIGHT = 1_795_996_800.0  # 2026-11-30T00:00:00Z: START's UTC day ends 9.5 h (34 200 s) later


@dataclass
class Tables:
    """This test's table names (unique per test: moto's state is process-global and is never reset here)."""

    ledger: str = "finops-ledger-budgets-ut"
    budgets: str = "finops-budgets-ut"


TABLES = Tables()


class FakeClock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self, start: float = START) -> None:
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    @property
    def us(self) -> int:
        return int(self.t * gcra.MICROS)


def forget_connections() -> None:
    factory.reset()
    aws.client.cache_clear()
    for model in (ledger_model.LedgerRow, keys_model.ApiKey, budget_table.BudgetItem):
        model._connection = None


def aws_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "FINOPS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")


@dataclass
class CallLog:
    """DynamoDB operations a client sent (``before-call``) and their API parameters (``before-parameter-build``)."""

    ops: list[str] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)

    def on_call(self, model: Any, **_: Any) -> None:
        self.ops.append(model.name)

    def on_params(self, params: dict[str, Any], **_: Any) -> None:
        self.params.append(params)

    def attach(self, client: Any) -> CallLog:
        client.meta.events.register("before-call.dynamodb.*", self.on_call)
        client.meta.events.register("before-parameter-build.dynamodb.*", self.on_params)
        return self

    def clear(self) -> None:
        self.ops.clear()
        self.params.clear()


def budget_cell(scope: str, daily_usd: str, worst_usd: str) -> Cell:
    daily = Decimal(daily_usd)
    return Cell(pk=f"bucket#{scope.replace(':', '#', 1)}", attr="tat",
                inc=gcra.increment(Decimal(worst_usd), daily, gcra.DAY_US), period_us=gcra.DAY_US,
                capacity=daily, kind="budget", scope=scope, refundable=True)


def cap_cell(key_id: str, model: str, cap: int, now_us: int) -> Cell:
    """The per-UTC-day request cap counter, as ``BudgetGovernor.plan`` builds it for a call at ``now_us``."""
    day, window_end = utc_day(now_us)
    return Cell(pk=f"cap#{key_id}#{model}#{day}", attr="n", inc=1, period_us=gcra.DAY_US, capacity=Decimal(cap),
                kind="cap", scope=f"key:{key_id}:{model}", refundable=True, window_end_us=window_end,
                ttl_s=2 * 86_400)


def ledger_entry(request_id: str, cost: str = "0.01", ts: float = START, **kw: Any) -> LedgerEntry:
    fields: dict[str, Any] = {
        "request_id": request_id, "ts": datetime.fromtimestamp(ts, UTC), "project_id": "checkout-web",
        "user_id": "alice", "environment": "production", "department_id": "unallocated",
        "requested_model": "gpt-4o-mini", "model": "gpt-4o-mini", "provider": "openai",
        "cost_usd": Decimal(cost), "price_version": "test", "status": "ok", "http_status": 200, **kw}
    return LedgerEntry(**fields)


def item_of(client: Any, pk: str) -> dict[str, Any]:
    return client.get_item(TableName=TABLES.budgets, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item", {})


def tat_of(client: Any, pk: str, attr: str = "tat") -> int | None:
    item = item_of(client, pk)
    return int(item[attr]["N"]) if attr in item else None


def set_tat(client: Any, pk: str, tat: int, attr: str = "tat") -> None:
    client.update_item(TableName=TABLES.budgets, Key={"pk": {"S": pk}}, UpdateExpression="SET #a = :t",
                       ExpressionAttributeNames={"#a": attr}, ExpressionAttributeValues={":t": {"N": str(tat)}})


def reservations(item: dict[str, Any]) -> list[str]:
    return sorted(a for a in item if a.startswith("r_"))


def units_of(inc: int, capacity, period_us: int):
    """Inverse of ``gcra.increment`` (floor): how many units ``inc`` time units represent."""
    from decimal import ROUND_FLOOR, Decimal

    return (Decimal(inc) * Decimal(capacity) / period_us).quantize(Decimal("0.000000001"), rounding=ROUND_FLOOR)
