"""OpenAI response shapes built by the adapters of providers that do not speak OpenAI (Anthropic, Bedrock).

One place for the ``chat.completion`` / ``chat.completion.chunk`` dicts, and for the request pieces those
adapters read the same way (token limit, stop sequences, tool arguments, data URLs).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from ..errors import ProviderBadRequest
from ..pricing import Usage


def completion_body(*, id: str, model: str, content: str | None, tool_calls: list[dict[str, Any]],
                    finish_reason: str | None, usage: Usage | None, created: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage.as_openai()
    return body


def chunk_body(*, id: str, model: str, created: int, delta: dict[str, Any],
               finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def usage_chunk_body(*, id: str, model: str, created: int, usage: Usage) -> dict[str, Any]:
    """The last chunk of an OpenAI stream with ``include_usage``: no choices, only usage."""
    return {"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
            "usage": usage.as_openai()}


def tool_call(id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": id, "type": "function",
            "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else
                         json.dumps(arguments, separators=(",", ":"))}}


def output_limit(payload: dict[str, Any]) -> int | None:
    """``max_completion_tokens`` wins over ``max_tokens``, as in OpenAI's API."""
    value = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return int(value) if value else None


def stop_sequences(payload: dict[str, Any]) -> list[str]:
    stop = payload.get("stop")
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


def tool_arguments(provider: str, raw: Any) -> Any:
    """OpenAI tool-call ``arguments`` (a JSON string) -> the object Anthropic and Bedrock expect."""
    if isinstance(raw, dict):
        return raw
    if raw in (None, ""):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise ProviderBadRequest(provider, "A tool call's arguments are not valid JSON.") from exc
    if not isinstance(value, dict):
        raise ProviderBadRequest(provider, "A tool call's arguments must be a JSON object.")
    return value


def text_of(provider: str, content: Any) -> str:
    """The text of a message whose content may be a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise ProviderBadRequest(provider, f"{provider} accepts only text in this message.")
        texts.append(str(part.get("text") or ""))
    return "\n".join(texts)


def data_url(provider: str, url: str) -> tuple[str, bytes] | None:
    """``data:image/png;base64,...`` -> (media type, bytes); None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise ProviderBadRequest(provider, "An image data URL must be base64 (data:<type>;base64,...).")
    try:
        return media_type, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderBadRequest(provider, "An image data URL is not valid base64.") from exc
