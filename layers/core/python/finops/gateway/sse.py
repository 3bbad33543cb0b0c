"""Server-Sent Events as OpenAI sends them: one ``data:`` line per event, ``[DONE]`` last.

``completion_to_sse`` renders a finished completion as the chunks OpenAI would have streamed, delivered at
once (the buffered transport's answer to ``stream: true``); the streaming path encodes with ``event``.
"""

from __future__ import annotations

import json
from typing import Any


def event(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


DONE = event("[DONE]")


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
        events.append(event({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}))
        events.append(event({**base, "choices": [
            {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}]}))
    if usage is not None:
        events.append(event({**base, "choices": [], "usage": usage}))
    events.append(DONE)
    return b"".join(events).decode()
