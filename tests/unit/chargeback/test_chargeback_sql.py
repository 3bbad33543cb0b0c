"""The named queries: one .sql file each (Athena SQL), transpiled to DuckDB by sqlglot, run over exported
Parquet and compared with totals computed independently from the ledger rows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from chargeback_checks import SPEC, assert_matches, expected
from finops.chargeback import bill, engine, periods
from finops.chargeback.sql import SQL_DIR, athena_literal, queries, to_duckdb
from sqlglot import exp, parse_one

NAMES = sorted(p.stem for p in SQL_DIR.glob("*.sql"))
BILLING = [n for n in NAMES if n != "focus_export"]
MONTHS = ("2026-10", "2026-11", "2026-12")


def test_the_named_queries_are_the_sql_files() -> None:
    assert sorted(queries()) == NAMES
    assert {"monthly_bill_by_dept", "monthly_bill_by_project", "monthly_bill_by_user", "monthly_bill_by_model",
            "monthly_bill_by_environment", "unallocated_spend", "routing_savings", "tax_collected", "top_spenders",
            "daily_trend", "focus_export"} == set(NAMES)
    assert set(BILLING) == set(SPEC)  # every billing query has an independent expectation below


@pytest.mark.parametrize("name", NAMES)
def test_query_file_header_parameters_and_pinned_types(name: str) -> None:
    query = queries()[name]
    assert 0 < len(query.description) <= 1024 and len(name) <= 128  # CfnNamedQuery limits
    tree = parse_one(query.sql, read="athena")
    assert query.parameters == 2
    # the billing period filter: WHERE dt >= ? AND dt < ? (partition pruning on Athena and DuckDB)
    assert "dt >= ? AND dt < ?" in tree.sql(dialect="athena")
    # every SUM is cast to a pinned type: DECIMAL(38, 10) for money, BIGINT / DECIMAL(38, 0) for counts
    for node in tree.find_all(exp.Sum):
        parent = node.parent
        while isinstance(parent, exp.Paren):
            parent = parent.parent
        if isinstance(parent, exp.Having | exp.NEQ | exp.Or):
            continue
        assert isinstance(parent, exp.Cast), f"{name}: unpinned {node.sql()}"
        assert parent.to.sql() in ("DECIMAL(38, 10)", "BIGINT", "DECIMAL(38, 0)"), parent.sql()
    duck = to_duckdb(query.sql)
    assert duck.count("?") == 2
    assert "DECIMAL(38, 10)" in duck


def test_athena_parameters_are_quoted_literals_and_nothing_else() -> None:
    assert athena_literal("2026-11-01") == "'2026-11-01'"
    for bad in ("x' OR '1'='1", "a;b", "", "a b"):
        with pytest.raises(ValueError):
            athena_literal(bad)


@pytest.mark.parametrize("month", MONTHS)
@pytest.mark.parametrize("name", BILLING)
def test_every_billing_query_matches_the_ledger_to_the_cent(exported, name: str, month: str) -> None:
    con = engine.connect()
    assert engine.create_usage_view(con, exported.root) == len(exported.results)
    result = engine.run_duckdb(con, name, periods.month_bounds(month))
    assert_matches(result, expected(name, exported.entries, month))


def test_the_month_boundaries_are_utc_days(exported) -> None:
    """The last microsecond of Oct 31 is October's, the first of Dec 1 is December's."""
    con = engine.connect()
    engine.create_usage_view(con, exported.root)
    october = engine.run_duckdb(con, "daily_trend", periods.month_bounds("2026-10"))
    assert [r["day"].isoformat() for r in october.records()] == ["2026-10-31"]
    december = engine.run_duckdb(con, "daily_trend", periods.month_bounds("2026-12"))
    assert [r["day"].isoformat() for r in december.records()] == ["2026-12-01"]
    november = engine.run_duckdb(con, "daily_trend", periods.month_bounds("2026-11"))
    assert [r["day"].isoformat() for r in november.records()] == ["2026-11-01", "2026-11-15", "2026-11-30"]


def test_untagged_spend_is_billed_to_unallocated(exported) -> None:
    result = bill.bill("2026-11", "department", store=exported.store)
    departments = {r["department_id"]: r for r in result.records()}
    assert set(departments) == {"retail", "platform", "unallocated"}
    untagged = [e for e in exported.entries if e.unallocated_tags and e.ts.strftime("%Y-%m") == "2026-11"]
    assert untagged and all(e.department_id == "unallocated" for e in untagged)
    total = sum(e.cost_usd + e.tax_usd for e in exported.entries if e.ts.strftime("%Y-%m") == "2026-11")
    assert abs(bill.totals(result)["billed_usd"] - total) < Decimal("0.005")
    spend = engine.run_duckdb(_con(exported), "unallocated_spend", periods.month_bounds("2026-11"))
    assert {r["missing_tags"] for r in spend.records()} == {"", "X-Project-ID"}


def test_an_empty_month_bills_nothing(exported, tmp_path) -> None:
    from finops.chargeback.store import LocalStore

    for store in (exported.store, LocalStore(tmp_path / "nothing-here")):
        result = bill.bill("2025-06", "user", store=store)
        assert result.rows == [] and result.columns[:2] == ["department_id", "user_id"]


def _con(exported):
    con = engine.connect()
    engine.create_usage_view(con, exported.root)
    return con
