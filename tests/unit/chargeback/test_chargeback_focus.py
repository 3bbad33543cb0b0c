"""The monthly FOCUS export: FOCUS 1.2 columns, types and value rules checked row by row here, and the FinOps
Foundation's focus-validator 1.0.0 (FOCUS 1.0 rules, its own virtualenv) run on the CSV form."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest
from chargeback_checks import (
    VALIDATOR_OVERRIDES,
    check_focus_12,
    focus_expectations,
    read_focus,
    run_focus_validator,
)
from finops.chargeback import engine, export, schema
from finops.chargeback.store import LocalStore


@pytest.fixture(scope="module")
def focus(exported, tmp_path_factory):
    """The FOCUS export of November from the exported synthetic month (into a copy of the bucket)."""
    out = tmp_path_factory.mktemp("focus")
    result = export.export_focus_month(exported.store, "2026-11", csv_copy=out / "focus-2026-11.csv")
    con = engine.connect()
    columns, types, rows = read_focus(con, exported.root / result.keys[0])
    return result, columns, types, rows, out / "focus-2026-11.csv"


def test_focus_lands_in_its_billing_period_partition(focus) -> None:
    result, columns, _, rows, _ = focus
    assert result.keys == ["focus/billing_period=2026-11/focus-2026-11.parquet"] == [schema.focus_key("2026-11")]
    assert columns == [c.name for c in schema.FOCUS_COLUMNS]
    assert rows and result.rows == len(rows) and result.reconciliation.ok


def test_focus_follows_the_1_2_rules(focus) -> None:
    _, columns, types, rows, _ = focus
    check_focus_12(columns, types, rows)
    assert {r["ChargeCategory"] for r in rows} == {"Usage", "Tax"}
    assert {r["x_TokenDirection"] for r in rows if r["ChargeCategory"] == "Usage"} == set(schema.DIRECTIONS)


def test_focus_reconciles_with_the_ledger(exported, focus) -> None:
    _, _, _, rows, _ = focus
    want = focus_expectations(exported.entries, "2026-11")
    billed = sum(r["BilledCost"] for r in rows)
    assert billed == want["billed_rounded"]
    assert abs(billed - want["billed_raw"]) < Decimal("0.005")
    assert sum(r["BilledCost"] for r in rows if r["ChargeCategory"] == "Tax") == want["tax_rounded"]
    for direction, tokens in want["tokens"].items():
        got = sum(r["ConsumedQuantity"] for r in rows if r["x_TokenDirection"] == direction)
        assert got == tokens, direction
    # calls priced with the catalog: what was billed is the list price
    usage = [r for r in rows if r["ChargeCategory"] == "Usage"]
    assert all(r["BilledCost"] == r["ListCost"] for r in usage)


def test_failed_calls_and_empty_directions_make_no_rows(focus) -> None:
    _, _, _, rows, _ = focus
    assert all(r["ConsumedQuantity"] > 0 for r in rows if r["ChargeCategory"] == "Usage")


def test_the_focus_validator_passes_the_export(focus, tmp_path) -> None:
    *_, csv_path = focus
    report = run_focus_validator(csv_path, tmp_path)
    assert report.failures == 0 and report.errors == 0, (report.failed, report.output[-3000:])
    assert report.skipped == len(VALIDATOR_OVERRIDES)
    assert report.tests > 100


def test_the_focus_validator_catches_a_broken_export(focus, tmp_path) -> None:
    """Proves the check above can fail: a lower-case currency and a missing BilledCost are reported."""
    *_, csv_path = focus
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["BillingCurrency"] = "usd"
    rows[1]["BilledCost"] = ""
    broken = tmp_path / "broken.csv"
    with broken.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = run_focus_validator(broken, tmp_path)
    assert report.failures >= 2
    assert any("BillingCurrency" in name for name in report.failed)
    assert any("BilledCost_NotNull" in name for name in report.failed)


def test_focus_csv_dates_are_iso_8601_utc(focus) -> None:
    *_, csv_path = focus
    with csv_path.open(newline="") as fh:
        first = next(csv.DictReader(fh))
    assert first["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
    assert first["BillingPeriodEnd"] == "2026-12-01T00:00:00Z"
    assert first["ChargePeriodStart"].endswith("T00:00:00Z")


def test_a_month_without_usage_exports_no_rows(tmp_path) -> None:
    store = LocalStore(tmp_path)
    result = export.export_focus_month(store, "2026-02")
    assert result.rows == 0 and result.reconciliation.ok and result.usage_files == 0
    assert list(store.list("focus/")) == [schema.focus_key("2026-02")]


def test_re_exporting_a_month_replaces_it(exported, tmp_path) -> None:
    store = LocalStore(tmp_path)
    for key in exported.store.list("usage/dt=2026-11-"):
        store.put(key, exported.root / key)
    stray = tmp_path / "stray.parquet"
    stray.write_bytes(b"not parquet")
    store.put("focus/billing_period=2026-11/old-export.parquet", stray)
    first = export.export_focus_month(store, "2026-11")
    assert first.deleted == ["focus/billing_period=2026-11/old-export.parquet"]
    second = export.export_focus_month(store, "2026-11")
    assert second.deleted == [] and second.rows == first.rows
    assert list(store.list("focus/")) == [schema.focus_key("2026-11")]


def test_days_exported_before_cache_writes_had_columns_still_export_and_reconcile(tmp_path) -> None:
    """Parquet written before the cache-write columns existed (union_by_name reads them as NULL) is billed with
    the days written after: the FOCUS month reconciles and the old day's prompt tokens count as input."""
    from chargeback_checks import export_entries, synthetic_entries

    old_day, new_day = "2026-11-01", "2026-11-02"
    entries = [e.model_copy(update={"cache_write_input_tokens": 0}) if e.day == old_day else e
               for e in synthetic_entries((old_day, new_day), per_day=10)]
    store = LocalStore(tmp_path / "bucket")
    export_entries(entries, store)
    con = engine.connect()
    for path in (store.root / schema.usage_day_prefix(old_day)).glob("*.parquet"):  # as the old exporter wrote it
        stripped = path.with_suffix(".old")
        con.execute(f"COPY (SELECT * EXCLUDE (cache_write_input_tokens, cache_write_input_cost_usd, "  # noqa: S608
                    f"cache_write_input_price_usd_per_mtok) FROM read_parquet('{path}')) TO '{stripped}' "
                    "(FORMAT parquet)")
        stripped.replace(path)
    result = export.export_focus_month(store, "2026-11")
    assert result.reconciliation.ok
    _, _, rows = read_focus(con, store.root / result.keys[0])
    want = focus_expectations(entries, "2026-11")
    assert want["tokens"]["cache_write_input"] > 0  # the new day has cache writes
    for direction, tokens in want["tokens"].items():
        assert sum(r["ConsumedQuantity"] for r in rows if r["x_TokenDirection"] == direction) == tokens, direction
    assert sum(r["BilledCost"] for r in rows) == want["billed_rounded"]
