"""``make run``: the whole gateway on one laptop, nothing to configure.

- moto's server in-process on 127.0.0.1:4566 (``AWS_ENDPOINT_URL``), so boto3 and the aws CLI can look in;
- the same DynamoDB tables the CDK app defines (both come from the PynamoDB models) and the provider
  secrets in its Secrets Manager;
- a simulated provider standing in for OpenAI and Groq (OpenAI's API), Anthropic (its Messages API) and
  Bedrock (its Converse API, reached by botocore);
- the real gateway handler behind an API Gateway proxy-event bridge on 127.0.0.1:8080 (``PORT``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer

from .. import aws
from ..budgets import table as budget_table
from ..budgets.policy import load_policy
from ..errors import FinOpsError
from ..gateway import factory
from ..keys import model as keys_model
from ..keys.service import KeySpec
from ..ledger import model as ledger_model
from ..settings import ProviderConfig, get_settings
from ..streaming_runtime import StreamedHttpResponse
from . import apigw_bridge, aws_emulator, simulated_provider
from .lambda_runtime import invoke, invoke_streaming

LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
    "POWERTOOLS_SERVICE_NAME": "finops-gateway",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "LOG_LEVEL": "WARNING",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStack:
    aws_endpoint: str
    gateway_url: str
    provider_url: str
    keys: dict[str, str] = field(default_factory=dict)
    servers: list[BaseWSGIServer] = field(default_factory=list)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.shutdown()


def create_tables() -> None:
    """The tables the CDK app defines, created from the same PynamoDB models."""
    settings = get_settings()
    for model in (ledger_model.bind(settings.ledger_table), keys_model.bind(settings.keys_table),
                  budget_table.bind(settings.budgets_table)):
        if not model.exists():
            model.create_table(wait=True)
    aws.client("dynamodb").update_time_to_live(
        TableName=settings.budgets_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": budget_table.TTL_ATTRIBUTE})


def seed_keys(path: Path) -> dict[str, str]:
    """One key per tier, written to ``path`` (reused if the file's keys still exist)."""
    settings = get_settings()
    service = factory.keys(settings)
    if path.exists():
        known = json.loads(path.read_text())
        try:
            if all(service.authenticate(f"Bearer {k}") for k in known.values()):
                return known
        except FinOpsError:
            pass
    keys = {}
    for tier in load_policy(settings.budget_policy_path).tiers:
        key, _ = service.create(KeySpec(name=f"local-{tier}", tier=tier))
        keys[tier] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys, indent=2) + "\n")
    path.chmod(0o600)
    return keys


# The providers the simulator stands in for (name -> API key secret, as in the settings; Bedrock has none, it
# signs with the local AWS credentials) and the root of each one's API on the simulator: the OpenAI-compatible
# ones' ``.../chat/completions`` and Anthropic's ``.../messages`` under ``/<name>/v1``, Bedrock's
# ``/model/{id}/converse[-stream]`` under ``/bedrock`` (boto3's endpoint_url).
LOCAL_PROVIDERS = {"openai": ("finops/providers/openai", "/openai/v1"), "groq": ("finops/providers/groq", "/groq/v1"),
                   "anthropic": ("finops/providers/anthropic", "/anthropic/v1"), "bedrock": (None, "/bedrock")}


def local_providers(provider_url: str, timeout_seconds: float) -> dict[str, ProviderConfig]:
    """Every provider aimed at the simulator."""
    return {name: ProviderConfig(base_url=provider_url + root, secret_name=secret,
                                 timeout_seconds=timeout_seconds, connect_timeout_seconds=2)
            for name, (secret, root) in LOCAL_PROVIDERS.items()}


def seed_secrets() -> None:
    sm = aws.client("secretsmanager")
    for name, config in get_settings().providers.items():
        if config.secret_name is None:
            continue
        try:
            sm.create_secret(Name=config.secret_name, SecretString=f"sk-local-{name}")
        except sm.exceptions.ResourceExistsException:
            pass


def dispatch(event: dict[str, Any]) -> dict[str, Any] | StreamedHttpResponse:
    """The API's routes as the CDK app wires them: chat completions to the response-streaming function,
    everything else to the gateway function."""
    if event.get("httpMethod") == "POST" and event.get("path", "").rstrip("/") == "/v1/chat/completions":
        return invoke_streaming("gateway_stream", event)
    return invoke("gateway", event)


def quiet_servers() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def start(*, port: int = 8080, aws_port: int = 4566, provider_port: int = 0, latency_ms: int = 0,
          error_rate: float = 0.0, extra_env: dict[str, str] | None = None, provider_timeout_seconds: float = 10,
          keys_file: Path = Path(".local/keys.json")) -> LocalStack:
    quiet_servers()
    moto = aws_emulator.serve(port=aws_port)
    aws_endpoint = f"http://127.0.0.1:{moto.port}"
    provider = simulated_provider.serve(port=provider_port, config=simulated_provider.SimulatorConfig(
        latency_ms=latency_ms, error_rate=error_rate))
    provider_url = f"http://127.0.0.1:{provider.port}"
    providers = {name: config.model_dump() for name, config in
                 local_providers(provider_url, provider_timeout_seconds).items()}
    os.environ.update(LOCAL_ENV)
    os.environ.update({"AWS_ENDPOINT_URL": aws_endpoint, "FINOPS_PROVIDERS": json.dumps(providers)})
    os.environ.update(extra_env or {})
    factory.reset()
    create_tables()
    seed_secrets()
    keys = seed_keys(keys_file)
    bridge = apigw_bridge.serve(dispatch, port=port)
    return LocalStack(aws_endpoint=aws_endpoint, gateway_url=f"http://127.0.0.1:{bridge.port}",
                      provider_url=provider_url, keys=keys, servers=[moto, provider, bridge])
