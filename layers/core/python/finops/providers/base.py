"""What every provider adapter returns, and the secret lookup they share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..pricing import Usage


@dataclass(frozen=True)
class Completion:
    """A provider's answer, already in OpenAI's chat-completion shape."""

    body: dict[str, Any]
    usage: Usage | None  # None when the provider reported no usage (the gateway then counts it)


@dataclass(frozen=True)
class StreamChunk:
    """One streamed event, already an OpenAI ``chat.completion.chunk`` dict.

    ``usage`` is set on the chunk that carries the provider's usage (OpenAI's last chunk with
    ``stream_options.include_usage``, Anthropic's ``message_delta``, Bedrock's ``metadata``); the gateway
    takes the last one it sees. ``body`` may be None for an event that carries only usage.
    """

    body: dict[str, Any] | None
    usage: Usage | None = None


class ChatProvider(Protocol):
    """An adapter: OpenAI chat-completions payload in (``model`` already the upstream model id), OpenAI shape out.

    Failures are raised as the typed subclasses of :class:`finops.errors.ProviderError`, before the first
    chunk or in the middle of a stream.
    """

    name: str

    def complete(self, payload: dict[str, Any]) -> Completion: ...

    def stream(self, payload: dict[str, Any]) -> Iterator[StreamChunk]:
        """Yield chunks as the provider produces them; the adapter asks the provider for usage itself."""
        ...

    def close(self) -> None: ...


def api_key(provider: str, secret_name: str, max_age: int) -> str:
    """``<PROVIDER>_API_KEY`` from the environment if set, else the Secrets Manager secret (cached)."""
    env = os.environ.get(f"{provider.upper()}_API_KEY")
    if env:
        return env
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(secret_name, max_age=max_age)
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip()
