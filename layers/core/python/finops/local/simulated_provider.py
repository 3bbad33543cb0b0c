"""A simulated provider for the local stack and the tests: OpenAI's chat-completions API, Anthropic's Messages
API under ``/anthropic/`` (:mod:`finops.local.simulated_anthropic`) and Bedrock's Converse API under ``/bedrock/``
(:mod:`finops.local.simulated_bedrock`).

Deterministic text (seeded by the prompt), usage counted with tiktoken, configurable latency and error
rate. Streams (``stream: true``) like OpenAI: a role chunk, one chunk per word, the finish chunk, and a
usage chunk when ``stream_options.include_usage`` asks for it. A message may carry directives to force a
behaviour, e.g. ``[[sim:status=503]]`` (with ``[[sim:only_model=gpt-4o]]``: only for that model),
``[[sim:retry_after=1]]``, ``[[sim:latency_ms=2500]]``, ``[[sim:no_usage]]``, ``[[sim:tokens=40]]``,
``[[sim:chunk_ms=50]]`` (pause between streamed chunks), ``[[sim:fail_after=5]]`` (drop the connection after
5 content chunks) or ``[[sim:stall_after=5]]`` (stop sending, connection open, after 5 chunks). All three APIs
obey the same directives.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from .. import tokens

WORDS = (
    "budget token spend tag project ledger route model cost quota bucket forecast invoice chargeback "
    "department cache latency prompt answer metric audit saving tier limit window agent loop"
).split()
DIRECTIVE = re.compile(r"\[\[sim:([a-z_]+)(?:=([A-Za-z0-9._-]+))?\]\]")
ENCODINGS = {"gpt-4o": "o200k_base", "gpt-4o-mini": "o200k_base"}
# Path prefix -> the module simulating that provider's own API (imported on first use: each builds on this one).
NATIVE_APIS = {"/anthropic/": "simulated_anthropic", "/bedrock/": "simulated_bedrock"}


@dataclass
class SimulatorConfig:
    latency_ms: int = 0
    error_rate: float = 0.0
    seed: int = 7
    default_tokens: int = 24


@dataclass(frozen=True)
class Fault:
    """A failure a call must simulate: a status forced by a directive, or an overload drawn by the error rate."""

    status: int
    message: str
    retry_after: str | None = None
    overloaded: bool = False  # drawn by ``error_rate``: each API answers with its own overload status


@dataclass(frozen=True)
class Answer:
    """What a successful call produces: the text and its usage, counted with tiktoken."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # cut at the request's output limit


def find_directives(messages: list[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for message in messages:
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            str(p.get("text", "")) for p in content or [] if isinstance(p, dict)]
        for text in texts:
            for key, value in DIRECTIVE.findall(text):
                found[key] = value or "1"
    return found


def is_count(value: Any) -> bool:
    """A positive integer as a JSON body gives it (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def encoding_for(model: str) -> str:
    return ENCODINGS.get(model, "cl100k_base")


def garbage() -> Response:
    return Response("<html>bad gateway</html>", status=200, content_type="text/html")


def paced(words: list[str], directives: dict[str, str]) -> Iterator[tuple[int, str]]:
    """``(index, word)`` for a stream, obeying ``chunk_ms``, ``fail_after`` and ``stall_after``."""
    pause = int(directives.get("chunk_ms", 0)) / 1000
    fail_after = int(directives["fail_after"]) if "fail_after" in directives else None
    stall_after = int(directives["stall_after"]) if "stall_after" in directives else None
    for i, word in enumerate(words):
        if fail_after is not None and i >= fail_after:
            raise ConnectionAbortedError("simulated provider failure mid-stream")
        if stall_after is not None and i >= stall_after:
            time.sleep(60)
        if pause:
            time.sleep(pause)
        yield i, word


def _error(status: int, message: str, kind: str) -> Response:
    body = {"error": {"message": message, "type": kind, "code": None, "param": None}}
    return Response(json.dumps(body), status=status, content_type="application/json")


class SimulatedProvider:
    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._random = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self.calls = 0

    def text_for(self, messages: list[dict[str, Any]], n_tokens: int, encoding: str) -> str:
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
        rng = random.Random(digest)
        words = [rng.choice(WORDS) for _ in range(max(0, n_tokens))]  # about one token each
        while words and tokens.count_text(" ".join(words), encoding) > n_tokens:
            words.pop()
        while tokens.count_text(" ".join(words), encoding) < n_tokens:
            words.append(rng.choice(WORDS))
        text = " ".join(words)
        return " ".join(words[:-1]) if tokens.count_text(text, encoding) > n_tokens else text

    def fault(self, model: str, directives: dict[str, str], unlucky: bool) -> Fault | None:
        """Waits the call's latency, then says which failure, if any, it must simulate."""
        latency = int(directives.get("latency_ms", self.config.latency_ms))
        if latency:
            time.sleep(latency / 1000)
        if "status" in directives and directives.get("only_model", model) == model:
            status = int(directives["status"])
            return Fault(status, f"simulated HTTP {status}", directives.get("retry_after"))
        if unlucky:
            return Fault(503, "simulated overload", overloaded=True)
        return None

    def answer(self, model: str, messages: list[dict[str, Any]], limit: Any, directives: dict[str, str]) -> Answer:
        """The deterministic text for ``messages`` (``tokens`` long, cut at ``limit``) and its usage."""
        encoding = encoding_for(model)
        n_tokens = int(directives.get("tokens", self.config.default_tokens))
        truncated = limit is not None and n_tokens > int(limit)
        if truncated:
            n_tokens = int(limit)
        text = self.text_for(messages, n_tokens, encoding)
        return Answer(text=text, prompt_tokens=tokens.count_chat_tokens(messages, encoding),
                      completion_tokens=tokens.count_text(text, encoding), truncated=truncated)

    def response_id(self, text: str) -> str:
        return hashlib.sha256(f"{self.calls}{text}".encode()).hexdigest()[:24]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        with self._lock:
            self.calls += 1
            unlucky = self._random.random() < self.config.error_rate
        for prefix, module in NATIVE_APIS.items():
            if request.path.startswith(prefix):
                return importlib.import_module(f"{__package__}.{module}").dispatch(self, request, unlucky)
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return _error(404, "not found", "invalid_request_error")
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "missing API key", "authentication_error")
        try:
            payload = json.loads(request.get_data(as_text=True))
            model = str(payload["model"])
            messages = list(payload["messages"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid body", "invalid_request_error")
        directives = find_directives(messages)
        fault = self.fault(model, directives, unlucky)
        if fault is not None:
            response = _error(fault.status, fault.message, "server_error" if fault.status >= 500 else "error")
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            return response
        if "garbage" in directives:
            return garbage()

        answer = self.answer(model, messages, payload.get("max_completion_tokens") or payload.get("max_tokens"),
                             directives)
        text, finish = answer.text, "length" if answer.truncated else "stop"
        body: dict[str, Any] = {
            "id": "chatcmpl-sim-" + self.response_id(text),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_simulated",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish}],
        }
        usage = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        if payload.get("stream"):
            options = payload.get("stream_options") or {}
            send_usage = bool(options.get("include_usage")) and "no_usage" not in directives
            return Response(self._chunks(body, text, finish, usage if send_usage else None, directives),
                            status=200, content_type="text/event-stream", direct_passthrough=True)
        if "no_usage" not in directives:
            body["usage"] = usage
        return Response(json.dumps(body), status=200, content_type="application/json")

    @staticmethod
    def _chunks(body: dict[str, Any], text: str, finish: str, usage: dict[str, Any] | None,
                directives: dict[str, str]) -> Iterator[bytes]:
        base = {k: body[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n".encode()

        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for i, word in paced(text.split(" "), directives):
            yield event([{"index": 0, "delta": {"content": word if i == 0 else " " + word}, "finish_reason": None}])
        yield event([{"index": 0, "delta": {}, "finish_reason": finish}])
        if usage is not None:
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"


def serve(host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None) -> BaseWSGIServer:
    """Start the simulator on a daemon thread; ``server.port`` tells where it listens."""
    server = make_server(host, port, SimulatedProvider(config), threaded=True)
    threading.Thread(target=server.serve_forever, name="simulated-provider", daemon=True).start()
    return server
