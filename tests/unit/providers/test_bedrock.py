"""The Bedrock Converse adapter with a real boto3 ``bedrock-runtime`` client against a 127.0.0.1 HTTP server
replaying recorded responses: botocore signs the request, parses JSON errors, and decodes the binary event
stream (encoded by ``finops.local.eventstream`` from the recorded events) with its own parser."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from finops.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from finops.local.eventstream import encode_message
from finops.pricing import Usage, load_catalog
from finops.providers import bedrock
from finops.providers.bedrock import BedrockProvider, parse_usage, to_converse_request
from finops.settings import ProviderConfig
from providers_support import LocalServer, Reply, recorded, recorded_events

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PNG_BYTES = b"\x89PNG\r\n\x1a\nfake"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}
HELLO = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(autouse=True)
def _env(bedrock_env: None) -> None:
    """Credentials, region and an empty reply queue for every test here (see conftest)."""


@pytest.fixture
def provider(bedrock_provider: BedrockProvider) -> BedrockProvider:
    return bedrock_provider


# --- the test encoder against botocore's decoder -----------------------------------------------------------


def test_encoder_round_trips_through_botocore() -> None:
    frames = b"".join(encode_message({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"x"}')
                      for _ in range(2))
    buffer = EventStreamBuffer()
    buffer.add_data(frames[:5])
    assert list(buffer) == []  # an incomplete prelude yields nothing
    buffer.add_data(frames[5:])
    messages = list(buffer)
    assert len(messages) == 2
    assert messages[0].headers == {":event-type": "messageStart", ":message-type": "event"}
    assert messages[0].payload == b'{"role":"x"}'


def test_botocore_rejects_a_corrupted_frame() -> None:
    frame = bytearray(encode_message({":event-type": "messageStop"}, b'{"stopReason":"end_turn"}'))
    frame[-6] ^= 0xFF  # flip a payload byte: the message CRC no longer matches
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


# --- request mapping --------------------------------------------------------------------------------------


def test_request_mapping(provider: BedrockProvider, server: LocalServer) -> None:
    payload = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url",
                 "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "tooluse_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\":\"Seattle\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "rain"},
        ],
        "max_tokens": 200, "temperature": 0.2, "top_p": 0.8, "stop": ["###"],
        "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    assert to_converse_request(payload) == {
        "modelId": MODEL,
        "system": [{"text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"text": "Look"},
                                         {"image": {"format": "png", "source": {"bytes": PNG_BYTES}}}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"location": "Seattle"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "rain"}]}}]},
        ],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0.2, "topP": 0.8, "stopSequences": ["###"]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather",
                                               "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]}}}],
                       "toolChoice": {"tool": {"name": "get_weather"}}},
    }
    # botocore validates the request against the service model and serializes it (image bytes as base64)
    server.queue_http(recorded("bedrock", "converse"))
    provider.complete(payload)
    sent = server.seen[0].json()
    assert base64.b64decode(sent["messages"][0]["content"][1]["image"]["source"]["bytes"]) == PNG_BYTES
    assert sent["messages"][1]["content"][0]["toolUse"]["input"] == {"location": "Seattle"}
    assert "modelId" not in sent  # it travels in the path


@pytest.mark.parametrize("payload", [
    {"n": 3},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url",
                                                  "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]},
    {"messages": [{"role": "function", "content": "x"}]},
])
def test_requests_bedrock_cannot_take_are_bad_requests(provider: BedrockProvider, server: LocalServer,
                                                       payload: dict[str, Any]) -> None:
    with pytest.raises(ProviderBadRequest):
        provider.complete({**HELLO, **payload})
    assert server.seen == []


# --- converse ---------------------------------------------------------------------------------------------


def test_recorded_converse(provider: BedrockProvider, server: LocalServer) -> None:
    server.queue_http(recorded("bedrock", "converse"))
    result = provider.complete({**HELLO, "max_completion_tokens": 64})
    [seen] = server.seen
    assert seen.path == f"/model/{MODEL.replace(':', '%3A')}/converse"
    assert seen.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-west-2/bedrock/aws4_request" in seen.headers["Authorization"]
    assert seen.json() == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                           "inferenceConfig": {"maxTokens": 64}}
    usage = Usage(prompt_tokens=18 + 1536 + 512, completion_tokens=12, cached_tokens=1536, cache_write_tokens=512)
    assert result.usage == usage
    assert result.body["id"] == "chatcmpl-6f3c2a1b-9e8d-4c7b-a6f5-e4d3c2b1a098"
    assert result.body["model"] == MODEL
    assert result.body["choices"] == [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                       "message": {"role": "assistant", "content": "Hello! How can I help you today?"}}]
    assert result.body["usage"]["total_tokens"] == 2078  # Bedrock's own totalTokens agrees
    price = load_catalog().get("bedrock/claude-sonnet-4-5")
    assert price.upstream_id == MODEL
    # 18 * 3.30 + 1536 * 0.33 + 512 * 4.125 + 12 * 16.50 per 1M
    assert price.cost(usage) == Decimal("0.00287628")


def test_recorded_converse_tool_use(provider: BedrockProvider, server: LocalServer) -> None:
    server.queue_http(recorded("bedrock", "converse_tool_use"))
    body = provider.complete({**HELLO, "tools": [WEATHER_TOOL], "tool_choice": "required"}).body
    assert server.seen[0].json()["toolConfig"]["toolChoice"] == {"any": {}}
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll look up the weather in Seattle."
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"
    assert json.loads(call["function"]["arguments"]) == {"location": "Seattle, WA"}


@pytest.mark.parametrize(("name", "cls", "status"), [
    ("throttling", ProviderRateLimited, 429),
    ("validation", ProviderBadRequest, 400),
    ("access_denied", ProviderAuthError, 403),
    ("service_unavailable", ProviderOverloaded, 503),
    ("model_timeout", ProviderTimeout, 408),
])
def test_recorded_errors(provider: BedrockProvider, server: LocalServer, name: str, cls: type[ProviderError],
                         status: int) -> None:
    rec = recorded("bedrock", name)
    server.queue_http(rec)
    with pytest.raises(ProviderError) as info:
        provider.complete(HELLO)
    assert type(info.value) is cls
    assert info.value.upstream_status == status
    assert info.value.provider == "bedrock"
    message = rec.json().get("message") or rec.json().get("Message")
    assert message in info.value.message


def test_read_timeout_is_provider_timeout(server: LocalServer) -> None:
    provider = BedrockProvider(ProviderConfig(base_url=server.url, timeout_seconds=0.2, connect_timeout_seconds=1))
    rec = recorded("bedrock", "converse")
    server.queue(Reply(rec.status, rec.headers, [b"", rec.body], pause_before={1: 0.6}))
    with pytest.raises(ProviderTimeout):
        provider.complete(HELLO)


def test_refused_connection_is_unavailable(server: LocalServer) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = BedrockProvider(ProviderConfig(base_url=f"http://127.0.0.1:{port}", timeout_seconds=1,
                                              connect_timeout_seconds=0.5))
    with pytest.raises(ProviderUnavailable, match="EndpointConnectionError"):
        provider.complete(HELLO)


def test_missing_credentials_is_auth_error(monkeypatch: pytest.MonkeyPatch, server: LocalServer,
                                           tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = BedrockProvider(ProviderConfig(base_url=server.url, region="eu-central-1", timeout_seconds=3))
    with pytest.raises(ProviderAuthError):
        provider.complete(HELLO)


# --- converse_stream ---------------------------------------------------------------------------------------


def test_recorded_stream(provider: BedrockProvider, server: LocalServer) -> None:
    reply = server.queue_events("converse_stream", hold_before=3)
    stream = provider.stream(HELLO)
    first = next(stream)  # arrives while the server still holds back the rest of the events
    # (the server may still be writing frames 1-2 as the client decodes frame 0: at most 3, never all 7;
    # a client that buffered the body would see the first chunk only after the 5 s hold, with all 7 sent)
    assert reply.frames_sent <= 3
    reply.release.set()
    chunks = [first, *stream]
    assert reply.frames_sent == 7
    assert server.seen[0].path == f"/model/{MODEL.replace(':', '%3A')}/converse-stream"
    bodies = [c.body for c in chunks]
    assert all(b["object"] == "chat.completion.chunk" and b["id"] == "chatcmpl-5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f"
               and b["model"] == MODEL for b in bodies)
    deltas = [(b["choices"][0]["delta"], b["choices"][0]["finish_reason"]) for b in bodies if b["choices"]]
    assert deltas == [({"role": "assistant", "content": ""}, None), ({"content": "Hello"}, None),
                      ({"content": "! How"}, None), ({"content": " can I help?"}, None), ({}, "stop")]
    usage = Usage(prompt_tokens=1046, completion_tokens=9, cached_tokens=1024)
    assert bodies[-1]["choices"] == []
    assert bodies[-1]["usage"] == usage.as_openai()
    assert [c.usage for c in chunks if c.usage] == [usage]


def test_recorded_stream_tool_use(provider: BedrockProvider, server: LocalServer) -> None:
    server.queue_events("converse_stream_tool_use")
    chunks = list(provider.stream({**HELLO, "tools": [WEATHER_TOOL]}))
    calls = [c.body["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c.body["choices"] and "tool_calls" in c.body["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "tooluse_Hx3bV9qPTr2mJ0cYx8kL1w", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"location": "Seattle, WA"}
    assert [c.body["choices"][0]["finish_reason"] for c in chunks if c.body["choices"]][-1] == "tool_calls"
    assert chunks[-1].usage == Usage(prompt_tokens=405, completion_tokens=58)


@pytest.mark.parametrize(("name", "cls", "before_error"), [
    ("converse_stream_throttled", ProviderRateLimited, ["", "Once"]),
    ("converse_stream_model_error", ProviderUnavailable, [""]),
])
def test_exception_events_mid_stream_are_typed(provider: BedrockProvider, server: LocalServer, name: str,
                                               cls: type[ProviderError], before_error: list[str]) -> None:
    server.queue_events(name)
    received = []
    with pytest.raises(ProviderError) as info:
        for chunk in provider.stream(HELLO):
            received.append(chunk)
    assert type(info.value) is cls
    assert [c.body["choices"][0]["delta"].get("content") for c in received] == before_error
    assert recorded_events(name)["events"][-1]["payload"]["message"] in info.value.message


def test_stream_dropped_mid_way_is_unavailable(provider: BedrockProvider, server: LocalServer) -> None:
    server.queue_events("converse_stream", drop_after=3)
    received = []
    with pytest.raises(ProviderUnavailable):
        for chunk in provider.stream(HELLO):
            received.append(chunk)
    assert len(received) == 3


def test_stream_ending_without_message_stop_is_unavailable(provider: BedrockProvider, server: LocalServer) -> None:
    recording = recorded_events("converse_stream")
    from providers_support import encode_events

    frames = encode_events(recording["events"][:4])
    server.queue(Reply(200, list(recording["headers"].items())[:2], frames, chunked=True))
    with pytest.raises(ProviderUnavailable, match="messageStop"):
        list(provider.stream(HELLO))


def test_stream_stalled_mid_way_is_timeout(server: LocalServer) -> None:
    provider = BedrockProvider(ProviderConfig(base_url=server.url, timeout_seconds=0.2, connect_timeout_seconds=1))
    server.queue_events("converse_stream", pause_before={2: 0.6})
    received = []
    with pytest.raises(ProviderTimeout):
        for chunk in provider.stream(HELLO):
            received.append(chunk)
    assert len(received) == 2


def test_stream_http_error_before_first_chunk(provider: BedrockProvider, server: LocalServer) -> None:
    server.queue_http(recorded("bedrock", "throttling"))
    with pytest.raises(ProviderRateLimited):
        next(provider.stream(HELLO))


# --- client factory and usage ------------------------------------------------------------------------------


def test_client_is_cached_per_region_and_region_read_at_call_time(monkeypatch: pytest.MonkeyPatch,
                                                                   server: LocalServer) -> None:
    config = ProviderConfig(base_url=server.url)
    provider = BedrockProvider(config)
    first = provider.client()
    assert first is provider.client()
    assert first.meta.region_name == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert provider.client().meta.region_name == "eu-west-1"
    pinned = BedrockProvider(config.model_copy(update={"region": "ap-south-1"}))
    assert pinned.client().meta.region_name == "ap-south-1"
    assert bedrock.runtime_client.cache_info().currsize >= 3
    assert first.meta.config.retries["total_max_attempts"] == 1


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None),
    ({"outputTokens": 3}, None),
    ({"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}, Usage(prompt_tokens=5, completion_tokens=3)),
    ({"inputTokens": 5, "outputTokens": 3, "cacheReadInputTokens": 7, "cacheWriteInputTokens": 2},
     Usage(prompt_tokens=14, completion_tokens=3, cached_tokens=7, cache_write_tokens=2)),
    ({"inputTokens": -1}, None),
])
def test_parse_usage(raw: Any, expected: Usage | None) -> None:
    assert parse_usage(raw) == expected
