"""Amazon Bedrock's Converse API (``POST /model/{modelId}/converse`` and ``.../converse-stream``), simulated for
the local stack and the tests.

Served by :class:`finops.local.simulated_provider.SimulatedProvider` under ``/bedrock/`` (the local stack gives
the bedrock adapter ``<simulator>/bedrock`` as its boto3 ``endpoint_url``, so the requests are botocore's own,
SigV4-signed with the local credentials), with the same deterministic text, tiktoken counting and
``[[sim:...]]`` directives as the other simulated APIs.

As documented at https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and
..._ConverseStream.html: the model id is in the path, the body has ``messages`` (``user`` first, content blocks),
optional ``system`` blocks and ``inferenceConfig.maxTokens``. The answer has ``output.message``, ``stopReason``
(``end_turn`` or ``max_tokens``), ``usage`` and ``metrics``; a stream is ``application/vnd.amazon.eventstream``
frames: ``messageStart``, one ``contentBlockDelta`` per word, ``contentBlockStop``, ``messageStop`` and
``metadata`` (usage). Errors are ``{"message": ...}`` with the exception's name in ``x-amzn-ErrorType`` and
Bedrock's statuses (429 ``ThrottlingException``, 503 ``ServiceUnavailableException``, 408
``ModelTimeoutException``, ...). The signature is not verified (any SigV4 ``Authorization`` header is taken),
tools are accepted and answered with text, and nothing is cached (cache reads and writes are always 0).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from .eventstream import encode_message
from .simulated_provider import SimulatedProvider, find_directives, garbage, is_count, paced

ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
# HTTP status -> the exception Bedrock answers it with.
ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
OVERLOADED = 503
SIGV4 = "AWS4-HMAC-SHA256 "


def exception_name(status: int) -> str:
    return ERRORS.get(status) or ("InternalServerException" if status >= 500 else "ValidationException")


def _error(status: int, message: str, request_id: str, retry_after: str | None = None,
           name: str | None = None) -> Response:
    response = Response(json.dumps({"message": message}), status=status, content_type="application/json")
    response.headers["x-amzn-ErrorType"] = (name or exception_name(status)) + ERROR_NAMESPACE
    response.headers["x-amzn-RequestId"] = request_id
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def _operation(path: str) -> tuple[str, bool] | None:
    """``(model id, streamed?)`` of ``/bedrock/model/{modelId}/converse[-stream]``, or None."""
    parts = path.split("/")
    if len(parts) != 5 or parts[:3] != ["", "bedrock", "model"] or parts[4] not in ("converse", "converse-stream"):
        return None
    return unquote(parts[3]), parts[4] == "converse-stream"


def _text_blocks(blocks: Any, where: str) -> str | None:
    """What is wrong with a list of content blocks, as Bedrock words it, or None."""
    if not isinstance(blocks, list) or not blocks:
        return f"{where}: Member must have length greater than or equal to 1"
    if not all(isinstance(b, dict) and len(b) == 1 for b in blocks):
        return f"{where}: each content block must have exactly one member"
    return None


def _invalid(body: Any) -> str | None:
    """What is wrong with a Converse request body, or None."""
    if not isinstance(body, dict):
        return "The request body is not a JSON object."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Member must have length greater than or equal to 1"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Member must satisfy enum value set: [user, assistant]"
        problem = _text_blocks(message.get("content"), f"messages.{i}.content")
        if problem:
            return problem
        if i and message["role"] == messages[i - 1]["role"]:
            return "A conversation must alternate between user and assistant roles."
    if messages[0]["role"] != "user":
        return "A conversation must start with a user message."
    system = body.get("system")
    if system is not None and (not isinstance(system, list) or not all(
            isinstance(b, dict) and isinstance(b.get("text"), str) for b in system)):
        return "system: each block must have a text member"
    limit = (body.get("inferenceConfig") or {}).get("maxTokens")
    if limit is not None and not is_count(limit):
        return "inferenceConfig.maxTokens: Member must have value greater than or equal to 1"
    return None


def _block_text(block: dict[str, Any]) -> str:
    if "text" in block:
        return str(block["text"])
    if "toolUse" in block:
        return json.dumps(block["toolUse"].get("input"), sort_keys=True)
    if "toolResult" in block:
        return " ".join(str(c.get("text", "")) for c in block["toolResult"].get("content") or []
                        if isinstance(c, dict))
    return ""  # images and other blocks: not counted


def _as_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt as chat messages (system first), for the shared directives, text and token counting."""
    system = "\n".join(b["text"] for b in body.get("system") or [])
    chat = [{"role": "system", "content": system}] if system else []
    return chat + [{"role": m["role"], "content": "".join(map(_block_text, m["content"]))} for m in body["messages"]]


def dispatch(sim: SimulatedProvider, request: Request, unlucky: bool) -> Response:
    """One Converse or ConverseStream call; ``unlucky`` says the simulator's error rate picked it for an overload."""
    started = time.monotonic()
    request_id = sim.response_id(request.path)
    operation = _operation(request.path)
    if request.method != "POST" or operation is None:
        return _error(404, "Not found", request_id, name="UnknownOperationException")
    if not request.headers.get("Authorization", "").startswith(SIGV4):
        return _error(403, "Missing Authentication Token", request_id, name="MissingAuthenticationTokenException")
    model, streamed = operation
    try:
        body = json.loads(request.get_data(as_text=True))
    except ValueError:
        return _error(400, "The request body is not valid JSON.", request_id)
    problem = _invalid(body)
    if problem is not None:
        return _error(400, problem, request_id)

    chat = _as_chat(body)
    directives = find_directives(chat)
    fault = sim.fault(model, directives, unlucky)
    if fault is not None:
        status = OVERLOADED if fault.overloaded else fault.status
        return _error(status, fault.message, request_id, fault.retry_after)
    if "garbage" in directives:
        return garbage()

    answer = sim.answer(model, chat, (body.get("inferenceConfig") or {}).get("maxTokens"), directives)
    stop_reason = "max_tokens" if answer.truncated else "end_turn"
    usage = None if "no_usage" in directives else {
        "inputTokens": answer.prompt_tokens, "outputTokens": answer.completion_tokens,
        "totalTokens": answer.prompt_tokens + answer.completion_tokens,
        "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}
    if streamed:
        response = Response(_frames(answer.text, stop_reason, usage, started, directives), status=200,
                            content_type="application/vnd.amazon.eventstream", direct_passthrough=True)
    else:
        out: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": [{"text": answer.text}]}},
                               "stopReason": stop_reason, "metrics": {"latencyMs": _elapsed_ms(started)}}
        if usage is not None:
            out["usage"] = usage
        response = Response(json.dumps(out), status=200, content_type="application/json")
    response.headers["x-amzn-RequestId"] = request_id
    return response


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _frames(text: str, stop_reason: str, usage: dict[str, Any] | None, started: float,
            directives: dict[str, str]) -> Iterator[bytes]:
    def event(kind: str, payload: dict[str, Any]) -> bytes:
        headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
        return encode_message(headers, json.dumps(payload, separators=(",", ":")).encode())

    yield event("messageStart", {"role": "assistant"})
    for i, word in paced(text.split(" ") if text else [], directives):
        yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word if i == 0 else " " + word}})
    yield event("contentBlockStop", {"contentBlockIndex": 0})
    yield event("messageStop", {"stopReason": stop_reason})
    if usage is not None:
        yield event("metadata", {"usage": usage, "metrics": {"latencyMs": _elapsed_ms(started)}})
