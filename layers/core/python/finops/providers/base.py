"""What every provider adapter returns, and the secret lookup they share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from ..pricing import Usage


@dataclass(frozen=True)
class Completion:
    """A provider's answer, already in OpenAI's chat-completion shape."""

    body: dict[str, Any]
    usage: Usage | None  # None when the provider reported no usage (the gateway then counts it)


class ChatProvider(Protocol):
    name: str

    def complete(self, payload: dict[str, Any]) -> Completion: ...


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
