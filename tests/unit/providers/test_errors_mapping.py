"""The shared pieces every adapter relies on: the status/type -> typed error table, Retry-After parsing, the
Bedrock error-code table, and the SSE parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from finops.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from finops.providers.bedrock import map_error
from finops.providers.http_errors import error_class, provider_error, retry_after_seconds
from finops.providers.sse import ServerSentEvent, iter_events

NOW = datetime(2025, 10, 14, 11, 26, 17, tzinfo=UTC)


@pytest.mark.parametrize(("status", "error_type", "cls"), [
    (400, None, ProviderBadRequest),
    (404, None, ProviderBadRequest),
    (413, None, ProviderBadRequest),
    (422, None, ProviderBadRequest),
    (401, None, ProviderAuthError),
    (403, None, ProviderAuthError),
    (401, "invalid_request_error", ProviderAuthError),  # OpenAI's bad key: the status wins
    (429, None, ProviderRateLimited),
    (429, "tokens", ProviderRateLimited),
    (408, None, ProviderTimeout),
    (504, None, ProviderTimeout),
    (500, None, ProviderUnavailable),
    (502, None, ProviderUnavailable),
    (503, None, ProviderOverloaded),
    (529, None, ProviderOverloaded),  # Anthropic's overload, whatever the body says
    (None, "overloaded_error", ProviderOverloaded),  # an error event inside a stream
    (None, "rate_limit_error", ProviderRateLimited),
    (None, "api_error", ProviderUnavailable),
    (None, "invalid_request_error", ProviderBadRequest),
    (200, "overloaded_error", ProviderOverloaded),
    (None, None, ProviderUnavailable),
    (None, "something_new", ProviderUnavailable),
])
def test_error_class(status: int | None, error_type: str | None, cls: type[ProviderError]) -> None:
    assert error_class(status, error_type) is cls


@pytest.mark.parametrize(("cls", "retryable", "http"), [
    (ProviderRateLimited, True, 429), (ProviderOverloaded, True, 503), (ProviderUnavailable, True, 502),
    (ProviderTimeout, True, 504), (ProviderBadRequest, False, 400), (ProviderAuthError, False, 502)])
def test_retryable_and_status_of_each_class(cls: type[ProviderError], retryable: bool, http: int) -> None:
    assert cls.retryable is retryable
    assert cls.status == http


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({"retry-after": "14"}, 14.0),
    ({"Retry-After": "1.5"}, 1.5),
    ({"retry-after-ms": "766", "retry-after": "1"}, 0.766),
    ({"retry-after": "Tue, 14 Oct 2025 11:26:47 GMT"}, 30.0),
    ({"retry-after": "Tue, 14 Oct 2025 11:00:00 GMT"}, 0.0),
    ({"retry-after": "soon"}, None),
    ({"retry-after": "-3"}, None),
    ({"retry-after": "nan"}, None),
    # Anthropic without retry-after: the latest reset of an exhausted limit
    ({"anthropic-ratelimit-input-tokens-remaining": "0",
      "anthropic-ratelimit-input-tokens-reset": "2025-10-14T11:26:31Z",
      "anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": "2025-10-14T11:26:20Z",
      "anthropic-ratelimit-output-tokens-remaining": "8000",
      "anthropic-ratelimit-output-tokens-reset": "2025-10-14T11:28:00Z"}, 14.0),
    ({"anthropic-ratelimit-requests-remaining": "3",
      "anthropic-ratelimit-requests-reset": "2025-10-14T11:26:31Z"}, None),
    ({"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "garbage"}, None),
])
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers, now=NOW) == expected


def test_provider_error_carries_retry_after_and_status() -> None:
    err = provider_error("groq", "slow down", status=429, headers={"retry-after": "10"})
    assert isinstance(err, ProviderRateLimited)
    assert (err.retry_after, err.upstream_status, err.provider) == (10.0, 429, "groq")


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}, "Converse")


@pytest.mark.parametrize(("code", "status", "cls"), [
    ("ThrottlingException", 429, ProviderRateLimited),
    ("throttlingException", 200, ProviderRateLimited),  # an exception event inside a 200 stream
    ("ServiceUnavailableException", 503, ProviderOverloaded),
    ("serviceUnavailableException", 200, ProviderOverloaded),
    ("ModelNotReadyException", 429, ProviderOverloaded),
    ("ModelTimeoutException", 408, ProviderTimeout),
    ("ValidationException", 400, ProviderBadRequest),
    ("validationException", 200, ProviderBadRequest),
    ("ResourceNotFoundException", 404, ProviderBadRequest),
    ("AccessDeniedException", 403, ProviderAuthError),
    ("UnrecognizedClientException", 403, ProviderAuthError),
    ("ExpiredTokenException", 403, ProviderAuthError),
    ("InternalServerException", 500, ProviderUnavailable),
    ("internalServerException", 200, ProviderUnavailable),
    ("ModelErrorException", 424, ProviderUnavailable),
    ("modelStreamErrorException", 200, ProviderUnavailable),
    ("SomethingNewException", 418, ProviderBadRequest),  # unknown code: the status decides
    ("SomethingNewException", 500, ProviderUnavailable),
])
def test_bedrock_error_codes(code: str, status: int, cls: type[ProviderError]) -> None:
    err = map_error(client_error(code, status))
    assert type(err) is cls
    assert err.provider == "bedrock"
    assert err.upstream_status == (status if status >= 400 else None)
    assert f"{code} happened" in err.message


def test_bedrock_retry_after_header_is_kept() -> None:
    assert map_error(client_error("ThrottlingException", 429, {"retry-after": "3"})).retry_after == 3.0


@pytest.mark.parametrize(("exc", "cls"), [
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), ProviderTimeout),
    (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), ProviderTimeout),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ProviderUnavailable),
])
def test_bedrock_transport_errors(exc: Exception, cls: type[ProviderError]) -> None:
    assert type(map_error(exc)) is cls


# --- SSE --------------------------------------------------------------------------------------------------


def test_sse_fields_comments_and_multiline_data() -> None:
    lines = [": keep-alive", "event: message_start", "data: {\"a\":", "data: 1}", "", "id: 7", "data:x", "",
             "retry: 100", "", "event: ping", "", "data: [DONE]", ""]
    assert list(iter_events(lines)) == [
        ServerSentEvent(event="message_start", data="{\"a\":\n1}"),
        ServerSentEvent(data="x", id="7"),
        ServerSentEvent(data="[DONE]", id="7"),
    ]


def test_sse_crlf_and_an_unterminated_last_event() -> None:
    assert list(iter_events(["data: a\r", "\r", "data: b"])) == [ServerSentEvent(data="a"), ServerSentEvent(data="b")]


def test_sse_only_one_leading_space_is_stripped() -> None:
    assert list(iter_events(["data:  two", ""])) == [ServerSentEvent(data=" two")]
