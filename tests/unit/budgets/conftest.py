"""Budget-engine unit fixtures: a fake clock, and DynamoDB (moto, in-process) for the bucket store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from budgets_support import TABLES, CallLog, FakeClock, aws_test_env, forget_connections
from finops.budgets import table as budget_table
from finops.budgets.store import BucketStore
from finops.ledger import model as ledger_model
from finops.ledger.repository import LedgerRepository
from moto import mock_aws


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A DynamoDB client against moto with the ledger and budgets tables (created from the models).

    moto's backends are process-global (shared with any in-process moto server another test runs), so they are
    neither reset nor wiped here: this test's tables get unique names and are deleted afterwards.
    """
    aws_test_env(monkeypatch)
    forget_connections()
    suffix = uuid.uuid4().hex[:10]
    TABLES.ledger, TABLES.budgets = f"finops-ledger-ut-{suffix}", f"finops-budgets-ut-{suffix}"
    mock = mock_aws()
    mock.start(reset=False)
    try:
        assert "AWS_ENDPOINT_URL" not in os.environ
        ledger_model.bind(TABLES.ledger).create_table(wait=True)
        budget_table.bind(TABLES.budgets).create_table(wait=True)
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield client
        for table in (TABLES.ledger, TABLES.budgets):
            client.delete_table(TableName=table)
    finally:
        forget_connections()
        mock.stop(remove_data=False)


@pytest.fixture
def call_log(ddb: Any) -> CallLog:
    return CallLog().attach(ddb)


def _store(client: Any, clock: FakeClock) -> BucketStore:
    return BucketStore(client, TABLES.budgets, ledger_table=TABLES.ledger, clock=clock, sleep=lambda _: None)


@pytest.fixture
def store(ddb: Any, clock: FakeClock) -> BucketStore:
    return _store(ddb, clock)


@pytest.fixture
def new_store(ddb: Any, clock: FakeClock) -> Callable[[], BucketStore]:
    """Another BucketStore on the same table and clock (a cold Lambda: it has no estimates)."""
    return lambda: _store(ddb, clock)


@pytest.fixture
def ledger(ddb: Any) -> LedgerRepository:
    return LedgerRepository(TABLES.ledger, 8)
