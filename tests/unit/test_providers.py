"""Provider adapters against httpx.MockTransport: what is sent, and how upstream failures map."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from finops.errors import ProviderError, ProviderTimeout
from finops.pricing import Usage
from finops.providers.groq import GroqProvider
from finops.providers.openai import OpenAIProvider
from finops.providers.openai_compatible import MAX_UPSTREAM_MESSAGE, parse_usage
from finops.providers.registry import PROVIDERS
from finops.settings import ProviderConfig

CONFIG = ProviderConfig(base_url="http://127.0.0.1:9/openai/v1/", secret_name="finops/providers/openai")
OK_BODY = {"id": "x", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
              "prompt_tokens_details": {"cached_tokens": 4}}}


@pytest.fixture(autouse=True)
def env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-env-groq")


def adapter(cls: type, handler: Any) -> Any:
    return cls(CONFIG, transport=httpx.MockTransport(handler))


def test_registry() -> None:
    assert {"openai": OpenAIProvider, "groq": GroqProvider} == PROVIDERS


def test_request_shape_and_usage() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK_BODY)

    result = adapter(OpenAIProvider, handler).complete({"model": "gpt-4o", "messages": [], "logprobs": True})
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "http://127.0.0.1:9/openai/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-env-openai"
    assert json.loads(request.content) == {"model": "gpt-4o", "messages": [], "logprobs": True}
    assert result.body == OK_BODY
    assert result.usage == Usage(prompt_tokens=9, completion_tokens=2, cached_tokens=4)


def test_groq_drops_unsupported_fields_and_uses_its_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK_BODY)

    adapter(GroqProvider, handler).complete(
        {"model": "llama-3.1-8b-instant", "messages": [], "logprobs": True, "top_logprobs": 2,
         "logit_bias": {"1": 2}, "temperature": 0})
    sent = json.loads(seen[0].content)
    assert sent == {"model": "llama-3.1-8b-instant", "messages": [], "temperature": 0}
    assert seen[0].headers["Authorization"] == "Bearer gsk-env-groq"


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_upstream_http_errors_become_provider_error(status: int) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": "upstream says no"}})

    with pytest.raises(ProviderError) as info:
        adapter(OpenAIProvider, handler).complete({"model": "m", "messages": []})
    err = info.value
    assert not isinstance(err, ProviderTimeout)
    assert err.status == 502
    assert err.provider == "openai"
    assert err.upstream_status == status
    assert "upstream says no" in err.message
    assert err.envelope()["error"]["provider"] == "openai"
    assert err.envelope()["error"]["upstream_status"] == status


def test_long_upstream_message_is_truncated() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "x" * 5000}})

    with pytest.raises(ProviderError) as info:
        adapter(OpenAIProvider, handler).complete({"model": "m", "messages": []})
    assert info.value.message.count("x") == MAX_UPSTREAM_MESSAGE


def test_timeout_becomes_provider_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderTimeout) as info:
        adapter(OpenAIProvider, handler).complete({"model": "m", "messages": []})
    assert info.value.status == 504
    assert info.value.code == "provider_timeout"


def test_connection_failure_becomes_provider_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderError) as info:
        adapter(OpenAIProvider, handler).complete({"model": "m", "messages": []})
    assert info.value.status == 502
    assert info.value.code == "provider_error"


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>bad gateway</html>"),
    httpx.Response(200, json={"id": "x"}),
    httpx.Response(200, json=["not", "an", "object"]),
    httpx.Response(200, json={"choices": "nope"}),
])
def test_garbage_becomes_provider_error(response: httpx.Response) -> None:
    with pytest.raises(ProviderError) as info:
        adapter(OpenAIProvider, lambda _: response).complete({"model": "m", "messages": []})
    assert info.value.status == 502


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None),
    ({}, None),
    ({"completion_tokens": 3}, None),
    ({"prompt_tokens": 5, "completion_tokens": 3}, Usage(prompt_tokens=5, completion_tokens=3)),
    ({"prompt_tokens": 5, "completion_tokens": None}, Usage(prompt_tokens=5)),
    ({"prompt_tokens": 5, "prompt_tokens_details": None}, Usage(prompt_tokens=5)),
    ({"prompt_tokens": "x"}, None),
    ({"prompt_tokens": -1}, None),
])
def test_parse_usage(raw: Any, expected: Usage | None) -> None:
    assert parse_usage(raw) == expected


def test_missing_usage_is_reported_as_none() -> None:
    body = {k: v for k, v in OK_BODY.items() if k != "usage"}
    result = adapter(OpenAIProvider, lambda _: httpx.Response(200, json=body)).complete({"model": "m"})
    assert result.usage is None
