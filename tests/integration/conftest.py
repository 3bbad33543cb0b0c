"""The real handler under moto (in-process ``mock_aws``) with a simulated provider on 127.0.0.1."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from finops import aws
from finops.gateway import factory
from finops.ledger import model as ledger_model
from finops.ledger.repository import LedgerRepository
from finops.local import lambda_runtime, simulated_provider

LEDGER_TABLE = "finops-ledger-it"
SECRETS = {"openai": "sk-it-openai-5f3a9c", "groq": "gsk-it-groq-81d2e4"}


@dataclass
class RecordingSimulator:
    """The simulated provider, plus what it was sent (path and Authorization header of every call)."""

    server: Any
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture(scope="session")
def simulator() -> Iterator[RecordingSimulator]:
    server = simulated_provider.serve(port=0)
    recording = RecordingSimulator(server)
    app = server.app
    dispatch = app.dispatch

    def recorded(request: Any) -> Any:
        with recording.lock:
            recording.calls.append({"path": request.path,
                                    "authorization": request.headers.get("Authorization"),
                                    "body": request.get_data(as_text=True)})
        return dispatch(request)

    app.dispatch = recorded
    try:
        yield recording
    finally:
        server.shutdown()
        server.server_close()


def _reset_caches() -> None:
    factory.reset()
    aws.client.cache_clear()
    parameters.clear_caches()
    ledger_model.LedgerRow._connection = None


@dataclass
class GatewayEnv:
    monkeypatch: pytest.MonkeyPatch
    simulator: RecordingSimulator
    repo: LedgerRepository | None = None

    def providers(self, **overrides: Any) -> dict[str, Any]:
        return {
            name: {"base_url": f"{self.simulator.url}/{name}/v1", "secret_name": f"finops/providers/{name}",
                   "timeout_seconds": 5, "connect_timeout_seconds": 2, **overrides}
            for name in ("openai", "groq")
        }

    def set(self, **env: str) -> None:
        """Change ``FINOPS_*``/other variables for the next invocation (the gateway is rebuilt)."""
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        factory.reset()

    def unset(self, *names: str) -> None:
        for name in names:
            self.monkeypatch.delenv(name, raising=False)
        factory.reset()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return lambda_runtime.invoke("gateway", event)

    def rows(self) -> list[Any]:
        assert self.repo is not None
        return [ledger_model.LedgerRow.from_raw_data(item) for item in _scan_raw(self.repo)]


def _scan_raw(repo: LedgerRepository) -> list[dict[str, Any]]:
    # Test-side inspection of the whole (tiny) table, straight from DynamoDB.
    client = aws.client("dynamodb")
    return client.scan(TableName=repo.model.Meta.table_name)["Items"]


@pytest.fixture
def gateway_env(monkeypatch: pytest.MonkeyPatch, simulator: RecordingSimulator) -> Iterator[GatewayEnv]:
    for name in list(os.environ):
        if name.startswith(("FINOPS_", "AWS_ENDPOINT_URL", "AWS_PROFILE")) or name in (
                "OPENAI_API_KEY", "GROQ_API_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name)
    env = GatewayEnv(monkeypatch, simulator)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "finops-gateway")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FinOpsGateway")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("FINOPS_LEDGER_TABLE", LEDGER_TABLE)
    monkeypatch.setenv("FINOPS_PROVIDERS", json.dumps(env.providers()))
    _reset_caches()
    with simulator.lock:
        simulator.calls.clear()
    with mock_aws():
        assert "AWS_ENDPOINT_URL" not in os.environ
        ledger_model.bind(LEDGER_TABLE).create_table(wait=True)
        sm = aws.client("secretsmanager")
        for name, value in SECRETS.items():
            sm.create_secret(Name=f"finops/providers/{name}", SecretString=value)
        env.repo = LedgerRepository(LEDGER_TABLE, 8)
        try:
            yield env
        finally:
            _reset_caches()
    _reset_caches()
