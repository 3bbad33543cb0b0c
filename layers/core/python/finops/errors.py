"""The one exception tree. Each error knows its HTTP status and its OpenAI error envelope.

The mapping to HTTP lives here and nowhere else (``FinOpsError.status`` + ``envelope()``); handlers
register one exception handler for the base class.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FinOpsError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.headers = dict(headers or {})
        self.details = dict(details or {})

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "param": self.param,
        }
        error.update(self.details)
        return {"error": error}


# --- 4xx: the caller's fault ------------------------------------------------------------------------


class InvalidRequest(FinOpsError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class MissingCostTags(InvalidRequest):
    code = "missing_cost_tags"


class Unauthorized(FinOpsError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(FinOpsError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"


class NotFound(FinOpsError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(FinOpsError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(FinOpsError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


class RequestCapExceeded(RateLimited):
    code = "request_cap_exceeded"


class CircuitOpen(RateLimited):
    code = "circuit_open"


# --- 5xx: ours or upstream's ------------------------------------------------------------------------


class ProviderError(FinOpsError):
    """The provider answered with an error (or garbage), or could not be reached.

    ``retryable`` says whether the same call may succeed on a retry or on the next model of a fallback
    chain (rate limits, overload, 5xx, timeouts); a bad request or a rejected key will not.
    """

    status = 502
    type = "provider_error"
    code = "provider_error"
    retryable: ClassVar[bool] = False

    def __init__(self, provider: str, message: str, *, upstream_status: int | None = None,
                 retry_after: float | None = None, **kw: Any) -> None:
        details: dict[str, Any] = {"provider": provider}
        if upstream_status is not None:
            details["upstream_status"] = upstream_status
        super().__init__(message, details=details, **kw)
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after = retry_after  # seconds, from the provider's Retry-After when it sent one


class ProviderUnavailable(ProviderError):
    """5xx from the provider, a dropped connection, or a body that is not what the API documents."""

    code = "provider_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    status = 504
    code = "provider_timeout"
    retryable = True


class ProviderRateLimited(ProviderError):
    """The provider throttled the gateway's key (HTTP 429, Bedrock ThrottlingException)."""

    status = 429
    type = "rate_limit_error"
    code = "provider_rate_limited"
    retryable = True


class ProviderOverloaded(ProviderError):
    """The provider is over capacity (Anthropic 529 overloaded_error, HTTP 503, Bedrock ServiceUnavailable)."""

    status = 503
    code = "provider_overloaded"
    retryable = True


class ProviderBadRequest(ProviderError):
    """The provider refused the request itself (HTTP 400/404/413/422, Bedrock ValidationException)."""

    status = 400
    type = "invalid_request_error"
    code = "provider_bad_request"


class ProviderAuthError(ProviderError):
    """The provider rejected the gateway's credentials: an operator problem, not the caller's."""

    code = "provider_auth_error"


class InternalError(FinOpsError):
    status = 500
    type = "server_error"
    code = "internal_error"


class ServiceUnavailable(FinOpsError):
    status = 503
    type = "server_error"
    code = "service_unavailable"
