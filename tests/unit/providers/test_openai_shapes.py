"""What the Anthropic and Bedrock adapters return is what OpenAI clients parse: every completion and chunk built
from a recorded response validates against the ``openai`` SDK's own types, and streamed chunks accumulate into
the same message the non-streamed call returns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from finops.providers.anthropic import AnthropicProvider
from finops.providers.base import StreamChunk
from finops.providers.bedrock import BedrockProvider
from finops.settings import ProviderConfig
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from providers_support import LocalServer, Upstream, recorded

ANTHROPIC = ProviderConfig(base_url="http://127.0.0.1:9/v1", secret_name="s")
ASK = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture(autouse=True)
def anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def anthropic(name: str) -> AnthropicProvider:
    return AnthropicProvider(ANTHROPIC, transport=Upstream().serve(recorded("anthropic", name)).transport())


def accumulate(chunks: list[StreamChunk]) -> dict[str, Any]:
    """Fold chunks the way OpenAI clients do: concatenate content and tool-call arguments by index."""
    content, calls, finish = "", {}, None
    for chunk in chunks:
        parsed = ChatCompletionChunk.model_validate(chunk.body)
        for choice in parsed.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                slot["id"] = call.id or slot["id"]
                slot["name"] = (call.function and call.function.name) or slot["name"]
                slot["arguments"] += (call.function and call.function.arguments) or ""
            finish = choice.finish_reason or finish
    return {"content": content, "finish": finish,
            "tool_calls": [{"name": c["name"], "arguments": json.loads(c["arguments"])} for c in calls.values()]}


def summary(body: dict[str, Any]) -> dict[str, Any]:
    parsed = ChatCompletion.model_validate(body)
    message = parsed.choices[0].message
    return {"content": message.content or "", "finish": parsed.choices[0].finish_reason,
            "tool_calls": [{"name": c.function.name, "arguments": json.loads(c.function.arguments)}
                           for c in message.tool_calls or []]}


@pytest.mark.parametrize(("complete", "stream"), [("message", "stream"), ("message_tool_use", "stream_tool_use")])
def test_anthropic_outputs_parse_as_openai_types(complete: str, stream: str) -> None:
    done = summary(anthropic(complete).complete(ASK).body)
    streamed = accumulate(list(anthropic(stream).stream(ASK)))
    assert done["finish"] == streamed["finish"]
    assert bool(done["tool_calls"]) == bool(streamed["tool_calls"])
    assert streamed["content"]


def test_bedrock_outputs_parse_as_openai_types(bedrock_env: None, bedrock_provider: BedrockProvider,
                                               server: LocalServer) -> None:
    server.queue_http(recorded("bedrock", "converse_tool_use"))
    done = summary(bedrock_provider.complete(ASK).body)
    server.queue_events("converse_stream_tool_use")
    streamed = accumulate(list(bedrock_provider.stream(ASK)))
    assert done["tool_calls"] == streamed["tool_calls"] == [
        {"name": "get_weather", "arguments": {"location": "Seattle, WA"}}]
    assert done["finish"] == streamed["finish"] == "tool_calls"
    server.queue_http(recorded("bedrock", "converse"))
    assert summary(bedrock_provider.complete(ASK).body) == {
        "content": "Hello! How can I help you today?", "finish": "stop", "tool_calls": []}
    server.queue_events("converse_stream")
    assert accumulate(list(bedrock_provider.stream(ASK))) == {
        "content": "Hello! How can I help?", "finish": "stop", "tool_calls": []}
