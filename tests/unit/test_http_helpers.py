"""finops.gateway.http (error mapping, body checks), errors and sse, without a handler."""

from __future__ import annotations

import base64
import json

import pytest
from finops import errors
from finops.gateway import http, strict_json
from finops.gateway.sse import completion_to_sse
from finops.openai_schema import ChatCompletionRequest


def test_request_id_of() -> None:
    assert http.request_id_of({"requestContext": {"requestId": "abc"}}) == "abc"
    assert http.request_id_of({}) == ""


def test_check_body_size_limit() -> None:
    assert http.check_body({"body": "x" * 100}, 100) == "x" * 100
    assert http.check_body({"body": None}, 1) is None
    with pytest.raises(errors.PayloadTooLarge) as info:
        http.check_body({"body": "x" * 101}, 100)
    assert info.value.status == 413
    assert info.value.code == "request_too_large"


def test_check_body_counts_bytes_not_characters() -> None:
    http.check_body({"body": "é" * 50}, 100)
    with pytest.raises(errors.PayloadTooLarge):
        http.check_body({"body": "é" * 51}, 100)


def test_check_body_base64() -> None:
    ok = base64.b64encode(b"y" * 100).decode()
    assert http.check_body({"body": ok, "isBase64Encoded": True}, 100) == "y" * 100  # decoded
    too_big = base64.b64encode(b"y" * 101).decode()
    with pytest.raises(errors.PayloadTooLarge):
        http.check_body({"body": too_big, "isBase64Encoded": True}, 100)
    with pytest.raises(errors.PayloadTooLarge):
        http.check_body({"body": "A" * 10_000, "isBase64Encoded": True}, 100)
    with pytest.raises(errors.InvalidRequest, match="base64"):
        http.check_body({"body": "not base64!!", "isBase64Encoded": True}, 100)


def test_proxy_error_shape() -> None:
    result = http.proxy_error(errors.PayloadTooLarge("too big"), "rid-9")
    assert result["statusCode"] == 413
    assert result["headers"]["X-Request-ID"] == "rid-9"
    assert result["headers"]["Content-Type"] == "application/json"
    assert json.loads(result["body"]) == {"error": {"message": "too big", "type": "invalid_request_error",
                                                    "code": "request_too_large", "param": None}}


def test_describe_never_echoes_input() -> None:
    try:
        ChatCompletionRequest.model_validate({"model": "<script>x</script>", "messages": [
            {"role": "'; DROP TABLE x;--", "content": "hi"}]})
    except Exception as exc:  # pydantic.ValidationError
        message, param = http._describe(exc.errors())  # type: ignore[attr-defined]
    else:
        pytest.fail("invalid request accepted")
    assert param == "model"
    assert "<script>" not in message
    assert "DROP" not in message
    assert "messages.0.role" in message


def test_describe_json_invalid() -> None:
    assert http._describe([{"type": "json_invalid", "loc": ("body", 1), "msg": "x"}]) == (
        "The request body is not valid JSON.", None)


@pytest.mark.parametrize(("cls", "status", "type_", "code"), [
    (errors.InvalidRequest, 400, "invalid_request_error", "invalid_request"),
    (errors.MissingCostTags, 400, "invalid_request_error", "missing_cost_tags"),
    (errors.Unauthorized, 401, "authentication_error", "invalid_api_key"),
    (errors.Forbidden, 403, "permission_error", "forbidden"),
    (errors.NotFound, 404, "invalid_request_error", "not_found"),
    (errors.ModelNotFound, 404, "invalid_request_error", "model_not_found"),
    (errors.PayloadTooLarge, 413, "invalid_request_error", "request_too_large"),
    (errors.RateLimited, 429, "rate_limit_error", "rate_limited"),
    (errors.ServiceUnavailable, 503, "server_error", "service_unavailable"),
])
def test_error_classes(cls: type[errors.FinOpsError], status: int, type_: str, code: str) -> None:
    err = cls("msg", param="p")
    assert err.status == status
    assert err.envelope() == {"error": {"message": "msg", "type": type_, "code": code, "param": "p"}}


def test_provider_errors() -> None:
    err = errors.ProviderError("groq", "down", upstream_status=503)
    assert (err.status, err.type, err.code) == (502, "provider_error", "provider_error")
    assert err.envelope()["error"]["provider"] == "groq"
    timeout = errors.ProviderTimeout("openai", "slow")
    assert (timeout.status, timeout.code) == (504, "provider_timeout")
    assert "upstream_status" not in timeout.envelope()["error"]


def test_code_override_is_per_instance() -> None:
    assert errors.InvalidRequest("m", code="custom").code == "custom"
    assert errors.InvalidRequest("m").code == "invalid_request"


# --- sse ---------------------------------------------------------------------------------------------

BODY = {"id": "chatcmpl-1", "created": 5, "model": "gpt-4o", "system_fingerprint": "fp",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def chunks(text: str) -> list[str]:
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def test_sse_without_usage() -> None:
    events = chunks(completion_to_sse(BODY, None))
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert [p["object"] for p in parsed] == ["chat.completion.chunk"] * 2
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello!"}
    assert parsed[1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert all("usage" not in p for p in parsed)
    assert {p["id"] for p in parsed} == {"chatcmpl-1"}


def test_sse_with_usage() -> None:
    events = chunks(completion_to_sse(BODY, BODY["usage"]))
    usage = json.loads(events[-2])
    assert usage["choices"] == []
    assert usage["usage"] == BODY["usage"]


def test_sse_tool_calls_carry_an_index() -> None:
    body = dict(BODY, choices=[{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}}])
    first = json.loads(chunks(completion_to_sse(body, None))[0])
    delta = first["choices"][0]["delta"]
    assert delta["content"] == ""
    assert [c["index"] for c in delta["tool_calls"]] == [0, 1]
    assert [c["id"] for c in delta["tool_calls"]] == ["c1", "c2"]


# --- request schema ------------------------------------------------------------------------------------


def test_provider_payload_keeps_extras_and_drops_streaming() -> None:
    req = ChatCompletionRequest.model_validate({
        "model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "x", "name": "bob"}],
        "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.3, "seed": 1})
    assert req.provider_payload("gpt-4o") == {
        "model": "gpt-4o", "messages": [{"role": "user", "content": "x", "name": "bob"}],
        "temperature": 0.3, "seed": 1}


def test_output_limit_prefers_max_completion_tokens() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert ChatCompletionRequest.model_validate(base).output_limit is None
    assert ChatCompletionRequest.model_validate({**base, "max_tokens": 10}).output_limit == 10
    assert ChatCompletionRequest.model_validate(
        {**base, "max_tokens": 10, "max_completion_tokens": 20}).output_limit == 20


@pytest.mark.parametrize("body", [
    {"model": "gpt 4o", "messages": [{"role": "user", "content": "x"}]},
    {"model": "gpt-4o<", "messages": [{"role": "user", "content": "x"}]},
    {"model": "a" * 129, "messages": [{"role": "user", "content": "x"}]},
    {"model": "gpt-4o", "messages": []},
    {"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]},
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": 17},
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "x", "name": "n" * 65}]},
])
def test_schema_rejects(body: dict) -> None:
    with pytest.raises(ValueError):
        ChatCompletionRequest.model_validate(body)


@pytest.mark.parametrize("text", ['{"t": NaN}', '{"t": -Infinity}', '{"t": 1e309}', '{"n": 1' + "0" * 5000 + "}",
                                  '{"a":' * 5000 + "1" + "}" * 5000, '{"a":' * 100_000, '{"c": "\\ud800"}',
                                  '{"\\udfff": 1}', b'{"c": "\xff"}'])
def test_strict_json_loads_raises_only_json_decode_errors(text) -> None:
    """Found by tests/integration/test_hostile_input_property.py: each escaped the resolver as a 5xx."""
    with pytest.raises(json.JSONDecodeError):
        strict_json.loads(text)


def test_strict_json_loads_keeps_what_json_allows() -> None:
    assert strict_json.loads('{"e": "\\ud83d\\ude00", "s": "\\\\ud800", "f": 1e308, "i": 12}') == {
        "e": "\U0001f600", "s": "\\ud800", "f": 1e308, "i": 12}


def test_check_body_requires_utf8() -> None:
    with pytest.raises(errors.InvalidRequest, match="UTF-8"):
        http.check_body({"body": base64.b64encode(b"\x80").decode(), "isBase64Encoded": True}, 100)
    with pytest.raises(errors.InvalidRequest, match="UTF-8"):
        http.check_body({"body": "\ud800"}, 100)
    http.check_body({"body": base64.b64encode("é".encode()).decode(), "isBase64Encoded": True}, 100)


def test_with_request_id_adds_the_header_once() -> None:
    assert http.with_request_id({"statusCode": 200}, "r1")["headers"] == {"X-Request-ID": "r1"}
    multi = http.with_request_id({"multiValueHeaders": {"Content-Type": ["application/json"]}}, "r2")
    assert multi["multiValueHeaders"]["X-Request-ID"] == ["r2"]
    kept = http.with_request_id({"headers": {"x-request-id": "mine"}}, "r3")
    assert kept["headers"] == {"x-request-id": "mine"}
