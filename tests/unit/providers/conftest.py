"""Fixtures for the Bedrock adapter: one 127.0.0.1 server per module, fake credentials, a provider aimed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from finops.providers.bedrock import BedrockProvider
from finops.settings import ProviderConfig
from providers_support import LocalServer


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    yield srv
    srv.close()


@pytest.fixture
def bedrock_env(monkeypatch: pytest.MonkeyPatch, server: LocalServer) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    server.seen.clear()
    while not server.replies.empty():
        server.replies.get_nowait()
    yield
    assert server.replies.empty(), "a queued reply was not used"


@pytest.fixture
def bedrock_provider(server: LocalServer) -> BedrockProvider:
    return BedrockProvider(ProviderConfig(base_url=server.url, timeout_seconds=2, connect_timeout_seconds=1))
