"""The Anthropic Messages adapter against recorded responses (httpx.MockTransport): the request it builds from
an OpenAI payload, the OpenAI shapes it returns, streamed events, usage with prompt caching, and errors."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from finops.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderUnavailable,
)
from finops.pricing import Usage, load_catalog
from finops.providers.anthropic import AnthropicProvider, parse_usage, to_messages_request
from finops.settings import ProviderConfig
from providers_support import Recorded, Upstream, first_then_rest, recorded

CONFIG = ProviderConfig(base_url="http://127.0.0.1:9/anthropic/v1", secret_name="finops/providers/anthropic",
                        default_max_tokens=1024)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


@pytest.fixture(autouse=True)
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def served(*recs: Recorded, **kw: Any) -> tuple[AnthropicProvider, Upstream]:
    upstream = Upstream()
    for rec in recs:
        upstream.serve(rec, **kw)
    return AnthropicProvider(CONFIG, transport=upstream.transport()), upstream


# --- request mapping --------------------------------------------------------------------------------------


def test_request_mapping_system_images_tools_and_results() -> None:
    payload = {
        "model": "claude-sonnet-4-5-20250929",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 300, "max_tokens": 50, "temperature": 1.7, "top_p": 0.9, "stop": "END",
        "user": "alice", "tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False,
        "frequency_penalty": 0.5,
    }
    body = to_messages_request(payload, 1024)
    assert body == {
        "model": "claude-sonnet-4-5-20250929",
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                {"type": "text", "text": "Thanks"}]},
        ],
        "max_tokens": 300,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "alice"},
        "tools": [{"name": "get_weather", "description": "Current weather",
                   "input_schema": WEATHER_TOOL["function"]["parameters"]}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


@pytest.mark.parametrize(("payload", "expected"), [
    ({}, 1024),
    ({"max_tokens": 77}, 77),
    ({"max_completion_tokens": 88, "max_tokens": 77}, 88),
])
def test_max_tokens_always_sent(payload: dict[str, Any], expected: int) -> None:
    body = to_messages_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], **payload}, 1024)
    assert body["max_tokens"] == expected


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = to_messages_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                "tools": [WEATHER_TOOL], "tool_choice": choice}, 10)
    assert body["tool_choice"] == expected


@pytest.mark.parametrize("payload", [
    {"n": 2},
    {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}]}]},
    {"messages": [{"role": "tool", "content": "no id"}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}]},
    {"tools": [{"type": "retrieval"}]},
])
def test_requests_anthropic_cannot_take_are_bad_requests(payload: dict[str, Any]) -> None:
    provider, upstream = served()
    with pytest.raises(ProviderBadRequest):
        provider.complete({"model": "m", "messages": [{"role": "user", "content": "x"}], **payload})
    assert upstream.requests == []


# --- complete ---------------------------------------------------------------------------------------------


def test_recorded_message_to_openai_completion() -> None:
    provider, upstream = served(recorded("anthropic", "message"))
    result = provider.complete({"model": "claude-sonnet-4-5-20250929",
                                "messages": [{"role": "user", "content": "Hello"}]})
    [request] = upstream.requests
    assert str(request.url) == "http://127.0.0.1:9/anthropic/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert upstream.json_body()["max_tokens"] == 1024
    # input 21 + cache read 14000 + cache write 1800
    usage = Usage(prompt_tokens=15821, completion_tokens=12, cached_tokens=14000, cache_write_tokens=1800)
    assert result.usage == usage
    assert result.body["object"] == "chat.completion"
    assert result.body["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert result.body["model"] == "claude-sonnet-4-5-20250929"
    assert result.body["choices"] == [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                       "message": {"role": "assistant", "content": "Hello! How can I help you today?"}}]
    assert result.body["usage"]["prompt_tokens"] == 15821
    assert result.body["usage"]["total_tokens"] == 15833
    assert result.body["usage"]["prompt_tokens_details"] == {"cached_tokens": 14000, "cache_write_tokens": 1800}


def test_recorded_cache_usage_is_billed_at_the_three_rates() -> None:
    provider, _ = served(recorded("anthropic", "message"))
    usage = provider.complete({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]}).usage
    assert usage is not None
    price = load_catalog().get("claude-sonnet-4-5")
    # 21 * 3.00 + 14000 * 0.30 + 1800 * 3.75 + 12 * 15.00 per 1M
    assert price.cost(usage) == Decimal("0.011193")


def test_recorded_tool_use_message() -> None:
    provider, _ = served(recorded("anthropic", "message_tool_use"))
    body = provider.complete({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}],
                              "tools": [WEATHER_TOOL]}).body
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in San Francisco for you."
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("model_context_window_exceeded", "length")])
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    rec = recorded("anthropic", "message")
    body = rec.json() | {"stop_reason": stop_reason}
    provider, _ = served(Recorded(200, rec.headers, json.dumps(body).encode()))
    result = provider.complete({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert result.body["choices"][0]["finish_reason"] == finish


# --- stream -----------------------------------------------------------------------------------------------


def test_recorded_stream_to_openai_chunks() -> None:
    rec = recorded("anthropic", "stream")
    provider, upstream = served(rec)
    total = -(-len(rec.body) // 7)

    def nothing_buffered() -> None:
        assert upstream.pieces_read < total / 2

    chunks = first_then_rest(provider.stream({"model": "claude-sonnet-4-5-20250929",
                                              "messages": [{"role": "user", "content": "Hi"}]}), nothing_buffered)
    assert upstream.json_body()["stream"] is True
    assert upstream.requests[0].headers["accept"] == "text/event-stream"
    bodies = [c.body for c in chunks]
    assert all(b["object"] == "chat.completion.chunk" and b["id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
               for b in bodies)
    deltas = [(b["choices"][0]["delta"], b["choices"][0]["finish_reason"]) for b in bodies if b["choices"]]
    assert deltas == [({"role": "assistant", "content": ""}, None), ({"content": "Hello"}, None),
                      ({"content": "!"}, None), ({}, "stop")]
    assert bodies[-1]["choices"] == []
    final = Usage(prompt_tokens=2073, completion_tokens=15, cached_tokens=2048)
    assert bodies[-1]["usage"] == final.as_openai()
    # message_start already carries the prompt (a cut stream is still billed), message_delta the output
    assert [c.usage for c in chunks if c.usage] == [
        Usage(prompt_tokens=2073, completion_tokens=1, cached_tokens=2048), final, final]


def test_recorded_stream_tool_use() -> None:
    provider, _ = served(recorded("anthropic", "stream_tool_use"))
    chunks = list(provider.stream({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
    calls = [c.body["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c.body["choices"] and "tool_calls" in c.body["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert all(c["index"] == 0 for c in calls)
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"location": "San Francisco, CA"}
    finishes = [c.body["choices"][0]["finish_reason"] for c in chunks if c.body["choices"]]
    assert finishes[-1] == "tool_calls"
    # message_delta reports output tokens only; the prompt comes from message_start
    assert chunks[-1].usage == Usage(prompt_tokens=472, completion_tokens=89)


def test_error_event_mid_stream_is_typed() -> None:
    provider, _ = served(recorded("anthropic", "stream_overloaded"))
    received = []
    with pytest.raises(ProviderOverloaded, match="Overloaded") as info:
        for chunk in provider.stream({"model": "m", "messages": [{"role": "user", "content": "x"}]}):
            received.append(chunk)
    assert info.value.retryable
    assert [c.body["choices"][0]["delta"].get("content") for c in received] == ["", "Once upon"]
    assert received[0].usage == Usage(prompt_tokens=310, completion_tokens=1)


def test_stream_cut_before_message_stop_is_unavailable() -> None:
    rec = recorded("anthropic", "stream")
    provider, _ = served(rec, cut_at=rec.body.index(b"event: message_stop"))
    received = []
    with pytest.raises(ProviderUnavailable, match="message_stop"):
        for chunk in provider.stream({"model": "m", "messages": [{"role": "user", "content": "x"}]}):
            received.append(chunk)
    assert received[-1].usage == Usage(prompt_tokens=2073, completion_tokens=15, cached_tokens=2048)


def test_connection_dropped_mid_stream_is_unavailable() -> None:
    rec = recorded("anthropic", "stream")
    provider, _ = served(rec, cut_at=rec.body.index(b"event: ping"), drop=True)
    with pytest.raises(ProviderUnavailable, match="RemoteProtocolError"):
        list(provider.stream({"model": "m", "messages": [{"role": "user", "content": "x"}]}))


def test_stream_http_error_before_first_chunk() -> None:
    provider, _ = served(recorded("anthropic", "overloaded"))
    with pytest.raises(ProviderOverloaded) as info:
        next(provider.stream({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
    assert info.value.upstream_status == 529


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls", "status", "retry_after"), [
    ("overloaded", ProviderOverloaded, 529, None),
    ("rate_limited", ProviderRateLimited, 429, 14.0),
    ("invalid_request", ProviderBadRequest, 400, None),
    ("authentication", ProviderAuthError, 401, None),
    ("api_error", ProviderUnavailable, 500, None),
])
def test_recorded_errors(name: str, cls: type[ProviderError], status: int, retry_after: float | None) -> None:
    rec = recorded("anthropic", name)
    provider, _ = served(rec)
    with pytest.raises(ProviderError) as info:
        provider.complete({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert type(info.value) is cls
    assert info.value.upstream_status == status
    assert info.value.retry_after == retry_after
    assert rec.json()["error"]["message"][:30] in info.value.message


def test_missing_key_is_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    provider = AnthropicProvider(CONFIG.model_copy(update={"secret_name": None}),
                                 transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(ProviderAuthError):
        provider.complete({"model": "m", "messages": [{"role": "user", "content": "x"}]})


def test_configured_api_version_is_sent() -> None:
    upstream = Upstream().serve(recorded("anthropic", "message"))
    provider = AnthropicProvider(CONFIG.model_copy(update={"api_version": "2099-01-01"}),
                                 transport=upstream.transport())
    provider.complete({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert upstream.requests[0].headers["anthropic-version"] == "2099-01-01"


@pytest.mark.parametrize(("raw", "start", "expected"), [
    (None, None, None),
    ({"output_tokens": 5}, None, None),
    ({"input_tokens": 3, "output_tokens": 5}, None, Usage(prompt_tokens=3, completion_tokens=5)),
    ({"input_tokens": 3, "cache_read_input_tokens": None}, None, Usage(prompt_tokens=3)),
    ({"output_tokens": 9}, Usage(prompt_tokens=10, completion_tokens=1, cached_tokens=4, cache_write_tokens=2),
     Usage(prompt_tokens=10, completion_tokens=9, cached_tokens=4, cache_write_tokens=2)),
    ({"input_tokens": "x"}, None, None),
])
def test_parse_usage(raw: Any, start: Usage | None, expected: Usage | None) -> None:
    assert parse_usage(raw, start) == expected
