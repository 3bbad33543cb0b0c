"""The daily export: Parquet written by DuckDB with pinned types, one or a few files per day, reconciled
before upload, idempotent (a re-run replaces the day), to a local directory or to S3 (moto)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from chargeback_checks import export_entries, money, synthetic_entries
from finops.chargeback import bill, engine, export, schema
from finops.chargeback.store import LocalStore, S3Store, download_prefix
from finops.chargeback.transform import PriceBook
from finops.pricing import load_catalog

DAY = "2026-11-15"


def day_rows(day: str = DAY) -> list[dict]:
    return [e.__dict__ for e in synthetic_entries((day,), per_day=12)]


def parquet_types(path: Path) -> dict[str, str]:
    con = engine.connect()
    sql = f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning = false)"  # noqa: S608
    return {name: kind for name, kind, *_ in con.execute(sql).fetchall()}


def test_the_parquet_schema_is_pinned(exported) -> None:
    key = schema.usage_key(DAY, 0)
    assert exported.results[DAY].keys == [key]
    types = parquet_types(exported.root / key)
    assert list(types) == [c.name for c in schema.USAGE_COLUMNS]  # dt lives in the path only
    assert types == {c.name: c.duckdb_type for c in schema.USAGE_COLUMNS}
    assert types["cost_usd"] == "DECIMAL(38,10)" and types["ts"] == "TIMESTAMP"


def test_the_export_reconciles_with_the_ledger_rows(exported) -> None:
    by_day = defaultdict(list)
    for e in exported.entries:
        by_day[e.day].append(e)
    for day, result in exported.results.items():
        rows = by_day[day]
        rec = result.reconciliation
        assert rec.ok and result.rows == len(rows)
        assert rec.exported["cost_usd"] == sum(money(e.cost_usd) for e in rows)
        assert rec.exported["tax_usd"] == sum(money(e.tax_usd) for e in rows)
        assert abs(rec.exported["tax_usd"] - sum(e.tax_usd for e in rows)) < Decimal("0.005")
        assert rec.checks["direction_split"]


def test_rows_keep_their_values(exported) -> None:
    con = engine.connect()
    engine.create_usage_view(con, exported.root)
    want = {e.request_id: e for e in exported.entries}
    got = con.execute("SELECT request_id, ts, dt, department_id, unallocated_tags, input_tokens, cached_input_tokens, "
                      "output_tokens, cost_usd, route_strategy, status FROM usage").fetchall()
    assert len(got) == len(want)
    for rid, ts, dt, dept, tags, inp, cached, out, cost, route, status in got:
        e = want[rid]
        assert ts == e.ts.replace(tzinfo=None) and dt == e.day  # UTC, partition = UTC day of ts
        assert (dept, tags, inp, cached, out, route, status) == (
            e.department_id, ",".join(e.unallocated_tags), e.input_tokens, e.cached_input_tokens, e.output_tokens,
            e.route_strategy, e.status)
        assert cost == money(e.cost_usd)


def test_rerunning_a_day_replaces_its_files(tmp_path) -> None:
    store = LocalStore(tmp_path / "bucket")
    prices = PriceBook(load_catalog())
    rows = day_rows()
    assert len(rows) == 16  # 12 calls, 4 of them retried once
    first = export.export_day(rows, DAY, store, prices=prices, rows_per_file=5)
    assert first.keys == [schema.usage_key(DAY, i) for i in range(4)]  # 5 per file
    assert sorted(store.list(schema.usage_day_prefix(DAY))) == first.keys
    before = bill.bill("2026-11", "project", store=store).rows

    second = export.export_day(day_rows(), DAY, store, prices=prices)  # now one file
    assert second.keys == [schema.usage_key(DAY, 0)]
    assert second.deleted == [schema.usage_key(DAY, i) for i in (1, 2, 3)]
    assert sorted(store.list(schema.usage_day_prefix(DAY))) == second.keys
    assert bill.bill("2026-11", "project", store=store).rows == before  # nothing counted twice

    # a stray object in the day's prefix (a half-finished older run, a manual copy) goes too
    stray = tmp_path / "stray.parquet"
    stray.write_bytes((store.root / second.keys[0]).read_bytes())
    store.put(f"usage/dt={DAY}/copy-of-part.parquet", stray)
    third = export.export_day(day_rows(), DAY, store, prices=prices)
    assert third.deleted == [f"usage/dt={DAY}/copy-of-part.parquet"]
    assert bill.bill("2026-11", "project", store=store).rows == before


def test_an_empty_day_writes_one_empty_file(tmp_path) -> None:
    store = LocalStore(tmp_path)
    result = export.export_day([], "2026-11-02", store, prices=PriceBook(load_catalog()))
    assert result.rows == 0 and result.keys == [schema.usage_key("2026-11-02", 0)]
    assert result.reconciliation.ok
    con = engine.connect()
    assert con.execute(f"SELECT COUNT(*) FROM read_parquet('{tmp_path / result.keys[0]}')").fetchone() == (0,)  # noqa: S608
    assert parquet_types(tmp_path / result.keys[0]) == {c.name: c.duckdb_type for c in schema.USAGE_COLUMNS}


def test_a_row_of_another_day_fails_the_export_and_uploads_nothing(tmp_path) -> None:
    store = LocalStore(tmp_path)
    rows = day_rows() + day_rows("2026-11-16")[:1]
    with pytest.raises(export.ReconciliationError, match="not from 2026-11-15"):
        export.export_day(rows, DAY, store, prices=PriceBook(load_catalog()))
    assert store.list("") == {}


def test_a_mismatch_fails_loudly_and_keeps_the_previous_files(tmp_path, monkeypatch) -> None:
    store = LocalStore(tmp_path)
    prices = PriceBook(load_catalog())
    good = export.export_day(day_rows(), DAY, store, prices=prices)
    listing = store.list("")
    real = export._read_back

    def off_by_a_cent(con, parts):
        rows, sums, split_ok = real(con, parts)
        return rows, {**sums, "cost_usd": sums["cost_usd"] + Decimal("0.01")}, split_ok

    monkeypatch.setattr(export, "_read_back", off_by_a_cent)
    with pytest.raises(export.ReconciliationError) as caught:
        export.export_day(day_rows(), DAY, store, prices=prices)
    failed = caught.value.details["reconciliation"]["failed"]
    assert failed == ["cost_usd:exact", "cost_usd:to_the_cent"]
    assert store.list("") == listing  # the day as it was
    monkeypatch.setattr(export, "_read_back", lambda con, parts: (*real(con, parts)[:2], False))
    with pytest.raises(export.ReconciliationError) as caught:
        export.export_day(day_rows(), DAY, store, prices=prices)
    assert caught.value.details["reconciliation"]["failed"] == ["direction_split"]
    assert good.reconciliation.ok


def test_a_lost_row_fails_the_reconciliation(tmp_path, monkeypatch) -> None:
    store = LocalStore(tmp_path)
    original = export.ParquetParts.add
    calls = {"n": 0}

    def drop_third(self, values):
        calls["n"] += 1
        if calls["n"] != 3:
            original(self, values)

    monkeypatch.setattr(export.ParquetParts, "add", drop_third)
    with pytest.raises(export.ReconciliationError) as caught:
        export.export_day(day_rows(), DAY, store, prices=PriceBook(load_catalog()))
    assert "rows" in caught.value.details["reconciliation"]["failed"]
    assert store.list("") == {}


def test_s3_store_round_trip_and_export(moto_aws: str, tmp_path: Path) -> None:
    bucket = f"chargeback-{moto_aws}"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    try:
        store = S3Store(bucket, s3)
        entries = synthetic_entries(("2026-11-14", "2026-11-15"), per_day=6)
        results = export_entries(entries, store, rows_per_file=4)
        assert {k for r in results.values() for k in r.keys} == set(store.list("usage/"))
        assert store.uri("usage/") == f"s3://{bucket}/usage/"
        # read back what was written: download, then DuckDB (no httpfs)
        local = download_prefix(store, "usage/dt=2026-11-", tmp_path / "mirror")
        assert len(local) == 4  # 6 rows a day, 4 per file
        con = engine.connect()
        engine.create_usage_view(con, tmp_path / "mirror")
        total = con.execute("SELECT SUM(cost_usd) FROM usage").fetchone()[0]
        assert total == sum(money(e.cost_usd) for e in entries)
        assert bill.bill("2026-11", "model", store=store).rows == bill.bill(
            "2026-11", "model", store=LocalStore(tmp_path / "mirror")).rows
        store.delete(store.list(""))
        assert store.list("") == {}
    finally:
        s3.delete_bucket(Bucket=bucket)


def test_local_store_keys_cannot_escape_the_root(tmp_path) -> None:
    store = LocalStore(tmp_path / "root")
    with pytest.raises(ValueError, match="escapes"):
        store.put("../outside.parquet", tmp_path / "x")


def test_values_with_tabs_quotes_and_line_breaks_survive_the_staging_file(tmp_path) -> None:
    rows = day_rows()[:3]
    odd = ['req "quoted"\tand tabbed', "req with\nline break", "req,comma\\N"]
    for row, request_id in zip(rows, odd, strict=True):
        row["request_id"] = request_id
    store = LocalStore(tmp_path)
    result = export.export_day(rows, DAY, store, prices=PriceBook(load_catalog()))
    assert result.reconciliation.ok
    con = engine.connect()
    got = con.execute(f"SELECT request_id FROM read_parquet('{tmp_path / result.keys[0]}')").fetchall()  # noqa: S608
    assert sorted(r[0] for r in got) == sorted(odd)
