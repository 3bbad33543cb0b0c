"""One local stack per test session (moto server, simulated provider, API Gateway bridge on 127.0.0.1).

``stack.start`` writes its configuration into ``os.environ``; that environment is captured, the process
environment restored at once, and the captured one re-applied only while an e2e test runs, so nothing
else in the session sees it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from finops import aws
from finops.gateway import factory
from finops.local import stack as local_stack
from finops.settings import get_settings
from openai import OpenAI


def _reset_caches() -> None:
    from finops.budgets import table as budget_table
    from finops.keys import model as keys_model
    from finops.ledger import model as ledger_model

    factory.reset()
    get_settings.cache_clear()
    aws.client.cache_clear()
    parameters.clear_caches()
    for model in (ledger_model.LedgerRow, keys_model.ApiKey, budget_table.BudgetItem):
        model._connection = None


@dataclass
class RunningStack:
    stack: Any
    env: dict[str, str]
    keys_file: Path
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.stack.gateway_url

    @property
    def key(self) -> str | None:
        return self.keys.get("enterprise") or next(iter(self.keys.values()), None)

    def ensure_seeded(self) -> None:
        """Re-create tables, secrets and keys if something reset moto's (process-global) backends."""
        local_stack.create_tables()
        local_stack.seed_secrets()
        self.keys = local_stack.seed_keys(self.keys_file)

    def dynamodb(self) -> Any:
        return boto3.client("dynamodb", endpoint_url=self.stack.aws_endpoint, region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")

    def ledger_row(self, request_id: str) -> dict[str, Any] | None:
        table = self.env.get("FINOPS_LEDGER_TABLE", "finops-ledger")
        return self.dynamodb().get_item(TableName=table, Key={"request_id": {"S": request_id}},
                                        ConsistentRead=True).get("Item")

    def wait_for_ledger_row(self, request_id: str, timeout: float = 10) -> dict[str, Any]:
        """The row, once the call has settled (a stream settles after its last byte reached the client)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.ledger_row(request_id)
            if row is not None:
                return row
            time.sleep(0.05)
        raise AssertionError(f"no ledger row for {request_id}")


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    saved = dict(os.environ)
    keys_file = tmp_path_factory.mktemp("stack") / "keys.json"
    started = None
    try:
        started = local_stack.start(
            port=local_stack.free_port(), aws_port=local_stack.free_port(),
            provider_port=local_stack.free_port(), keys_file=keys_file, provider_timeout_seconds=2)
        env = dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _reset_caches()
    try:
        yield RunningStack(started, env, keys_file, dict(started.keys))
    finally:
        started.stop()
        for server in started.servers:
            server.server_close()
        _reset_caches()


@pytest.fixture(autouse=True)
def _stack_environment(running_stack: RunningStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name not in running_stack.env:
            monkeypatch.delenv(name)
    for name, value in running_stack.env.items():
        monkeypatch.setenv(name, value)
    _reset_caches()
    running_stack.ensure_seeded()
    yield
    _reset_caches()


@pytest.fixture
def virtual_key(running_stack: RunningStack) -> str | None:
    return running_stack.key


@pytest.fixture
def sdk(running_stack: RunningStack, tagged_headers: Any) -> OpenAI:
    """The openai SDK pointed at the local stack, with the cost tags and the virtual key."""
    return OpenAI(base_url=f"{running_stack.url}/v1", api_key="unused-see-default-headers",
                  default_headers=tagged_headers(), max_retries=0, timeout=20)
