"""The real handler under moto (in-process ``mock_aws``) with a simulated provider on 127.0.0.1.

Each test gets its own tables and secrets (unique names, deleted afterwards), a virtual key, and a fresh
gateway built from the environment set here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from finops import aws
from finops.budgets import table as budget_table
from finops.gateway import factory
from finops.keys import model as keys_model
from finops.keys.service import KeySpec
from finops.ledger import model as ledger_model
from finops.ledger.entry import LedgerEntry
from finops.ledger.repository import LedgerRepository, entry_of_item
from finops.local import lambda_runtime, simulated_provider
from finops.settings import get_settings

PROVIDER_NAMES = ("openai", "groq")
MODELS = (ledger_model.LedgerRow, keys_model.ApiKey, budget_table.BudgetItem)


@dataclass
class RecordingSimulator:
    """The simulated provider, plus what it was sent (path, Authorization header and body of every call)."""

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
    get_settings.cache_clear()
    aws.client.cache_clear()
    parameters.clear_caches()
    for model in MODELS:
        model._connection = None


@dataclass
class Result:
    """An API Gateway proxy result, with case-insensitive header access."""

    raw: dict[str, Any]

    @property
    def status(self) -> int:
        return int(self.raw["statusCode"])

    @property
    def headers(self) -> dict[str, str]:
        out = {k.lower(): str(v) for k, v in (self.raw.get("headers") or {}).items()}
        for key, values in (self.raw.get("multiValueHeaders") or {}).items():
            out[key.lower()] = ", ".join(str(v) for v in values)
        return out

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def body(self) -> str:
        body = self.raw.get("body") or ""
        return base64.b64decode(body).decode() if self.raw.get("isBase64Encoded") else body

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> dict[str, Any]:
        envelope = self.json()
        assert set(envelope) == {"error"}, envelope
        return envelope["error"]


@dataclass
class GatewayEnv:
    monkeypatch: pytest.MonkeyPatch
    simulator: RecordingSimulator
    suffix: str
    key: str | None = None
    repo: LedgerRepository | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def ledger_table(self) -> str:
        return f"it-ledger-{self.suffix}"

    @property
    def keys_table(self) -> str:
        return f"it-keys-{self.suffix}"

    @property
    def budgets_table(self) -> str:
        return f"it-budgets-{self.suffix}"

    def secret_name(self, provider: str) -> str:
        return f"it/{self.suffix}/providers/{provider}"

    def providers(self, **overrides: Any) -> dict[str, Any]:
        return {
            name: {"base_url": f"{self.simulator.url}/{name}/v1", "secret_name": self.secret_name(name),
                   "timeout_seconds": 5, "connect_timeout_seconds": 2, **overrides}
            for name in PROVIDER_NAMES
        }

    def set(self, **env: str) -> None:
        """Change environment variables for the next invocation (the gateway is rebuilt)."""
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        factory.reset()
        get_settings.cache_clear()

    def invoke(self, event: dict[str, Any]) -> Result:
        return Result(lambda_runtime.invoke("gateway", event))

    def raw_items(self) -> list[dict[str, Any]]:
        """Every ledger item as DynamoDB stores it (test-side inspection of a tiny table)."""
        return aws.client("dynamodb").scan(TableName=self.ledger_table, ConsistentRead=True)["Items"]

    def entries(self) -> list[LedgerEntry]:
        return [entry_of_item(item) for item in self.raw_items()]


@pytest.fixture
def gateway_env(monkeypatch: pytest.MonkeyPatch, simulator: RecordingSimulator, moto_aws: str) -> Iterator[GatewayEnv]:
    for name in list(os.environ):
        if name.startswith("FINOPS_") or name in ("OPENAI_API_KEY", "GROQ_API_KEY"):
            monkeypatch.delenv(name)
    env = GatewayEnv(monkeypatch, simulator, suffix=moto_aws)
    for key, value in {
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "finops-gateway",
        "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
        "LOG_LEVEL": "WARNING",
        "FINOPS_LEDGER_TABLE": env.ledger_table,
        "FINOPS_KEYS_TABLE": env.keys_table,
        "FINOPS_BUDGETS_TABLE": env.budgets_table,
        "FINOPS_PROVIDERS": json.dumps(env.providers()),
    }.items():
        monkeypatch.setenv(key, value)
    _reset_caches()
    with simulator.lock:
        simulator.calls.clear()
    assert "AWS_ENDPOINT_URL" not in os.environ
    settings = get_settings()
    for bind, table in ((ledger_model.bind, env.ledger_table), (keys_model.bind, env.keys_table),
                        (budget_table.bind, env.budgets_table)):
        bind(table).create_table(wait=True)
    sm = aws.client("secretsmanager")
    for name in PROVIDER_NAMES:
        env.secrets[name] = f"sk-it-{name}-{moto_aws}"
        sm.create_secret(Name=env.secret_name(name), SecretString=env.secrets[name])
    env.key, _ = factory.keys(settings).create(KeySpec(name="integration-tests", tier="enterprise"))
    env.repo = LedgerRepository(env.ledger_table, settings.ledger_shards)
    try:
        yield env
    finally:
        _reset_caches()
        ddb = aws.client("dynamodb")
        for table in (env.ledger_table, env.keys_table, env.budgets_table):
            ddb.delete_table(TableName=table)
        sm = aws.client("secretsmanager")
        for name in PROVIDER_NAMES:
            with contextlib.suppress(sm.exceptions.ResourceNotFoundException):
                sm.delete_secret(SecretId=env.secret_name(name), ForceDeleteWithoutRecovery=True)
        _reset_caches()


@pytest.fixture
def virtual_key(gateway_env: GatewayEnv) -> str | None:
    return gateway_env.key
