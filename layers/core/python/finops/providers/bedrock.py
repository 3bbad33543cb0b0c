"""Amazon Bedrock's Converse API (boto3 ``bedrock-runtime``: ``converse`` and ``converse_stream``), mapped to and
from OpenAI's chat schema.

Authentication is IAM (the function's role); the region is the provider config's, else AWS_REGION at call time;
``base_url``, when set, is the endpoint override. The client comes from a cached factory and does not retry:
retries and fallbacks belong to the gateway. Usage: ``inputTokens`` excludes cache reads and writes, so OpenAI's
``prompt_tokens`` is their sum (as for Anthropic). Docs:
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and ..._ConverseStream.html.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cache
from typing import Any, ClassVar

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.eventstream import ParserError as EventStreamParserError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    ReadTimeoutError,
)

from .. import aws
from ..errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..pricing import Usage
from ..settings import ProviderConfig
from . import http_errors
from .base import Completion, StreamChunk
from .http_errors import MAX_UPSTREAM_MESSAGE
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

# What a call or a stream may raise below the typed errors: botocore's, and urllib3's (a stream is read from the
# raw connection, so a dropped or stalled connection mid-stream surfaces as urllib3's error), and a corrupt frame.
TRANSPORT_ERRORS = (ClientError, BotoCoreError, urllib3.exceptions.HTTPError, EventStreamParserError)

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# Error codes (ClientError for the call, EventStreamError for an exception event in a stream; lower-cased,
# since the stream's exception events are camelCase) -> class.
ERROR_CODES: dict[str, type[ProviderError]] = {
    "throttlingexception": ProviderRateLimited,
    "serviceunavailableexception": ProviderOverloaded,
    "modelnotreadyexception": ProviderOverloaded,
    "modeltimeoutexception": ProviderTimeout,
    "validationexception": ProviderBadRequest,
    "resourcenotfoundexception": ProviderBadRequest,
    "accessdeniedexception": ProviderAuthError,
    "unrecognizedclientexception": ProviderAuthError,
    "expiredtokenexception": ProviderAuthError,
    "invalidsignatureexception": ProviderAuthError,
    "internalserverexception": ProviderUnavailable,
    "modelerrorexception": ProviderUnavailable,
    "modelstreamerrorexception": ProviderUnavailable,
}

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}


@cache
def runtime_client(region: str, endpoint_url: str | None, connect_timeout: float, read_timeout: float) -> Any:
    """One ``bedrock-runtime`` client per (region, endpoint, timeouts), created on first use."""
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                    retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.session.Session().client("bedrock-runtime", region_name=region, endpoint_url=endpoint_url,
                                          config=config)


class BedrockProvider:
    name: ClassVar[str] = "bedrock"

    def __init__(self, config: ProviderConfig, *, secret_max_age: int = 300) -> None:
        self.config = config  # secret_max_age: accepted like every adapter's; Bedrock has no key (IAM)

    def client(self) -> Any:
        return runtime_client(self.config.region or aws.region(), self.config.base_url,
                              self.config.connect_timeout_seconds, self.config.timeout_seconds)

    def complete(self, payload: dict[str, Any]) -> Completion:
        request = to_converse_request(payload)
        try:
            response = self.client().converse(**request)
        except TRANSPORT_ERRORS as exc:
            raise map_error(exc) from exc
        try:
            content = response["output"]["message"]["content"]
        except (KeyError, TypeError) as exc:
            raise ProviderUnavailable(self.name, "bedrock answered without an output message.") from exc
        usage = parse_usage(response.get("usage"))
        texts, calls = [], []
        for block in content:
            if "text" in block:
                texts.append(block["text"])
            elif "toolUse" in block:
                use = block["toolUse"]
                calls.append(tool_call(use.get("toolUseId", ""), use.get("name", ""), use.get("input") or {}))
        body = completion_body(
            id=_completion_id(response), model=request["modelId"],
            content="".join(texts) if texts or not calls else None, tool_calls=calls,
            finish_reason=FINISH_REASONS.get(response.get("stopReason", ""), "stop"), usage=usage)
        return Completion(body=body, usage=usage)

    def stream(self, payload: dict[str, Any]) -> Iterator[StreamChunk]:
        request = to_converse_request(payload)
        try:
            response = self.client().converse_stream(**request)
            state = _StreamState(_completion_id(response), request["modelId"])
            events = response["stream"]
            try:
                for event in events:
                    yield from state.handle(event)
            finally:
                events.close()
        except TRANSPORT_ERRORS as exc:
            raise map_error(exc) from exc
        if not state.stopped:
            raise ProviderUnavailable(self.name, "bedrock ended the stream before messageStop.")
        if state.usage is None:
            raise ProviderUnavailable(self.name, "bedrock ended the stream without its usage metadata.")

    def close(self) -> None:
        """The client is shared by the factory and lives as long as the process."""


# --- errors -----------------------------------------------------------------------------------------


def map_error(exc: Exception) -> ProviderError:
    provider = BedrockProvider.name
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | urllib3.exceptions.TimeoutError):
        return ProviderTimeout(provider, f"bedrock did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, NoCredentialsError):
        return ProviderAuthError(provider, "No AWS credentials are available to call bedrock.")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or "")
        status = meta.get("HTTPStatusCode")
        status = status if isinstance(status, int) and status >= 400 else None
        message = str(error.get("Message") or code or "error")[:MAX_UPSTREAM_MESSAGE]
        cls = ERROR_CODES.get(code.lower()) or http_errors.error_class(status)
        retry_after = http_errors.retry_after_seconds(meta.get("HTTPHeaders") or {})
        return cls(provider, f"bedrock answered {code or status}: {message}", upstream_status=status,
                   retry_after=retry_after)
    return ProviderUnavailable(provider, f"bedrock could not be reached or dropped the connection "
                                         f"({type(exc).__name__}).")


# --- request ----------------------------------------------------------------------------------------


def to_converse_request(payload: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat-completions payload -> ``converse`` keyword arguments."""
    provider = BedrockProvider.name
    if int(payload.get("n") or 1) != 1:
        raise ProviderBadRequest(provider, "bedrock returns one choice per call; n must be 1.")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in payload.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(provider, message.get("content"))
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            turn = ("user", _user_blocks(message.get("content")))
        elif role == "assistant":
            turn = ("assistant", _assistant_blocks(message))
        elif role == "tool":
            if not message.get("tool_call_id"):
                raise ProviderBadRequest(provider, "A tool message needs its tool_call_id.")
            turn = ("user", [{"toolResult": {"toolUseId": message["tool_call_id"],
                                             "content": [{"text": text_of(provider, message.get("content"))}]}}])
        else:
            raise ProviderBadRequest(provider, f"bedrock does not accept messages of role {role!r}.")
        if messages and messages[-1]["role"] == turn[0]:
            messages[-1]["content"].extend(turn[1])
        else:
            messages.append({"role": turn[0], "content": turn[1]})
    request: dict[str, Any] = {"modelId": str(payload.get("model") or ""), "messages": messages}
    if system:
        request["system"] = system
    inference: dict[str, Any] = {}
    if limit := output_limit(payload):
        inference["maxTokens"] = limit
    if payload.get("temperature") is not None:
        inference["temperature"] = float(payload["temperature"])
    if payload.get("top_p") is not None:
        inference["topP"] = float(payload["top_p"])
    if stops := stop_sequences(payload):
        inference["stopSequences"] = stops
    if inference:
        request["inferenceConfig"] = inference
    if payload.get("tools"):
        request["toolConfig"] = _tool_config(payload["tools"], payload.get("tool_choice"))
    return request


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"text": content or ""}]
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"text": str(part.get("text") or "")})
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            decoded = data_url(BedrockProvider.name, url) if isinstance(url, str) else None
            if decoded is None or decoded[0] not in IMAGE_FORMATS:
                raise ProviderBadRequest(BedrockProvider.name, "bedrock accepts images only as base64 data URLs "
                                                               "(png, jpeg, gif, webp).")
            blocks.append({"image": {"format": IMAGE_FORMATS[decoded[0]], "source": {"bytes": decoded[1]}}})
        else:
            raise ProviderBadRequest(BedrockProvider.name, f"bedrock does not accept content parts of type {kind!r}.")
    return blocks


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    text = text_of(BedrockProvider.name, message.get("content"))
    blocks: list[dict[str, Any]] = [{"text": text}] if text else []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append({"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"),
                                   "input": tool_arguments(BedrockProvider.name, function.get("arguments"))}})
    return blocks


def _tool_config(tools: list[dict[str, Any]], choice: Any) -> dict[str, Any]:
    specs = []
    for tool in tools:
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, dict):
            raise ProviderBadRequest(BedrockProvider.name, "bedrock accepts only tools of type function.")
        spec: dict[str, Any] = {"name": function.get("name"), "inputSchema": {
            "json": function.get("parameters") or {"type": "object", "properties": {}}}}
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        config["toolChoice"] = {"tool": {"name": choice["function"].get("name")}}
    # "none": Converse has no such choice; the tools stay declared (a history with tool blocks needs them).
    return config


# --- response ---------------------------------------------------------------------------------------


def parse_usage(raw: Any) -> Usage | None:
    """Converse ``usage`` -> :class:`Usage` (``prompt_tokens`` = input + cache reads + cache writes)."""
    if not isinstance(raw, dict) or raw.get("inputTokens") is None:
        return None
    try:
        read = int(raw.get("cacheReadInputTokens") or 0)
        written = int(raw.get("cacheWriteInputTokens") or 0)
        return Usage(prompt_tokens=int(raw["inputTokens"]) + read + written,
                     completion_tokens=int(raw.get("outputTokens") or 0), cached_tokens=read,
                     cache_write_tokens=written)
    except (TypeError, ValueError):
        return None


def _completion_id(response: dict[str, Any]) -> str:
    request_id = (response.get("ResponseMetadata") or {}).get("RequestId") or ""
    return f"chatcmpl-{request_id}"


class _StreamState:
    """ConverseStream events -> OpenAI chunks, one event at a time."""

    def __init__(self, id: str, model: str) -> None:
        self.id = id
        self.model = model
        self.created = int(time.time())
        self.tool_index: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self.stopped = False
        self.usage: Usage | None = None

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return chunk_body(id=self.id, model=self.model, created=self.created, delta=delta,
                          finish_reason=finish_reason)

    def handle(self, event: dict[str, Any]) -> Iterator[StreamChunk]:
        if "messageStart" in event:
            yield StreamChunk(self.chunk({"role": "assistant", "content": ""}))
        elif "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = (start.get("start") or {}).get("toolUse")
            if use:
                position = self.tool_index.setdefault(int(start.get("contentBlockIndex", 0)), len(self.tool_index))
                call = tool_call(use.get("toolUseId", ""), use.get("name", ""), "")
                yield StreamChunk(self.chunk({"tool_calls": [{"index": position, **call}]}))
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if "text" in delta:
                yield StreamChunk(self.chunk({"content": delta["text"]}))
            elif "toolUse" in delta:
                position = self.tool_index.get(int(block.get("contentBlockIndex", 0)), 0)
                yield StreamChunk(self.chunk({"tool_calls": [
                    {"index": position, "function": {"arguments": str(delta["toolUse"].get("input") or "")}}]}))
        elif "messageStop" in event:
            self.stopped = True
            reason = event["messageStop"].get("stopReason", "")
            yield StreamChunk(self.chunk({}, FINISH_REASONS.get(reason, "stop")))
        elif "metadata" in event:
            self.usage = parse_usage(event["metadata"].get("usage"))
            if self.usage is not None:
                yield StreamChunk(usage_chunk_body(id=self.id, model=self.model, created=self.created,
                                                   usage=self.usage), usage=self.usage)
        # contentBlockStop and reasoning deltas: nothing to forward. Exception events are raised by botocore.
