"""A simulated OpenAI-compatible provider for the local stack and the tests.

Deterministic text (seeded by the prompt), usage counted with tiktoken, configurable latency and error
rate. A message may carry directives to force a behaviour, e.g. ``[[sim:status=503]]``,
``[[sim:latency_ms=2500]]``, ``[[sim:no_usage]]`` or ``[[sim:tokens=40]]``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
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


@dataclass
class SimulatorConfig:
    latency_ms: int = 0
    error_rate: float = 0.0
    seed: int = 7
    default_tokens: int = 24


def _directives(messages: list[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for message in messages:
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            str(p.get("text", "")) for p in content or [] if isinstance(p, dict)]
        for text in texts:
            for key, value in DIRECTIVE.findall(text):
                found[key] = value or "1"
    return found


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

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        with self._lock:
            self.calls += 1
            unlucky = self._random.random() < self.config.error_rate
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
        directives = _directives(messages)
        latency = int(directives.get("latency_ms", self.config.latency_ms))
        if latency:
            time.sleep(latency / 1000)
        if "status" in directives:
            status = int(directives["status"])
            return _error(status, f"simulated HTTP {status}", "server_error" if status >= 500 else "error")
        if unlucky:
            return _error(503, "simulated overload", "server_error")
        if "garbage" in directives:
            return Response("<html>bad gateway</html>", status=200, content_type="text/html")

        encoding = ENCODINGS.get(model, "cl100k_base")
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        n_tokens = int(directives.get("tokens", self.config.default_tokens))
        finish = "stop"
        if limit is not None and n_tokens > int(limit):
            n_tokens, finish = int(limit), "length"
        text = self.text_for(messages, n_tokens, encoding)
        prompt_tokens = tokens.count_chat_tokens(messages, encoding)
        completion_tokens = tokens.count_text(text, encoding)
        body: dict[str, Any] = {
            "id": "chatcmpl-sim-" + hashlib.sha256(f"{self.calls}{text}".encode()).hexdigest()[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_simulated",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish}],
        }
        if "no_usage" not in directives:
            body["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0},
            }
        return Response(json.dumps(body), status=200, content_type="application/json")


def serve(host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None) -> BaseWSGIServer:
    """Start the simulator on a daemon thread; ``server.port`` tells where it listens."""
    server = make_server(host, port, SimulatedProvider(config), threaded=True)
    threading.Thread(target=server.serve_forever, name="simulated-provider", daemon=True).start()
    return server
