"""A finished chat completion rendered as an OpenAI Server-Sent-Events body.

Used for ``stream: true`` until true streaming lands: the same chunks OpenAI sends, delivered at once.
"""

from __future__ import annotations

import json
from typing import Any


def _event(data: dict[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n"


def completion_to_sse(body: dict[str, Any], usage: dict[str, Any] | None) -> str:
    """``usage`` (the provider's, or the gateway's count when it sent none) ends the stream if given."""
    base = {
        "id": body.get("id"),
        "object": "chat.completion.chunk",
        "created": body.get("created"),
        "model": body.get("model"),
        "system_fingerprint": body.get("system_fingerprint"),
    }
    events = []
    for choice in body.get("choices", []):
        message = choice.get("message") or {}
        index = choice.get("index", 0)
        delta = {"role": message.get("role", "assistant"), "content": message.get("content") or ""}
        if message.get("tool_calls"):
            delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(message["tool_calls"])]
        events.append(_event({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}))
        events.append(_event({**base, "choices": [
            {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}]}))
    if usage is not None:
        events.append(_event({**base, "choices": [], "usage": usage}))
    events.append(_event("[DONE]"))
    return "".join(events)
