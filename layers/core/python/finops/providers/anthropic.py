"""Anthropic's Messages API (POST /v1/messages) over httpx, mapped to and from OpenAI's chat schema.

Request: system/developer messages -> ``system``; text and ``image_url`` parts -> content blocks; assistant
``tool_calls`` -> ``tool_use`` blocks; ``tool`` messages -> ``tool_result`` blocks (consecutive turns of one
role merged); ``tools`` / ``tool_choice`` / ``parallel_tool_calls``; ``max_tokens`` always sent (the request's
``max_completion_tokens`` or ``max_tokens``, else the configured default).
Response and stream: text and ``tool_use`` blocks -> ``content`` / ``tool_calls``; ``stop_reason`` ->
``finish_reason``. Usage: ``input_tokens`` excludes cache reads and writes, so OpenAI's ``prompt_tokens`` is
the sum of the three, with ``cached_tokens`` = cache reads and ``cache_write_tokens`` = cache writes.
Docs: https://docs.anthropic.com/en/api/messages and .../en/api/messages-streaming.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from ..errors import ProviderBadRequest, ProviderUnavailable
from ..pricing import Usage
from ..settings import ProviderConfig
from . import http_errors
from .base import Completion, StreamChunk
from .http_errors import MAX_UPSTREAM_MESSAGE
from .openai_compatible import http_client, provider_key
from .openai_shapes import (
    chunk_body,
    completion_body,
    data_url,
    output_limit,
    stop_sequences,
    text_of,
    tool_arguments,
    tool_call,
    usage_chunk_body,
)

API_VERSION = "2023-06-01"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

TOOL_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


class AnthropicProvider:
    name: ClassVar[str] = "anthropic"

    def __init__(self, config: ProviderConfig, *, secret_max_age: int = 300,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.secret_max_age = secret_max_age
        self._client = http_client(config, transport)

    # --- calls ---------------------------------------------------------------------------------------

    def complete(self, payload: dict[str, Any]) -> Completion:
        body = to_messages_request(payload, self.config.default_max_tokens)
        message = http_errors.post_json(self._client, self.name, "messages", body, self.headers())
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise ProviderUnavailable(self.name, "anthropic answered without content.")
        usage = parse_usage(message.get("usage"))
        return Completion(body=from_message(message, payload.get("model", ""), usage), usage=usage)

    def stream(self, payload: dict[str, Any]) -> Iterator[StreamChunk]:
        body = {**to_messages_request(payload, self.config.default_max_tokens), "stream": True}
        state = _StreamState(model=str(payload.get("model", "")))
        events = http_errors.post_events(self._client, self.name, "messages", body, self.headers())
        with contextlib.closing(events):
            for event in events:
                yield from state.handle(event.event, http_errors.event_object(self.name, event.data))
                if state.done:
                    return
        raise ProviderUnavailable(self.name, "anthropic ended the stream before message_stop.")

    def headers(self) -> dict[str, str]:
        return {"x-api-key": provider_key(self.name, self.config, self.secret_max_age),
                "anthropic-version": self.config.api_version or API_VERSION}

    def close(self) -> None:
        self._client.close()


# --- request ----------------------------------------------------------------------------------------


def to_messages_request(payload: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    """An OpenAI chat-completions payload -> a Messages API body (without ``stream``)."""
    if int(payload.get("n") or 1) != 1:
        raise ProviderBadRequest(AnthropicProvider.name, "anthropic returns one choice per call; n must be 1.")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in payload.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content")))
            continue
        if role == "user":
            turn = ("user", _user_blocks(message.get("content")))
        elif role == "assistant":
            turn = ("assistant", _assistant_blocks(message))
        elif role == "tool":
            turn = ("user", [_tool_result(message)])
        else:
            raise ProviderBadRequest(AnthropicProvider.name, f"anthropic does not accept messages of role {role!r}.")
        if messages and messages[-1]["role"] == turn[0]:
            messages[-1]["content"].extend(turn[1])
        else:
            messages.append({"role": turn[0], "content": turn[1]})
    body: dict[str, Any] = {
        "model": payload.get("model"),
        "messages": messages,
        "max_tokens": output_limit(payload) or default_max_tokens,
    }
    if system:
        body["system"] = system
    if payload.get("temperature") is not None:
        body["temperature"] = min(float(payload["temperature"]), 1.0)  # OpenAI allows 0..2, Anthropic 0..1
    if payload.get("top_p") is not None:
        body["top_p"] = payload["top_p"]
    if stops := stop_sequences(payload):
        body["stop_sequences"] = stops
    if isinstance(payload.get("user"), str):
        body["metadata"] = {"user_id": payload["user"]}
    tools = payload.get("tools")
    if tools:
        body["tools"] = [_tool(t) for t in tools]
    choice = _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
    if choice is not None and tools:
        body["tool_choice"] = choice
    return body


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [_keep_cache_control(part, {"type": "text", "text": text_of(AnthropicProvider.name, [part])})
            for part in content]


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"type": "text", "text": content or ""}]
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append(_keep_cache_control(part, {"type": "text", "text": str(part.get("text") or "")}))
        elif kind == "image_url":
            blocks.append(_keep_cache_control(part, _image(part.get("image_url"))))
        else:
            raise ProviderBadRequest(AnthropicProvider.name, f"anthropic does not accept content parts of type "
                                                             f"{kind!r}.")
    return blocks


def _image(image_url: Any) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise ProviderBadRequest(AnthropicProvider.name, "An image_url part needs a url.")
    decoded = data_url(AnthropicProvider.name, url)
    if decoded is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = decoded
    return {"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()}}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": tool_arguments(AnthropicProvider.name, function.get("arguments"))})
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    if not message.get("tool_call_id"):
        raise ProviderBadRequest(AnthropicProvider.name, "A tool message needs its tool_call_id.")
    return {"type": "tool_result", "tool_use_id": message["tool_call_id"],
            "content": text_of(AnthropicProvider.name, message.get("content"))}


def _keep_cache_control(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's ``cache_control`` marker, when a client put it on an OpenAI content part, is kept."""
    if isinstance(part, dict) and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise ProviderBadRequest(AnthropicProvider.name, "anthropic accepts only tools of type function.")
    function = tool["function"]
    spec: dict[str, Any] = {"name": function.get("name"),
                            "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        spec["description"] = function["description"]
    return spec


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        result = None
    elif isinstance(choice, str) and choice in TOOL_CHOICES:
        result = dict(TOOL_CHOICES[choice])
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        result = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise ProviderBadRequest(AnthropicProvider.name, "tool_choice is not one anthropic understands.")
    if parallel is False:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


# --- response ---------------------------------------------------------------------------------------


def parse_usage(raw: Any, start: Usage | None = None) -> Usage | None:
    """Anthropic ``usage`` -> :class:`Usage`. ``start`` (from ``message_start``) fills what a later
    ``message_delta`` usage leaves out."""
    if not isinstance(raw, dict) or (start is None and raw.get("input_tokens") is None):
        return start
    base = start or Usage()

    def pick(name: str, fallback: int) -> int:
        value = raw.get(name)
        return fallback if value is None else int(value)

    try:
        read = pick("cache_read_input_tokens", base.cached_tokens)
        written = pick("cache_creation_input_tokens", base.cache_write_tokens)
        fresh = pick("input_tokens", base.prompt_tokens - base.cached_tokens - base.cache_write_tokens)
        output = pick("output_tokens", base.completion_tokens)
        return Usage(prompt_tokens=fresh + read + written, completion_tokens=output, cached_tokens=read,
                     cache_write_tokens=written)
    except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return start


def from_message(message: dict[str, Any], model: str, usage: Usage | None) -> dict[str, Any]:
    texts, calls = [], []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(tool_call(str(block.get("id")), str(block.get("name")), block.get("input") or {}))
    return completion_body(
        id=str(message.get("id") or ""), model=str(message.get("model") or model),
        content="".join(texts) if texts or not calls else None, tool_calls=calls,
        finish_reason=FINISH_REASONS.get(str(message.get("stop_reason")), "stop"), usage=usage)


class _StreamState:
    """Anthropic stream events -> OpenAI chunks, one event at a time."""

    def __init__(self, model: str) -> None:
        self.id = ""
        self.model = model
        self.created = int(time.time())
        self.usage: Usage | None = None
        self.tool_index: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self.done = False

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return chunk_body(id=self.id, model=self.model, created=self.created, delta=delta,
                          finish_reason=finish_reason)

    def handle(self, event: str, data: dict[str, Any]) -> Iterator[StreamChunk]:
        kind = data.get("type") or event
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = str(message.get("id") or "")
            self.model = str(message.get("model") or self.model)
            self.usage = parse_usage(message.get("usage"))
            # Usage here already counts the whole prompt: a stream cut after this point is still billed.
            yield StreamChunk(self.chunk({"role": "assistant", "content": ""}), usage=self.usage)
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = self.tool_index.setdefault(int(data.get("index", 0)), len(self.tool_index))
                call = tool_call(str(block.get("id")), str(block.get("name")), "")
                yield StreamChunk(self.chunk({"tool_calls": [{"index": position, **call}]}))
            elif block.get("type") == "text" and block.get("text"):
                yield StreamChunk(self.chunk({"content": block["text"]}))
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                yield StreamChunk(self.chunk({"content": str(delta.get("text") or "")}))
            elif delta.get("type") == "input_json_delta":
                position = self.tool_index.get(int(data.get("index", 0)), 0)
                yield StreamChunk(self.chunk({"tool_calls": [
                    {"index": position, "function": {"arguments": str(delta.get("partial_json") or "")}}]}))
        elif kind == "message_delta":
            self.usage = parse_usage(data.get("usage"), self.usage)
            reason = (data.get("delta") or {}).get("stop_reason")
            finish = FINISH_REASONS.get(str(reason), "stop") if reason else None
            yield StreamChunk(self.chunk({}, finish), usage=self.usage)
        elif kind == "message_stop":
            self.done = True
            if self.usage is not None:
                yield StreamChunk(usage_chunk_body(id=self.id, model=self.model, created=self.created,
                                                   usage=self.usage), usage=self.usage)
        elif kind == "error":
            error_type, message = http_errors.error_details(data)
            raise http_errors.provider_error(
                AnthropicProvider.name,
                f"anthropic failed mid-stream: {(message or 'error')[:MAX_UPSTREAM_MESSAGE]}",
                error_type=error_type or "api_error")
        # ping, content_block_stop, thinking and signature deltas: nothing to forward
