"""``make run``, then chargeback from another shell: the local stack (moto server on 127.0.0.1, simulated
provider, gateway over HTTP), some traffic, then ``finops export --date`` / ``finops bill`` / ``finops report`` as
separate processes against the emulator, with a local directory standing in for the bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import boto3
import httpx
import pytest
from aws_lambda_powertools.utilities import parameters
from finops import aws
from finops.budgets import table as budget_table
from finops.chargeback import service
from finops.gateway import factory
from finops.keys import model as keys_model
from finops.ledger import model as ledger_model
from finops.ledger.repository import entry_of_item
from finops.local import stack as local_stack
from finops.settings import get_settings

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("chargeback-local-stack")]


def _reset() -> None:
    factory.reset()
    get_settings.cache_clear()
    service.reset()
    aws.client.cache_clear()
    parameters.clear_caches()
    for model in (ledger_model.LedgerRow, keys_model.ApiKey, budget_table.BudgetItem):
        model._connection = None


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[local_stack.LocalStack, dict[str, str]]]:
    """The local stack with this test's own table names; the process environment is restored afterwards."""
    saved = dict(os.environ)
    suffix = uuid.uuid4().hex[:8]
    extra = {"FINOPS_LEDGER_TABLE": f"cb-local-ledger-{suffix}", "FINOPS_KEYS_TABLE": f"cb-local-keys-{suffix}",
             "FINOPS_BUDGETS_TABLE": f"cb-local-budgets-{suffix}", "FINOPS_CHARGEBACK_DIR": str(tmp_path / "bucket")}
    for name in [n for n in os.environ if n.startswith("FINOPS_")]:
        del os.environ[name]
    _reset()
    started = local_stack.start(port=local_stack.free_port(), aws_port=local_stack.free_port(),
                                provider_port=local_stack.free_port(), extra_env=extra,
                                keys_file=tmp_path / "keys.json")
    try:
        yield started, dict(os.environ)
    finally:
        started.stop()
        for server in started.servers:
            server.server_close()
        os.environ.clear()
        os.environ.update(saved)
        _reset()


def finops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``finops ...`` in a fresh process, as a second shell would run it."""
    return subprocess.run([sys.executable, "-m", "finops.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_export_bill_and_report_against_the_local_stack(running, tmp_path: Path) -> None:
    started, env = running
    key = started.keys["enterprise"]
    with httpx.Client(base_url=started.gateway_url, timeout=20) as client:
        for i, (project, user) in enumerate([("checkout-web", "alice"), ("search", "bob"), ("checkout-web", "carol"),
                                             ("search", "alice"), ("demo", "dave")]):
            reply = client.post("/v1/chat/completions", headers={
                "Authorization": f"Bearer {key}", "X-Project-ID": project, "X-User-ID": user,
                "X-Environment": "development"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"How much, {i}?"}]})
            assert reply.status_code == 200, reply.text
    ddb = boto3.client("dynamodb", endpoint_url=started.aws_endpoint, region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")
    items = ddb.scan(TableName=env["FINOPS_LEDGER_TABLE"], ConsistentRead=True)["Items"]
    entries = [entry_of_item(item) for item in items]
    assert len(entries) == 5
    days = sorted({e.day for e in entries})  # today, UTC (yesterday too if the calls straddled midnight)
    month = days[-1][:7]

    exported = finops(env, "export", *[a for d in days for a in ("--date", d)])
    assert exported.returncode == 0, exported.stderr
    summaries = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sum(s["rows"] for s in summaries) == 5 and all(s["reconciled"] for s in summaries)
    bucket = Path(env["FINOPS_CHARGEBACK_DIR"])
    assert all((bucket / "usage" / f"dt={d}" / "part-00000.parquet").is_file() for d in days)

    billed = finops(env, "bill", "--month", month, "--by", "project", "--format", "json")
    assert billed.returncode == 0, billed.stderr
    bill = json.loads(billed.stdout)
    in_month = [e for e in entries if e.day.startswith(month)]
    by_project: dict[str, Decimal] = {}
    for e in in_month:
        by_project[e.project_id] = by_project.get(e.project_id, Decimal(0)) + e.cost_usd + e.tax_usd
    assert {r["project_id"]: Decimal(r["billed_usd"]) for r in bill["rows"]} == by_project  # exact: 10 places
    assert {r["project_id"]: r["department_id"] for r in bill["rows"]} == dict.fromkeys(by_project, "unallocated")

    table = finops(env, "bill", "--month", month)
    assert table.returncode == 0 and "unallocated" in table.stdout and table.stdout.splitlines()[-1].startswith("TOTAL")

    report = finops(env, "report", "--month", month)
    assert report.returncode == 0, report.stderr
    html = (bucket / f"report-{month}.html").read_text()
    assert html.count("<svg") == 3 and f"AI chargeback report, {month}" in html
    assert datetime.now(UTC).strftime("%Y-%m") >= month
