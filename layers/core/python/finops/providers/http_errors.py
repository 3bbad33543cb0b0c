"""Upstream HTTP failures -> the typed :class:`finops.errors.ProviderError` tree, for the httpx adapters.

One table for every HTTP provider: the status decides, unless the provider names its error type (Anthropic's
``overloaded_error``, an ``error`` event in a stream that has no status of its own). ``post_json`` and
``post_events`` are the adapters' one way to call: every transport failure, error status and unreadable body
comes out typed.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from .sse import ServerSentEvent, iter_events

MAX_UPSTREAM_MESSAGE = 300

# Error ``type`` (Anthropic) or ``code`` (OpenAI-compatible) -> class, when the provider names it.
ERROR_TYPES: dict[str, type[ProviderError]] = {
    "overloaded_error": ProviderOverloaded,
    "rate_limit_error": ProviderRateLimited,
    "rate_limit_exceeded": ProviderRateLimited,
    "api_error": ProviderUnavailable,
    "server_error": ProviderUnavailable,
    "timeout_error": ProviderTimeout,
    "invalid_request_error": ProviderBadRequest,
    "not_found_error": ProviderBadRequest,
    "request_too_large": ProviderBadRequest,
    "authentication_error": ProviderAuthError,
    "permission_error": ProviderAuthError,
    "invalid_api_key": ProviderAuthError,
}


def error_class(status: int | None, error_type: str | None = None) -> type[ProviderError]:
    if status is not None and 200 <= status < 300:  # only an error event inside a 200 stream lands here
        status = None
    if status in (401, 403):
        return ProviderAuthError
    if status == 429:
        return ProviderRateLimited
    if status in (503, 529):
        return ProviderOverloaded
    if status in (408, 504):
        return ProviderTimeout
    if error_type in ERROR_TYPES:
        return ERROR_TYPES[error_type]
    if status is not None and 400 <= status < 500:
        return ProviderBadRequest
    return ProviderUnavailable


def provider_error(provider: str, message: str, *, status: int | None = None, error_type: str | None = None,
                   headers: Mapping[str, str] | None = None) -> ProviderError:
    cls = error_class(status, error_type)
    retry_after = retry_after_seconds(headers) if headers is not None else None
    return cls(provider, message[:MAX_UPSTREAM_MESSAGE * 2], upstream_status=status, retry_after=retry_after)


def from_response(provider: str, response: httpx.Response) -> ProviderError:
    """The error for an upstream response with status >= 400 (its body must have been read)."""
    error_type, message = error_details(_json(response))
    if not message:
        message = response.reason_phrase or "error"
    return provider_error(
        provider, f"{provider} answered HTTP {response.status_code}: {message[:MAX_UPSTREAM_MESSAGE]}",
        status=response.status_code, error_type=error_type, headers=response.headers)


def from_transport(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """A request that got no complete answer: a timeout, a refused or dropped connection."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(provider, f"{provider} did not answer in time ({type(exc).__name__}).")
    return ProviderUnavailable(provider, f"{provider} could not be reached or dropped the connection "
                                         f"({type(exc).__name__}).")


def post_json(client: httpx.Client, provider: str, path: str, body: Any, headers: Mapping[str, str]) -> Any:
    """POST ``body`` and return the parsed JSON answer."""
    try:
        response = client.post(path, json=body, headers=dict(headers))
    except httpx.HTTPError as exc:
        raise from_transport(provider, exc) from exc
    if response.status_code >= 400:
        raise from_response(provider, response)
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderUnavailable(provider, f"{provider} answered with a body that is not JSON.") from exc


def post_events(client: httpx.Client, provider: str, path: str, body: Any,
                headers: Mapping[str, str]) -> Iterator[ServerSentEvent]:
    """POST ``body`` and yield the server-sent events of the answer as they arrive. Closing the iterator early
    closes the connection."""
    try:
        with client.stream("POST", path, json=body, headers={**headers, "Accept": "text/event-stream"}) as response:
            if response.status_code >= 400:
                response.read()
                raise from_response(provider, response)
            yield from iter_events(response.iter_lines())
    except httpx.HTTPError as exc:
        raise from_transport(provider, exc) from exc


def event_object(provider: str, data: str) -> dict[str, Any]:
    """A streamed event's JSON data, which must be an object."""
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ProviderUnavailable(provider, f"{provider} streamed an event that is not JSON.") from exc
    if not isinstance(value, dict):
        raise ProviderUnavailable(provider, f"{provider} streamed an event that is not an object.")
    return value


def error_details(body: Any) -> tuple[str | None, str]:
    """(type or code, message) from ``{"error": {...}}`` (OpenAI, Groq, Anthropic) or ``{"error": "text"}``."""
    if not isinstance(body, dict):
        return None, ""
    error = body.get("error")
    if isinstance(error, str):
        return None, error
    if not isinstance(error, dict):
        return None, ""
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    code = error.get("code") if isinstance(error.get("code"), str) else None
    if code in ERROR_TYPES:  # OpenAI: type "requests", code "rate_limit_exceeded"
        kind = code
    return kind, str(error.get("message") or "")


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI), ``retry-after`` (seconds or an HTTP date), or else the
    latest ``anthropic-ratelimit-*-reset`` (RFC 3339) of a limit whose ``-remaining`` is 0."""
    lowered = {k.lower(): v for k, v in headers.items()}
    now = now or datetime.now(UTC)
    ms = _number(lowered.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000
    value = lowered.get("retry-after")
    if value:
        seconds = _number(value)
        if seconds is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, (when.astimezone(UTC) - now).total_seconds())
    waits = []
    for name, reset in lowered.items():
        if name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            remaining = lowered.get(name.removesuffix("-reset") + "-remaining")
            if remaining is not None and _number(remaining) == 0:
                try:
                    when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
                except ValueError:
                    continue
                if when.tzinfo is not None:
                    waits.append(max(0.0, (when - now).total_seconds()))
    return max(waits) if waits else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
