"""Base adapter for providers that speak OpenAI's chat-completions API over HTTPS (httpx).

``complete`` posts the payload as it is; ``stream`` posts it with ``stream: true`` and
``stream_options.include_usage`` (whatever the caller asked) and yields each SSE chunk as it arrives, the final
usage-only chunk (``choices == []``) included. A stream that ends without ``data: [DONE]`` was cut: it raises
:class:`ProviderUnavailable` after the chunks already yielded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from ..errors import ProviderAuthError, ProviderError, ProviderUnavailable
from ..pricing import Usage
from ..settings import ProviderConfig
from . import http_errors
from .base import Completion, StreamChunk, api_key
from .http_errors import MAX_UPSTREAM_MESSAGE

__all__ = ["MAX_UPSTREAM_MESSAGE", "OpenAICompatibleProvider", "parse_usage", "provider_key"]

DONE = "[DONE]"


def provider_key(name: str, config: ProviderConfig, max_age: int) -> str:
    """The provider's API key, or :class:`ProviderAuthError` when there is none to send."""
    if not config.secret_name:
        raise ProviderAuthError(name, f"No API key secret is configured for {name}.")
    try:
        key = api_key(name, config.secret_name, max_age)
    except Exception as exc:  # Secrets Manager down, secret missing or unreadable
        raise ProviderAuthError(name, f"The API key for {name} is unavailable.") from exc
    if not key:
        raise ProviderAuthError(name, f"The API key for {name} is empty.")
    return key


def http_client(config: ProviderConfig, transport: httpx.BaseTransport | None) -> httpx.Client:
    if not config.base_url:
        raise ValueError("this provider needs a base_url")
    return httpx.Client(
        base_url=config.base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
        transport=transport,
    )


class OpenAICompatibleProvider:
    name: ClassVar[str] = "openai-compatible"
    # Request fields this provider rejects; dropped before the call.
    unsupported_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: ProviderConfig, *, secret_max_age: int = 300,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.secret_max_age = secret_max_age
        self._client = http_client(config, transport)

    def prepare(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if k not in self.unsupported_fields}

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {provider_key(self.name, self.config, self.secret_max_age)}"}

    def complete(self, payload: dict[str, Any]) -> Completion:
        body = self.prepare(payload)
        body.pop("stream", None)
        body.pop("stream_options", None)
        answer = http_errors.post_json(self._client, self.name, "chat/completions", body, self.headers())
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise ProviderUnavailable(self.name, f"{self.name} answered without choices.")
        return Completion(body=answer, usage=self.usage_of(answer))

    def stream(self, payload: dict[str, Any]) -> Iterator[StreamChunk]:
        body = self.prepare(payload)
        body["stream"] = True
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        events = http_errors.post_events(self._client, self.name, "chat/completions", body, self.headers())
        with contextlib.closing(events):
            for event in events:
                if event.data.strip() == DONE:
                    return
                yield self._chunk(event.data)
        raise ProviderUnavailable(self.name, f"{self.name} ended the stream before [DONE].")

    def _chunk(self, data: str) -> StreamChunk:
        chunk = http_errors.event_object(self.name, data)
        if "error" in chunk:  # an error reported mid-stream, after the 200
            raise self._stream_error(chunk)
        if not isinstance(chunk.get("choices"), list):
            raise ProviderUnavailable(self.name, f"{self.name} streamed a chunk without choices.")
        return StreamChunk(body=chunk, usage=self.usage_of(chunk))

    def _stream_error(self, chunk: dict[str, Any]) -> ProviderError:
        kind, message = http_errors.error_details(chunk)
        return http_errors.provider_error(
            self.name, f"{self.name} failed mid-stream: {(message or 'error')[:MAX_UPSTREAM_MESSAGE]}",
            error_type=kind or "server_error")

    def usage_of(self, body: dict[str, Any]) -> Usage | None:
        return parse_usage(body.get("usage"))

    def close(self) -> None:
        self._client.close()


def parse_usage(raw: Any) -> Usage | None:
    """OpenAI ``usage`` -> :class:`Usage`; None if absent or unusable."""
    if not isinstance(raw, dict) or "prompt_tokens" not in raw:
        return None
    details = raw.get("prompt_tokens_details") or {}
    try:
        return Usage(
            prompt_tokens=int(raw.get("prompt_tokens") or 0),
            completion_tokens=int(raw.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
        )
    except (TypeError, ValueError):
        return None
