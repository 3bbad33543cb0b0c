"""Base adapter for providers that speak OpenAI's chat-completions API over HTTPS (httpx)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from ..errors import ProviderError, ProviderTimeout
from ..pricing import Usage
from ..settings import ProviderConfig
from .base import Completion, api_key

MAX_UPSTREAM_MESSAGE = 300


class OpenAICompatibleProvider:
    name: ClassVar[str] = "openai-compatible"
    # Request fields this provider rejects; dropped before the call.
    unsupported_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: ProviderConfig, *, secret_max_age: int = 300,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.secret_max_age = secret_max_age
        self._client = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            transport=transport,
        )

    def prepare(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if k not in self.unsupported_fields}

    def complete(self, payload: dict[str, Any]) -> Completion:
        try:
            key = api_key(self.name, self.config.secret_name, self.secret_max_age)
        except Exception as exc:  # Secrets Manager down, secret missing or unreadable
            raise ProviderError(self.name, f"The API key for {self.name} is unavailable.") from exc
        if not key:
            raise ProviderError(self.name, f"The API key for {self.name} is empty.")
        try:
            response = self._client.post(
                "chat/completions", json=self.prepare(payload), headers={"Authorization": f"Bearer {key}"}
            )
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(self.name, f"{self.name} did not answer in time ({type(exc).__name__}).") from exc
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, f"{self.name} could not be reached ({type(exc).__name__}).") from exc
        if response.status_code >= 400:
            raise ProviderError(
                self.name,
                f"{self.name} answered HTTP {response.status_code}: {self._upstream_message(response)}",
                upstream_status=response.status_code,
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError(self.name, f"{self.name} answered with a body that is not JSON.") from exc
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise ProviderError(self.name, f"{self.name} answered without choices.")
        return Completion(body=body, usage=parse_usage(body.get("usage")))

    @staticmethod
    def _upstream_message(response: httpx.Response) -> str:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.reason_phrase or "error"
        return str(message)[:MAX_UPSTREAM_MESSAGE]

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
