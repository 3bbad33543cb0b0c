"""OpenAI and Groq adapters against recorded responses served by httpx.MockTransport: what is sent, what comes
back (complete and streamed), and how upstream failures map to the typed errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from finops.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from finops.pricing import Usage
from finops.providers.anthropic import AnthropicProvider
from finops.providers.bedrock import BedrockProvider
from finops.providers.groq import GroqProvider
from finops.providers.openai import OpenAIProvider
from finops.providers.openai_compatible import MAX_UPSTREAM_MESSAGE, parse_usage
from finops.providers.registry import PROVIDERS
from finops.settings import ProviderConfig
from providers_support import Recorded, Upstream, first_then_rest, recorded

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


def served(cls: type, *recs: Recorded, **kw: Any) -> tuple[Any, Upstream]:
    upstream = Upstream()
    for rec in recs:
        upstream.serve(rec, **kw)
    return cls(CONFIG, transport=upstream.transport()), upstream


def test_registry() -> None:
    assert {"openai": OpenAIProvider, "groq": GroqProvider, "anthropic": AnthropicProvider,
            "bedrock": BedrockProvider} == PROVIDERS


# --- complete ---------------------------------------------------------------------------------------------


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


def test_recorded_openai_completion() -> None:
    rec = recorded("openai", "completion")
    provider, upstream = served(OpenAIProvider, rec)
    result = provider.complete({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}],
                                "stream": True, "stream_options": {"include_usage": True}})
    assert result.body == rec.json()
    assert result.usage == Usage(prompt_tokens=1219, completion_tokens=9, cached_tokens=1024)
    assert "stream" not in upstream.json_body()  # complete() never asks for a stream
    assert "stream_options" not in upstream.json_body()


def test_recorded_groq_completion_and_dropped_fields() -> None:
    rec = recorded("groq", "completion")
    provider, upstream = served(GroqProvider, rec)
    result = provider.complete({"model": "llama-3.3-70b-versatile", "messages": [], "logprobs": True,
                                "top_logprobs": 2, "logit_bias": {"1": 2}, "temperature": 0})
    assert upstream.json_body() == {"model": "llama-3.3-70b-versatile", "messages": [], "temperature": 0}
    assert upstream.requests[0].headers["Authorization"] == "Bearer gsk-env-groq"
    assert result.usage == Usage(prompt_tokens=48, completion_tokens=12)
    assert result.body["choices"][0]["message"]["content"].startswith("Fast language models")


# --- stream -----------------------------------------------------------------------------------------------


def test_stream_asks_for_usage_and_yields_every_chunk_including_the_usage_chunk() -> None:
    rec = recorded("openai", "stream")
    provider, upstream = served(OpenAIProvider, rec)
    chunks = list(provider.stream({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
                                   "stream": False, "stream_options": {"include_usage": False}}))
    sent = upstream.json_body()
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert upstream.requests[0].headers["Accept"] == "text/event-stream"
    expected = [json.loads(line.removeprefix(b"data: ")) for line in rec.body.split(b"\n")
                if line.startswith(b"data: {")]
    assert [c.body for c in chunks] == expected
    assert "".join(c.body["choices"][0]["delta"].get("content", "") for c in chunks if c.body["choices"]) == (
        "Hello! How can I help?")
    assert [c.usage for c in chunks if c.usage] == [Usage(prompt_tokens=19, completion_tokens=7)]
    last = chunks[-1]
    assert last.body["choices"] == []
    assert last.usage == Usage(prompt_tokens=19, completion_tokens=7)


def test_stream_yields_before_the_body_is_read() -> None:
    rec = recorded("openai", "stream")
    provider, upstream = served(OpenAIProvider, rec)
    total = -(-len(rec.body) // 7)

    def nothing_buffered() -> None:
        assert upstream.pieces_read < total / 2

    chunks = first_then_rest(provider.stream({"model": "gpt-4o-mini", "messages": []}), nothing_buffered)
    assert upstream.pieces_read == total
    assert len(chunks) == 6


def test_stream_tool_calls_pass_through() -> None:
    provider, _ = served(OpenAIProvider, recorded("openai", "stream_tool_calls"))
    chunks = list(provider.stream({"model": "gpt-4o", "messages": []}))
    arguments = "".join(c.body["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                        for c in chunks if c.body["choices"] and "tool_calls" in c.body["choices"][0]["delta"])
    assert json.loads(arguments) == {"location": "Paris, France"}
    assert chunks[-2].body["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1].usage == Usage(prompt_tokens=81, completion_tokens=17)


@pytest.mark.parametrize("name", ["stream_x_groq", "stream_usage"])
def test_groq_stream_usage_in_either_place(name: str) -> None:
    provider, _ = served(GroqProvider, recorded("groq", name))
    chunks = list(provider.stream({"model": "llama-3.1-8b-instant", "messages": []}))
    usages = [c.usage for c in chunks if c.usage is not None]
    expected = {"stream_x_groq": Usage(prompt_tokens=38, completion_tokens=3),
                "stream_usage": Usage(prompt_tokens=44, completion_tokens=2)}[name]
    assert usages == [expected]


def test_openai_adapter_does_not_read_x_groq() -> None:
    provider, _ = served(OpenAIProvider, recorded("groq", "stream_x_groq"))
    assert all(c.usage is None for c in provider.stream({"model": "m", "messages": []}))


def test_error_event_mid_stream_raises_after_the_chunks_so_far() -> None:
    provider, _ = served(OpenAIProvider, recorded("openai", "stream_error"))
    received = []
    with pytest.raises(ProviderUnavailable) as info:
        for chunk in provider.stream({"model": "gpt-4o", "messages": []}):
            received.append(chunk)
    assert len(received) == 2
    assert "had an error" in info.value.message
    assert info.value.retryable


def test_stream_cut_before_done_is_unavailable() -> None:
    rec = recorded("openai", "stream")
    cut = rec.body.index(b"data: [DONE]")
    provider, _ = served(OpenAIProvider, rec, cut_at=cut)
    received = []
    with pytest.raises(ProviderUnavailable, match=r"before \[DONE\]"):
        for chunk in provider.stream({"model": "m", "messages": []}):
            received.append(chunk)
    assert received[-1].usage == Usage(prompt_tokens=19, completion_tokens=7)  # what arrived is kept


def test_connection_dropped_mid_stream_is_unavailable() -> None:
    rec = recorded("openai", "stream")
    provider, _ = served(OpenAIProvider, rec, cut_at=rec.body.index(b"!"), drop=True)
    received = []
    with pytest.raises(ProviderUnavailable, match="RemoteProtocolError"):
        for chunk in provider.stream({"model": "m", "messages": []}):
            received.append(chunk)
    assert [c.body["choices"][0]["delta"].get("content") for c in received] == ["", "Hello"]


def test_garbage_event_mid_stream_is_unavailable() -> None:
    upstream = Upstream().serve(Recorded(200, [("content-type", "text/event-stream")], b"data: {not json\n\n"))
    provider = OpenAIProvider(CONFIG, transport=upstream.transport())
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        list(provider.stream({"model": "m", "messages": []}))


def test_stream_http_error_before_first_chunk() -> None:
    provider, _ = served(OpenAIProvider, recorded("openai", "rate_limited"))
    with pytest.raises(ProviderRateLimited) as info:
        next(provider.stream({"model": "m", "messages": []}))
    assert info.value.retry_after == 1.0
    assert info.value.upstream_status == 429


def test_stream_timeout_is_provider_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderTimeout):
        list(adapter(OpenAIProvider, handler).stream({"model": "m", "messages": []}))


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "name", "cls", "status", "retry_after"), [
    ("openai", "rate_limited", ProviderRateLimited, 429, 1.0),
    ("openai", "context_length", ProviderBadRequest, 400, None),
    ("openai", "invalid_api_key", ProviderAuthError, 401, None),
    ("openai", "server_error", ProviderUnavailable, 500, None),
    ("openai", "overloaded", ProviderOverloaded, 503, None),
    ("groq", "rate_limited", ProviderRateLimited, 429, 10.0),
    ("groq", "model_decommissioned", ProviderBadRequest, 400, None),
    ("groq", "over_capacity", ProviderOverloaded, 503, None),
])
def test_recorded_errors_map_to_typed_errors(provider: str, name: str, cls: type[ProviderError], status: int,
                                             retry_after: float | None) -> None:
    rec = recorded(provider, name)
    adapter_cls = {"openai": OpenAIProvider, "groq": GroqProvider}[provider]
    adapter_, _ = served(adapter_cls, rec)
    with pytest.raises(ProviderError) as info:
        adapter_.complete({"model": "m", "messages": []})
    err = info.value
    assert type(err) is cls
    assert err.provider == provider
    assert err.upstream_status == status
    assert err.retry_after == retry_after
    assert rec.json()["error"]["message"][:40] in err.message
    assert err.envelope()["error"]["provider"] == provider
    assert err.envelope()["error"]["upstream_status"] == status


def test_long_upstream_message_is_truncated() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "x" * 5000}})

    with pytest.raises(ProviderUnavailable) as info:
        adapter(OpenAIProvider, handler).complete({"model": "m", "messages": []})
    assert info.value.message.count("x") == MAX_UPSTREAM_MESSAGE


def test_timeout_becomes_provider_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderTimeout) as info:
        adapter(OpenAIProvider, handler).complete({"model": "m", "messages": []})
    assert info.value.status == 504
    assert info.value.code == "provider_timeout"
    assert info.value.retryable


def test_connection_failure_becomes_provider_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderUnavailable) as info:
        adapter(OpenAIProvider, handler).complete({"model": "m", "messages": []})
    assert info.value.status == 502
    assert info.value.code == "provider_unavailable"


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>bad gateway</html>"),
    httpx.Response(200, json={"id": "x"}),
    httpx.Response(200, json=["not", "an", "object"]),
    httpx.Response(200, json={"choices": "nope"}),
])
def test_garbage_becomes_provider_unavailable(response: httpx.Response) -> None:
    with pytest.raises(ProviderUnavailable) as info:
        adapter(OpenAIProvider, lambda _: response).complete({"model": "m", "messages": []})
    assert info.value.status == 502


@pytest.mark.parametrize("value", ["", None])
def test_missing_or_empty_key_is_auth_error(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    calls: list[httpx.Request] = []
    config = CONFIG.model_copy(update={"secret_name": None}) if value is None else CONFIG
    if value == "":
        monkeypatch.setattr("finops.providers.openai_compatible.api_key", lambda *a: "")
    provider = OpenAIProvider(config, transport=httpx.MockTransport(lambda r: calls.append(r)))  # type: ignore
    with pytest.raises(ProviderAuthError):
        provider.complete({"model": "m", "messages": []})
    with pytest.raises(ProviderAuthError):
        next(provider.stream({"model": "m", "messages": []}))
    assert calls == []


def test_unreadable_secret_is_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")

    def boom(*_: Any) -> str:
        raise RuntimeError("secrets manager is down")

    monkeypatch.setattr("finops.providers.openai_compatible.api_key", boom)
    with pytest.raises(ProviderAuthError, match="unavailable"):
        adapter(OpenAIProvider, lambda _: httpx.Response(200, json=OK_BODY)).complete({"model": "m"})


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
