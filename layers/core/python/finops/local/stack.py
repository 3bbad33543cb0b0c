"""``make run``: the whole gateway on one laptop, nothing to configure.

- moto's server in-process on 127.0.0.1:4566 (``AWS_ENDPOINT_URL``), so boto3 and the aws CLI can look in;
- the same DynamoDB tables the CDK app defines (both come from the PynamoDB models) and the provider
  secrets in its Secrets Manager;
- a simulated OpenAI-compatible provider standing in for OpenAI and Groq;
- the real gateway handler behind an API Gateway proxy-event bridge on 127.0.0.1:8080 (``PORT``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer

from .. import aws
from ..gateway import factory
from ..ledger.model import bind
from ..settings import _default_providers
from . import apigw_bridge, simulated_provider
from .lambda_runtime import invoke

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
    servers: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.shutdown() if isinstance(server, BaseWSGIServer) else server.stop()


def create_tables() -> None:
    from ..settings import get_settings

    settings = get_settings()
    ledger = bind(settings.ledger_table)
    if not ledger.exists():
        ledger.create_table(wait=True)


def seed_secrets() -> None:
    sm = aws.client("secretsmanager")
    for name, config in _default_providers().items():
        try:
            sm.create_secret(Name=config.secret_name, SecretString=f"sk-local-{name}")
        except sm.exceptions.ResourceExistsException:
            pass


def quiet_servers() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def start(*, port: int = 8080, aws_port: int = 4566, provider_port: int = 0, latency_ms: int = 0,
          error_rate: float = 0.0, extra_env: dict[str, str] | None = None) -> LocalStack:
    from moto.server import ThreadedMotoServer

    quiet_servers()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=aws_port or free_port(), verbose=False)
    moto.start()
    aws_endpoint = f"http://127.0.0.1:{moto._port}"
    provider = simulated_provider.serve(port=provider_port, config=simulated_provider.SimulatorConfig(
        latency_ms=latency_ms, error_rate=error_rate))
    provider_url = f"http://127.0.0.1:{provider.port}"
    providers = {
        name: {**config.model_dump(), "base_url": f"{provider_url}/{name}/v1", "timeout_seconds": 10}
        for name, config in _default_providers().items()
    }
    os.environ.update(LOCAL_ENV)
    os.environ.update({"AWS_ENDPOINT_URL": aws_endpoint, "FINOPS_PROVIDERS": json.dumps(providers)})
    os.environ.update(extra_env or {})
    aws.client.cache_clear()
    factory.reset()
    create_tables()
    seed_secrets()
    bridge = apigw_bridge.serve(lambda event: invoke("gateway", event), port=port)
    return LocalStack(aws_endpoint=aws_endpoint, gateway_url=f"http://127.0.0.1:{bridge.port}",
                      provider_url=provider_url, servers=[moto, provider, bridge])
