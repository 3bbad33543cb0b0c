"""Anthropic's Messages API (``POST .../v1/messages``), simulated for the local stack and the tests.

Served by :class:`finops.local.simulated_provider.SimulatedProvider` under ``/anthropic/`` (the local stack
points the anthropic adapter's ``base_url`` at ``<simulator>/anthropic/v1``), with the same deterministic text,
tiktoken counting and ``[[sim:...]]`` directives as the OpenAI-compatible simulation.

As documented at https://docs.anthropic.com/en/api/messages, .../messages-streaming and .../errors: the
``x-api-key`` and ``anthropic-version`` headers are required; the body has ``model``, ``messages`` (content a
string or content blocks), ``max_tokens`` (required), optional ``system`` and ``stream``. The answer is a
``message`` object with one text block, ``stop_reason`` ``end_turn`` or ``max_tokens`` and ``usage``; a stream
is ``message_start`` (with the prompt's usage), ``content_block_start``, ``ping``, one ``content_block_delta``
(``text_delta``) per word, ``content_block_stop``, ``message_delta`` (``stop_reason``, output usage) and
``message_stop``. Errors are ``{"type": "error", "error": {"type", "message"}}`` with Anthropic's statuses
(429 ``rate_limit_error``, 529 ``overloaded_error``, 500 ``api_error``, ...).

Prompt caching: a content block (system or message) carrying ``cache_control`` marks a cache breakpoint; the
prompt up to and including the last one is reported as written to the cache (``cache_creation_input_tokens``),
the rest as ``input_tokens``. Nothing is remembered between calls, so there are never cache reads, and
Anthropic's minimum cacheable prompt length is not applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from werkzeug.wrappers import Request, Response

from .. import tokens
from .simulated_provider import Answer, SimulatedProvider, encoding_for, find_directives, garbage, is_count, paced

# HTTP status -> Anthropic's error type (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OVERLOADED = 529


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def _error(status: int, message: str, request_id: str, retry_after: str | None = None) -> Response:
    body = {"type": "error", "error": {"type": error_type(status), "message": message}, "request_id": request_id}
    response = Response(json.dumps(body), status=status, content_type="application/json")
    response.headers["request-id"] = request_id
    if retry_after is not None:
        response.headers["retry-after"] = retry_after
    return response


def _invalid(body: Any) -> str | None:
    """What is wrong with a Messages request body, as Anthropic words it, or None."""
    if not isinstance(body, dict):
        return "body: Input should be an object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if "max_tokens" not in body:
        return "max_tokens: Field required"
    if not is_count(body["max_tokens"]):
        return "max_tokens: Input should be a valid integer greater than or equal to 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if not isinstance(content, str) and not (
                isinstance(content, list) and all(isinstance(b, dict) and "type" in b for b in content)):
            return f"messages.{i}.content: Input should be a valid string or a list of content blocks"
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not (
            isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system)):
        return "system: Input should be a valid string or a list of text blocks"
    return None


def _as_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt as chat messages (system first), for the shared directives, text and token counting."""
    chat = [{"role": "system", "content": body["system"]}] if body.get("system") else []
    return chat + [{"role": m["role"], "content": m["content"]} for m in body["messages"]]


def cache_prefix(chat: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str] | None:
    """The prompt up to and including the last block with ``cache_control``, and that breakpoint's TTL."""
    last = None
    for i, message in enumerate(chat):
        if isinstance(message["content"], list):
            for j, block in enumerate(message["content"]):
                if isinstance(block.get("cache_control"), dict):
                    last = (i, j, str(block["cache_control"].get("ttl") or "5m"))
    if last is None:
        return None
    i, j, ttl = last
    return [*chat[:i], {**chat[i], "content": chat[i]["content"][:j + 1]}], ttl


def usage_of(answer: Answer, chat: list[dict[str, Any]], encoding: str) -> dict[str, Any]:
    """Anthropic's ``usage``: ``input_tokens`` excludes what was written to (or read from) the cache."""
    written, ttl = 0, "5m"
    prefix = cache_prefix(chat)
    if prefix is not None:
        # The prefix's share of the prompt: its messages with their framing, without the reply priming.
        written = min(answer.prompt_tokens, tokens.count_chat_tokens(prefix[0], encoding) - tokens.REPLY_PRIMING)
        ttl = prefix[1]
    return {
        "input_tokens": answer.prompt_tokens - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0 if ttl == "1h" else written,
                           "ephemeral_1h_input_tokens": written if ttl == "1h" else 0},
        "output_tokens": answer.completion_tokens,
        "service_tier": "standard",
    }


def dispatch(sim: SimulatedProvider, request: Request, unlucky: bool) -> Response:
    """One Messages API call; ``unlucky`` says the simulator's error rate picked it for an overload."""
    request_id = "req_sim" + sim.response_id(request.path)
    if request.method != "POST" or not request.path.rstrip("/").endswith("/v1/messages"):
        return _error(404, "Not found", request_id)
    if not request.headers.get("x-api-key"):
        return _error(401, "x-api-key header is required", request_id)
    if not request.headers.get("anthropic-version"):
        return _error(400, "anthropic-version: header is required", request_id)
    try:
        body = json.loads(request.get_data(as_text=True))
    except ValueError:
        return _error(400, "The request body is not valid JSON.", request_id)
    problem = _invalid(body)
    if problem is not None:
        return _error(400, problem, request_id)

    model = body["model"]
    chat = _as_chat(body)
    directives = find_directives(chat)
    fault = sim.fault(model, directives, unlucky)
    if fault is not None:
        if fault.overloaded:
            return _error(OVERLOADED, "Overloaded", request_id)
        return _error(fault.status, fault.message, request_id, fault.retry_after)
    if "garbage" in directives:
        return garbage()

    encoding = encoding_for(model)
    answer = sim.answer(model, chat, body["max_tokens"], directives)
    usage = None if "no_usage" in directives else usage_of(answer, chat, encoding)
    message: dict[str, Any] = {
        "id": "msg_sim" + sim.response_id(answer.text),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": "max_tokens" if answer.truncated else "end_turn",
        "stop_sequence": None,
    }
    if body.get("stream"):
        response = Response(_events(message, usage, directives), status=200,
                            content_type="text/event-stream; charset=utf-8", direct_passthrough=True)
        response.headers["cache-control"] = "no-cache"
    else:
        if usage is not None:
            message["usage"] = usage
        response = Response(json.dumps(message), status=200, content_type="application/json")
    response.headers["request-id"] = request_id
    return response


def _events(message: dict[str, Any], usage: dict[str, Any] | None, directives: dict[str, str]) -> Iterator[bytes]:
    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    started = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    if usage is not None:
        started["usage"] = {**usage, "output_tokens": 1}  # as Anthropic: the prompt, and one token so far
    yield event("message_start", {"message": started})
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    yield event("ping", {})
    text = message["content"][0]["text"]
    for i, word in paced(text.split(" ") if text else [], directives):
        yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                  "text": word if i == 0 else " " + word}})
    yield event("content_block_stop", {"index": 0})
    delta: dict[str, Any] = {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}}
    if usage is not None:
        delta["usage"] = {"output_tokens": usage["output_tokens"]}
    yield event("message_delta", delta)
    yield event("message_stop", {})
