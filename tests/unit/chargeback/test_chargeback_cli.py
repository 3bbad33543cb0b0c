"""``finops export``, ``finops bill`` and ``finops report``: the ledger read by day from DynamoDB (moto), a
local directory standing in for the bucket, the same named-query SQL on DuckDB, and ``--athena`` against moto's
Athena (the request the CLI sends, the typed results it prints)."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from chargeback_checks import call_of, expected, money, synthetic_entries
from finops import aws
from finops.chargeback import bill, engine, report, service
from finops.chargeback.engine import AthenaQueries, AthenaQueryFailed
from finops.chargeback.sql import load
from finops.cli import main
from finops.ledger import model as ledger_model
from finops.ledger.repository import LedgerRepository
from finops.settings import get_settings

MONTH = "2026-11"


@pytest.fixture
def ledger(moto_aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Synthetic entries appended to a moto ledger table through LedgerRepository (8 shards)."""
    table = f"cb-cli-ledger-{moto_aws}"
    for name in ("FINOPS_CHARGEBACK_BUCKET", "FINOPS_CHARGEBACK_DIR", "FINOPS_WORK_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FINOPS_LEDGER_TABLE", table)
    get_settings.cache_clear()
    service.reset()
    aws.client.cache_clear()
    ledger_model.LedgerRow._connection = None
    ledger_model.bind(table).create_table(wait=True)
    repo = LedgerRepository(table, get_settings().ledger_shards)
    entries = synthetic_entries(("2026-11-01", "2026-11-15", "2026-11-30"), per_day=10)
    for entry in entries:
        assert repo.append(entry)
    try:
        yield entries
    finally:
        aws.client("dynamodb").delete_table(TableName=table)
        ledger_model.LedgerRow._connection = None
        get_settings.cache_clear()
        service.reset()
        aws.client.cache_clear()


def test_export_then_bill_from_the_command_line(ledger, tmp_path, capsys) -> None:
    root = tmp_path / "bucket"
    assert main(["export", "--date", "2026-11-01", "--date", "2026-11-15", "--date", "2026-11-30",
                 "--dir", str(root)]) == 0
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["day"] for s in summaries] == ["2026-11-01", "2026-11-15", "2026-11-30"]
    # a row per attempt: 10 calls a day, three of them retried once
    assert all(s["reconciled"] and s["rows"] == 13 == sum(e.day == s["day"] for e in ledger) for s in summaries)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet")) == [
        f"usage/dt={d}/part-00000.parquet" for d in ("2026-11-01", "2026-11-15", "2026-11-30")]

    for by, name in bill.BY.items():
        assert main(["bill", "--month", MONTH, "--by", by, "--format", "json", "--dir", str(root)]) == 0
        printed = json.loads(capsys.readouterr().out)
        want = expected(name, ledger, MONTH)
        assert len(printed["rows"]) == len(want.rows), by
        for row in printed["rows"]:
            key = tuple(row[k] for k in want.keys)
            assert Decimal(row["billed_usd"]) == want.rounded[key]["billed_usd"], (by, key)
        assert Decimal(printed["totals"]["billed_usd"]) == sum(money(e.cost_usd) + money(e.tax_usd) for e in ledger)

    assert main(["bill", "--month", MONTH, "--by", "project", "--format", "csv", "--dir", str(root)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["project_id"] for r in rows} == {e.project_id for e in ledger}
    assert all(re.fullmatch(r"\d+\.\d{10}", r["cost_usd"]) for r in rows)  # full precision, plain notation

    assert main(["bill", "--month", MONTH, "--dir", str(root), "--decimals", "4"]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"AI bill {MONTH} by department (duckdb)")
    total = sum(money(e.cost_usd) + money(e.tax_usd) for e in ledger)
    assert f"{total.quantize(Decimal('0.0001')):,.4f}" in table.splitlines()[-1]
    assert table.splitlines()[-1].startswith("TOTAL")


def test_export_defaults_to_yesterday_and_refuses_bad_days(ledger, tmp_path, capsys) -> None:
    assert main(["export", "--dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 0 and summary["reconciled"]  # no traffic yesterday: an empty, exported day
    with pytest.raises(SystemExit):
        main(["bill", "--month", MONTH, "--by", "galaxy"])
    assert main(["export", "--date", "2026-02-30", "--dir", str(tmp_path)]) == 2
    assert "not a calendar day" in capsys.readouterr().err


def test_export_with_focus_month_and_report(ledger, tmp_path, capsys) -> None:
    root = tmp_path / "bucket"
    days = ["2026-11-01", "2026-11-15", "2026-11-30"]
    argv = ["export", *[a for d in days for a in ("--date", d)], "--focus-month", MONTH,
            "--csv", str(tmp_path / "focus.csv"), "--dir", str(root)]
    assert main(argv) == 0
    focus = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert focus["month"] == MONTH and focus["reconciled"] and focus["rows"] > 0
    assert (root / "focus" / f"billing_period={MONTH}" / f"focus-{MONTH}.parquet").is_file()
    assert (tmp_path / "focus.csv").read_text().startswith("BilledCost,")

    out = tmp_path / "report.html"
    assert main(["report", "--month", MONTH, "--dir", str(root), "--out", str(out)]) == 0
    check_report(out.read_text(), ledger)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        ident = dict(attrs).get("id")
        if tag == "b" and ident:
            self._current = ident

    def handle_data(self, data: str) -> None:
        if self._current:
            self.ids[self._current] = data
            self._current = None


def check_report(document: str, entries: list) -> None:
    """KPIs equal the ledger's totals; the three charts are SVG whose bars carry the query results."""
    month = [e for e in entries if e.ts.strftime("%Y-%m") == MONTH]
    billed = sum(money(e.cost_usd) + money(e.tax_usd) for e in month)
    places = 2 if billed >= 1 else 6
    parser = _Collector()
    parser.feed(document)
    assert parser.ids["billed"] == report.usd(billed, places)
    calls = {call_of(e) for e in month}
    assert len(calls) < len(month) and parser.ids["requests"] == f"{len(calls):,}"
    saved = sum(money(e.counterfactual_usd) - money(e.cost_usd) for e in month)
    assert saved > 0 and parser.ids["savings"] == report.usd(saved, places)
    svgs = re.findall(r"<svg .*?</svg>", document, flags=re.S)
    assert len(svgs) == 3
    charts = [ET.fromstring(svg) for svg in svgs]  # noqa: S314  (SVG this test generated)
    ns = {"s": "http://www.w3.org/2000/svg"}
    departments = {r.get("data-label"): Decimal(r.get("data-value"))
                   for r in charts[0].iterfind(".//s:rect[@class='bar']", ns)}
    by_dept = expected("monthly_bill_by_dept", entries, MONTH)
    assert departments == {k[0]: v["billed_usd"] for k, v in by_dept.rounded.items()}
    widths = {r.get("data-label"): float(r.get("width")) for r in charts[0].iterfind(".//s:rect[@class='bar']", ns)}
    top = max(departments, key=departments.get)
    assert widths[top] == max(widths.values()) > 0
    days = [r for r in charts[1].iterfind(".//s:rect[@class='bar']", ns)]
    assert len(days) == 30  # every day of November, zero-filled
    assert sum(Decimal(r.get("data-value")) for r in days) == billed
    series = {r.get("data-series") for r in charts[2].iterfind(".//s:rect[@class='bar']", ns)}
    assert series == {"requested models (counterfactual)", "actual cost"}


# --- Athena -----------------------------------------------------------------------------------------------------


def _queue_result(columns: list[tuple[str, str]], rows: list[list[str | None]]) -> None:
    from moto.athena.models import QueryResults, athena_backends

    backend = athena_backends["123456789012"]["us-east-1"]
    header = {"Data": [{"VarCharValue": name} for name, _ in columns]}
    data = [header] + [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in rows]
    info = [{"Name": name, "Type": kind, "CatalogName": "hive", "SchemaName": "", "TableName": "", "Label": name,
             "Precision": 38, "Scale": 10, "Nullable": "UNKNOWN", "CaseSensitive": False} for name, kind in columns]
    backend.query_results_queue.append(QueryResults(rows=data, column_info=info))


def test_bill_on_athena_sends_the_named_query_in_the_workgroup(moto_aws, monkeypatch, capsys) -> None:
    from moto.athena.models import athena_backends

    monkeypatch.setenv("FINOPS_ATHENA_WORKGROUP", f"wg-{moto_aws}")
    service.reset()
    aws.client.cache_clear()
    client = aws.client("athena")
    client.create_work_group(Name=f"wg-{moto_aws}", Configuration={
        "ResultConfiguration": {"OutputLocation": f"s3://results-{moto_aws}/athena-results/"},
        "EnforceWorkGroupConfiguration": True})
    _queue_result([("department_id", "varchar"), ("requests", "bigint"), ("input_tokens", "bigint"),
                   ("output_tokens", "bigint"), ("cost_usd", "decimal"), ("tax_usd", "decimal"),
                   ("billed_usd", "decimal")],
                  [["retail", "12", "3400", "560", "0.0123000000", "0.0010000000", "0.0133000000"],
                   ["unallocated", "3", "100", "20", "0.0000150000", "0", "0.0000150000"]])
    try:
        assert main(["bill", "--month", MONTH, "--athena", "--format", "json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["engine"] == "athena"
        assert printed["rows"][0] == {"department_id": "retail", "requests": 12, "input_tokens": 3400,
                                      "output_tokens": 560, "cost_usd": "0.0123000000", "tax_usd": "0.0010000000",
                                      "billed_usd": "0.0133000000"}
        assert printed["totals"]["billed_usd"] == "0.0133150000"
        backend = athena_backends["123456789012"]["us-east-1"]
        [execution] = [x for x in backend.executions.values() if x.workgroup and x.workgroup.name == f"wg-{moto_aws}"]
        assert execution.query == load("monthly_bill_by_dept").sql  # the very text of the .sql file
        assert execution.execution_parameters == ["'2026-11-01'", "'2026-12-01'"]
        assert execution.context["Database"] == service.GLUE_DATABASE
    finally:
        client.delete_work_group(WorkGroup=f"wg-{moto_aws}", RecursiveDeleteOption=True)
        service.reset()


class _FakeAthena:
    def __init__(self, states: list[dict]) -> None:
        self.states = states
        self.stopped: list[str] = []

    def start_query_execution(self, **kwargs: object) -> dict:
        self.request = kwargs
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, QueryExecutionId: str) -> dict:
        return {"QueryExecution": self.states.pop(0) if len(self.states) > 1 else self.states[0]}

    def stop_query_execution(self, QueryExecutionId: str) -> None:
        self.stopped.append(QueryExecutionId)


def test_athena_failures_and_timeouts_are_errors() -> None:
    failed = _FakeAthena([{"Status": {"State": "RUNNING"}},
                          {"Status": {"State": "FAILED", "StateChangeReason": "Bytes scanned limit was exceeded"}}])
    runner = AthenaQueries(failed, workgroup="wg", database="db", poll_seconds=0.01, sleep=lambda _: None)
    with pytest.raises(AthenaQueryFailed, match="Bytes scanned limit"):
        runner.run("top_spenders", ["2026-11-01", "2026-12-01"])
    assert failed.request["WorkGroup"] == "wg" and "ResultConfiguration" not in failed.request
    slow = _FakeAthena([{"Status": {"State": "RUNNING"}}])
    runner = AthenaQueries(slow, workgroup="wg", database="db", poll_seconds=1, timeout_seconds=3,
                           sleep=lambda _: None)
    with pytest.raises(AthenaQueryFailed, match="timed out"):
        runner.run("daily_trend", ["2026-11-01", "2026-12-01"])
    assert slow.stopped == ["q-1"]
    with pytest.raises(ValueError, match="takes 2 parameters"):
        runner.request("daily_trend", ["2026-11-01"])


def test_the_table_output_and_totals() -> None:
    result = engine.QueryResult("monthly_bill_by_dept", ["department_id", "requests", "cost_usd"],
                                [("retail", 3, Decimal("1.2345678901")), ("unallocated", 1, Decimal("0.0000000049"))])
    table = bill.render(result, "table", decimals=2)
    lines = table.splitlines()
    assert lines[0].split() == ["department_id", "requests", "cost_usd"]
    assert lines[2].split() == ["retail", "3", "1.23"]
    assert lines[-1].split() == ["TOTAL", "4", "1.23"]
    assert bill.totals(result) == {"requests": 4, "cost_usd": Decimal("1.2345678950")}
