"""Ledger rows seeded through the real gateway path, exported by the exporter handler to S3 (moto), then every
.sql file run on DuckDB over the written Parquet and compared with totals computed independently from the
ledger (Decimal, to the cent); the FOCUS handler's export checked against FOCUS 1.2 and focus-validator."""

from __future__ import annotations

import json
import sys
from collections import Counter
from decimal import Decimal

import pytest
from chargeback_checks import (
    SPEC,
    VALIDATOR_OVERRIDES,
    assert_matches,
    check_focus_12,
    expected,
    focus_expectations,
    money,
    read_focus,
    run_focus_validator,
)
from chargeback_it_support import BIG, Traffic, utc
from finops.chargeback import bill, engine, export, periods, schema
from finops.chargeback.store import LocalStore

MOMENTS = {
    "2026-10-31": utc("2026-10-31T23:59:59.999999"),
    "2026-11-01": utc("2026-11-01T00:00:00"),
    "2026-11-15": utc("2026-11-15T12:34:56.789"),
    "2026-11-30": utc("2026-11-30T23:59:59.999999"),
    "2026-12-01": utc("2026-12-01T00:00:00"),
}
MONTHS = ("2026-10", "2026-11", "2026-12")


def seed(env) -> list:
    """A few calls per day: two departments, a project without one, an untagged call (observe mode), three
    models on two providers, a provider failure, and checkout-web past its budget in tax mode."""
    for day, moment in MOMENTS.items():
        n = int(day[-2:])
        plan = [
            Traffic(moment, "checkout-web", "alice", text=f"{BIG} day {day}", model="gpt-4o-mini"),
            Traffic(moment, "checkout-web", "bob", text=f"{BIG} again {day}", model="gpt-4o-mini"),
            Traffic(moment, "checkout-web", "alice", "staging", text=f"{BIG} third {day}", model="gpt-4o"),
            Traffic(moment, "search", "carol", "development", model="llama-3.3-70b-versatile", text=f"rank {n}"),
            Traffic(moment, "search", "dave", model="gpt-4o", text=f"summarise {n}"),
            Traffic(moment, "orphan", "erin", model="gpt-3.5-turbo", text=f"hello {n}"),
            Traffic(moment, None, "frank", text=f"untagged {n}"),  # X-Project-ID missing: unallocated
            Traffic(moment, "search", "carol", text=f"fail {n} [[sim:status=503]]"),
        ]
        statuses = [env.call(t) for t in plan]
        assert statuses[:-1] == [200] * 7, statuses
        assert statuses[-1] >= 500
    entries = env.entries()
    # One call each; the failed one is retried down its fallback chain, one row per attempt.
    assert len({e.parent_request_id for e in entries}) == 8 * len(MOMENTS)
    assert len(entries) > 8 * len(MOMENTS)
    return entries


@pytest.fixture
def seeded(chargeback_env):
    entries = seed(chargeback_env)
    days = Counter(e.day for e in entries)
    per_day = len(entries) // len(MOMENTS)  # 8 calls, the failed one booked once per attempt
    assert per_day > 8 and days == dict.fromkeys(MOMENTS, per_day)
    assert any(e.tax_usd > 0 for e in entries), "tax mode never kicked in"
    assert {e.department_id for e in entries} == {"retail", "platform", "unallocated"}
    assert any(e.unallocated_tags == ("X-Project-ID",) and e.project_id == "unallocated" for e in entries)
    assert any(e.status != "ok" and e.cost_usd == 0 for e in entries)
    results = {day: chargeback_env.export({"date": day}) for day in MOMENTS}
    return chargeback_env, entries, results


def test_every_named_query_matches_the_ledger(seeded) -> None:
    env, entries, results = seeded
    for day, summary in results.items():
        assert summary["day"] == day and summary["reconciled"] is True
        assert summary["rows"] == sum(e.day == day for e in entries)
        assert summary["keys"] == [schema.usage_key(day, 0)]
        assert Decimal(summary["cost_usd"]) == sum(money(e.cost_usd) for e in entries if e.day == day)
    assert sorted(env.objects("usage/")) == sorted(schema.usage_key(day, 0) for day in MOMENTS)

    root = env.mirror("usage/")
    con = engine.connect()
    assert engine.create_usage_view(con, root) == len(MOMENTS)
    checked = 0
    for name in SPEC:  # every billing .sql file
        for month in MONTHS:
            result = engine.run_duckdb(con, name, periods.month_bounds(month))
            assert_matches(result, expected(name, entries, month))
            checked += 1
    assert checked == len(SPEC) * len(MONTHS) == 30

    # the bill as `finops bill` computes it from the bucket, to the cent against the raw ledger
    november = [e for e in entries if e.ts.strftime("%Y-%m") == "2026-11"]
    by_dept = bill.bill("2026-11", "department", store=env.store)
    assert abs(bill.totals(by_dept)["billed_usd"] - sum(e.cost_usd + e.tax_usd for e in november)) < Decimal("0.005")
    unallocated = {r["department_id"]: r for r in by_dept.records()}["unallocated"]
    assert unallocated["requests"] == sum(e.department_id == "unallocated" for e in november) == 6  # orphan, untagged
    tax = engine.run_duckdb(con, "tax_collected", periods.month_bounds("2026-11")).records()
    assert {(r["department_id"], r["project_id"]) for r in tax} == {("retail", "checkout-web")}


def test_re_exporting_a_day_replaces_it(seeded) -> None:
    env, _, results = seeded
    day = "2026-11-15"
    before = bill.bill("2026-11", "user", store=env.store).rows
    # a stale extra part (an older run wrote two files): the re-export must remove it
    stale = schema.usage_key(day, 1)
    copy = env.tmp / "copy.parquet"
    env.store.get(schema.usage_key(day, 0), copy)
    env.store.put(stale, copy)
    assert bill.bill("2026-11", "user", store=env.store).rows != before  # counted twice now

    again = env.export({"date": day})
    assert again["keys"] == results[day]["keys"] and again["deleted"] == [stale]
    assert again["cost_usd"] == results[day]["cost_usd"] and again["rows"] == results[day]["rows"]
    assert sorted(env.objects(f"usage/dt={day}/")) == [schema.usage_key(day, 0)]
    assert bill.bill("2026-11", "user", store=env.store).rows == before

    # what the daily schedule sends: its scheduled time; the previous UTC day is exported
    scheduled = env.export({"scheduled_time": "2026-12-01T00:45:00Z"})
    assert scheduled["day"] == "2026-11-30" and scheduled["rows"] == results["2026-11-30"]["rows"]
    assert scheduled["cost_usd"] == results["2026-11-30"]["cost_usd"]


def test_a_reconciliation_mismatch_fails_the_function_emits_the_metric_and_keeps_the_files(
        seeded, monkeypatch, capsys) -> None:
    env, _, _ = seeded
    listing = env.objects()
    real = export._read_back

    def lose_a_cent(con, parts):
        rows, sums, split_ok = real(con, parts)
        return rows, {**sums, "tax_usd": sums["tax_usd"] - Decimal("0.01")}, split_ok

    monkeypatch.setattr(export, "_read_back", lose_a_cent)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    # metrics of the earlier invocations were never flushed (disabled): start from an empty set, as Lambda does
    sys.modules["functions_exporter_handler"].metrics.clear_metrics()
    capsys.readouterr()
    with pytest.raises(export.ReconciliationError, match="does not reconcile"):
        env.export({"date": "2026-11-15"})
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = [m for m in emitted if "_aws" in m and "ExportReconciliationFailures" in m]
    assert metrics, emitted
    assert metrics[-1]["ExportReconciliationFailures"] in (1, 1.0, [1], [1.0])
    assert "ExportedRows" not in metrics[-1]
    assert metrics[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "FinOpsGateway"
    assert env.objects() == listing  # the day's files as they were


def test_focus_export_of_the_month(seeded) -> None:
    env, entries, _ = seeded
    summary = env.focus({"month": "2026-11"})
    assert summary["reconciled"] is True and summary["usage_files"] == 3  # Nov 1, 15, 30
    assert summary["keys"] == [schema.focus_key("2026-11")]
    root = env.mirror("focus/")
    path = root / schema.focus_key("2026-11")
    con = engine.connect()
    columns, types, rows = read_focus(con, path)
    check_focus_12(columns, types, rows)
    want = focus_expectations(entries, "2026-11")
    billed = sum(r["BilledCost"] for r in rows)
    assert billed == want["billed_rounded"] == Decimal(summary["billed_cost"])
    assert abs(billed - want["billed_raw"]) < Decimal("0.005")
    assert sum(r["BilledCost"] for r in rows if r["ChargeCategory"] == "Tax") == want["tax_rounded"] > 0
    for direction, tokens in want["tokens"].items():
        assert sum((r["ConsumedQuantity"] for r in rows if r["x_TokenDirection"] == direction), Decimal(0)) == tokens
    assert {r["SubAccountId"] for r in rows} == {"retail", "platform", "unallocated"}
    assert {r["PublisherName"] for r in rows} == {"openai", "groq"}

    # the same rows as CSV for the FinOps Foundation's validator
    csv_path = env.tmp / "focus-2026-11.csv"
    con.execute(f"CREATE TABLE focus AS SELECT * FROM read_parquet('{path}', hive_partitioning = false)")  # noqa: S608
    export.write_focus(con, csv_path, "csv")
    report = run_focus_validator(csv_path, env.tmp)
    assert report.failures == 0 and report.errors == 0, (report.failed, report.output[-3000:])
    assert report.skipped == len(VALIDATOR_OVERRIDES)

    # what the monthly schedule sends: the previous month is exported again, replacing the file
    again = env.focus({"scheduled_time": "2026-12-01T03:00:00Z"})
    assert again["month"] == "2026-11" and again["reconciled"] is True and again["deleted"] == []
    assert again["billed_cost"] == summary["billed_cost"]
    assert list(LocalStore(env.mirror()).list("focus/")) == [schema.focus_key("2026-11")]
