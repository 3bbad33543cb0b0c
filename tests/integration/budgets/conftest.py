"""Budget integration fixtures: moto in-process (DynamoDB, SNS, SQS, EventBridge), the simulated provider on
127.0.0.1, the real handlers, and a gateway on a fake clock."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from budgets_it_support import Alerts, BudgetStack, RecordingSimulator, Tables, forget_connections
from finops.budgets import table as budget_table
from finops.keys import model as keys_model
from finops.ledger import model as ledger_model
from finops.local import simulated_provider
from moto import mock_aws


@pytest.fixture(scope="session")
def budget_sim() -> Iterator[RecordingSimulator]:
    server = simulated_provider.serve(port=0)
    recording = RecordingSimulator(server)
    app = server.app
    dispatch = app.dispatch

    def recorded(request: Any) -> Any:
        with recording.lock:
            recording.calls.append({"path": request.path, "body": request.get_data(as_text=True)})
        return dispatch(request)

    app.dispatch = recorded
    try:
        yield recording
    finally:
        server.shutdown()
        server.server_close()


def _clean_env(monkeypatch: pytest.MonkeyPatch, tables: Tables) -> None:
    for name in list(os.environ):
        if name.startswith(("FINOPS_", "AWS_", "POWERTOOLS_")) or name in ("OPENAI_API_KEY", "GROQ_API_KEY"):
            monkeypatch.delenv(name)
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "finops-gateway", "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
        "LOG_LEVEL": "WARNING", "OPENAI_API_KEY": "sk-it-openai", "GROQ_API_KEY": "gsk-it-groq", **tables.env(),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tables]:
    """A clean environment and moto (no tables yet), with this test's unique resource names in FINOPS_*.

    moto's backends are process-global and shared with any in-process moto server other tests run, so they are
    neither reset on start nor wiped on stop; this test's tables are deleted afterwards.
    """
    tables = Tables(uuid.uuid4().hex[:10])
    _clean_env(monkeypatch, tables)
    forget_connections()
    mock = mock_aws()
    mock.start(reset=False)
    try:
        assert "AWS_ENDPOINT_URL" not in os.environ
        yield tables
        client = boto3.client("dynamodb", region_name="us-east-1")
        existing = set(client.list_tables()["TableNames"])
        for table in (tables.ledger, tables.keys, tables.budgets):
            if table in existing:
                client.delete_table(TableName=table)
    finally:
        forget_connections()
        mock.stop(remove_data=False)


@pytest.fixture
def bstack(aws_env: Tables, monkeypatch: pytest.MonkeyPatch, budget_sim: RecordingSimulator,
           tmp_path: Path) -> BudgetStack:
    """Tables created from the PynamoDB models; providers pointed at the simulator."""
    ledger_model.bind(aws_env.ledger).create_table(wait=True)
    keys_model.bind(aws_env.keys).create_table(wait=True)
    budget_table.bind(aws_env.budgets).create_table(wait=True)
    with budget_sim.lock:
        budget_sim.calls.clear()
    stack = BudgetStack(monkeypatch, budget_sim, tmp_path, aws_env)
    monkeypatch.setenv("FINOPS_PROVIDERS", json.dumps(stack.providers()))
    forget_connections()
    return stack


@pytest.fixture
def alerts(bstack: BudgetStack) -> Alerts:
    return Alerts.create(f"budget-alerts-{bstack.tables.suffix}")
