"""Every refusal and upstream failure as the client sees it: status, OpenAI envelope, ledger effect."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest

ENVELOPE_KEYS = {"message", "type", "code", "param"}
MSG = [{"role": "user", "content": "hi"}]


def chat(model: str = "gpt-4o-mini", content: str = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def test_malformed_json_is_400(gateway_env, load_event) -> None:
    event = load_event("chat_completion", body='{"model": "gpt-4o", "messages": [')
    result = gateway_env.invoke(event)
    assert result.status == 400
    err = result.error()
    assert set(err) >= ENVELOPE_KEYS
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_request"
    assert "not valid JSON" in err["message"]
    assert result.header("X-Request-ID") == event["requestContext"]["requestId"]
    assert gateway_env.simulator.calls == []
    assert gateway_env.entries() == []


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "gpt-4o-mini"}, "messages"),
    ({"messages": MSG}, "model"),
    ({"model": "gpt-4o-mini", "messages": []}, "messages"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"model": "gpt-4o-mini", "messages": [{"content": "hi"}]}, "messages.0.role"),
    ({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": -1}, "max_tokens"),
    ({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"model": "gpt-4o-mini", "messages": MSG, "max_completion_tokens": -5}, "max_completion_tokens"),
    ({"model": "gpt 4o mini", "messages": MSG}, "model"),
    ({"model": "gpt-4o<script>", "messages": MSG}, "model"),
    ({"model": "gpt-4o\n", "messages": MSG}, "model"),
    ({"model": 42, "messages": MSG}, "model"),
    ({"model": "gpt-4o-mini", "messages": "hello"}, "messages"),
    ({"model": "gpt-4o-mini", "messages": MSG, "n": 0}, "n"),
    ({"model": "gpt-4o-mini", "messages": MSG, "stream": "sometimes"}, "stream"),
    ([], "body"),
    ("\"just a string\"", "body"),
    (7, "body"),
])
def test_schema_violations_are_400_with_envelope(gateway_env, load_event, body, param) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body=body))
    assert result.status == 400
    err = result.error()
    assert set(err) == ENVELOPE_KEYS
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_request"
    assert err["param"] == param
    assert "<script>" not in result.body
    assert gateway_env.simulator.calls == []
    assert gateway_env.entries() == []


def test_json_array_body_is_400(gateway_env, load_event) -> None:
    """A top-level JSON array is not a chat request, even if its first element would be one."""
    result = gateway_env.invoke(load_event("chat_completion", body=[chat(), {"anything": "else"}]))
    assert result.status == 400
    assert result.error()["type"] == "invalid_request_error"
    assert gateway_env.simulator.calls == []
    assert gateway_env.entries() == []


def test_missing_body_is_400(gateway_env, load_event) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body=None))
    assert result.status == 400
    assert result.error()["type"] == "invalid_request_error"


def test_body_over_one_mib_is_413(gateway_env, load_event) -> None:
    big = chat(content="x" * (1024 * 1024))
    result = gateway_env.invoke(load_event("chat_completion", body=big))
    assert result.status == 413
    err = result.error()
    assert err["code"] == "request_too_large"
    assert err["type"] == "invalid_request_error"
    assert gateway_env.simulator.calls == []
    assert gateway_env.entries() == []


def test_body_just_under_one_mib_is_accepted(gateway_env, load_event) -> None:
    body = chat(content="")
    overhead = len(json.dumps(body))
    body["messages"][0]["content"] = "ab " * ((1024 * 1024 - overhead - 10) // 3)
    assert len(json.dumps(body).encode()) <= 1024 * 1024
    result = gateway_env.invoke(load_event("chat_completion", body=body))
    assert result.status == 200


def test_base64_body_over_the_limit_is_413(gateway_env, load_event) -> None:
    event = load_event("chat_completion")
    event["body"] = base64.b64encode(json.dumps(chat(content="y" * (1024 * 1024))).encode()).decode()
    event["isBase64Encoded"] = True
    result = gateway_env.invoke(event)
    assert result.status == 413
    assert result.error()["code"] == "request_too_large"


def test_base64_body_is_decoded(gateway_env, load_event) -> None:
    event = load_event("chat_completion")
    event["body"] = base64.b64encode(json.dumps(chat()).encode()).decode()
    event["isBase64Encoded"] = True
    result = gateway_env.invoke(event)
    assert result.status == 200
    assert len(gateway_env.entries()) == 1


def test_max_body_bytes_override(gateway_env, load_event) -> None:
    gateway_env.set(FINOPS_MAX_BODY_BYTES="2048")
    small = gateway_env.invoke(load_event("chat_completion", body=chat(content="z" * 1000)))
    assert small.status == 200
    large = gateway_env.invoke(load_event("chat_completion", body=chat(content="z" * 3000)))
    assert large.status == 413
    assert "2048" in large.error()["message"]


@pytest.mark.parametrize("model", ["gpt-5", "gpt-4o-turbo-ultra", "mistral-large", "GPT-4O"])
def test_unknown_model_is_404(gateway_env, load_event, model) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body=chat(model=model)))
    assert result.status == 404
    err = result.error()
    assert err["code"] == "model_not_found"
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "model"
    assert gateway_env.simulator.calls == []
    assert gateway_env.entries() == []


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-4-5-20250929"])
def test_models_of_an_unconfigured_provider_are_404(gateway_env, load_event, model) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body=chat(model=model)))
    assert result.status == 404
    assert result.error()["code"] == "model_not_found"
    assert gateway_env.simulator.calls == []


@pytest.mark.parametrize(("path", "method"), [
    ("/v1/completions", "POST"),
    ("/v1/embeddings", "POST"),
    ("/", "GET"),
    ("/v1/chat/completions", "GET"),
])
def test_unknown_route_is_404_envelope(gateway_env, load_event, path, method) -> None:
    result = gateway_env.invoke(load_event("chat_completion", path=path, method=method))
    assert result.status == 404
    err = result.error()
    assert set(err) == ENVELOPE_KEYS
    assert err["code"] == "not_found"
    assert err["type"] == "invalid_request_error"


@pytest.fixture
def single_attempt(gateway_env) -> None:
    """One attempt per call, no fallback chain: these tests are about how one provider error maps."""
    gateway_env.set(FINOPS_FALLBACKS="{}", FINOPS_RETRY=json.dumps({"attempts_per_model": 1}))


@pytest.mark.parametrize(("status", "answer", "code"), [(500, 502, "provider_unavailable"),
                                                        (502, 502, "provider_unavailable"),
                                                        (503, 503, "provider_overloaded")])
def test_provider_5xx_is_typed_and_booked_at_zero(gateway_env, load_event, single_attempt, status, answer,
                                                  code) -> None:
    event = load_event("chat_completion", body=chat(model="gpt-4o", content=f"hi [[sim:status={status}]]"))
    result = gateway_env.invoke(event)
    assert result.status == answer
    err = result.error()
    assert err["type"] == "provider_error"
    assert err["code"] == code
    assert err["provider"] == "openai"
    assert err["upstream_status"] == status
    assert "openai" in err["message"]
    assert result.header("X-Request-ID") == event["requestContext"]["requestId"]
    assert result.header("X-FinOps-Model") == "gpt-4o"
    assert result.header("X-FinOps-Cost-USD") == "0"
    [entry] = gateway_env.entries()
    assert entry.request_id == event["requestContext"]["requestId"]
    assert entry.status == code
    assert entry.http_status == answer
    assert entry.error_code == code
    assert entry.cost_usd == Decimal(0)
    assert (entry.input_tokens, entry.output_tokens) == (0, 0)
    assert entry.provider == "openai"


def test_provider_429_is_a_typed_429_naming_the_provider(gateway_env, load_event, single_attempt) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body=chat(
        model="llama-3.3-70b-versatile", content="[[sim:status=429]] [[sim:retry_after=7]]")))
    assert result.status == 429
    err = result.error()
    assert (err["type"], err["code"]) == ("rate_limit_error", "provider_rate_limited")
    assert err["provider"] == "groq"
    assert err["upstream_status"] == 429
    assert gateway_env.entries()[0].provider == "groq"


def test_provider_timeout_is_504_and_booked(gateway_env, load_event, single_attempt) -> None:
    gateway_env.set(FINOPS_PROVIDERS=json.dumps(gateway_env.providers(timeout_seconds=0.5)))
    event = load_event("chat_completion", body=chat(model="gpt-4o-mini", content="[[sim:latency_ms=1500]] hi"))
    result = gateway_env.invoke(event)
    assert result.status == 504
    err = result.error()
    assert err["code"] == "provider_timeout"
    assert err["provider"] == "openai"
    assert result.header("X-FinOps-Cost-USD") == "0"
    [entry] = gateway_env.entries()
    assert entry.status == "provider_timeout"
    assert entry.http_status == 504
    assert entry.error_code == "provider_timeout"
    assert entry.cost_usd == Decimal(0)


def test_provider_garbage_is_502(gateway_env, load_event, single_attempt) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body=chat(content="[[sim:garbage]]")))
    assert result.status == 502
    err = result.error()
    assert err["code"] == "provider_unavailable"
    assert err["provider"] == "openai"
    assert "<html>" not in result.body
    [entry] = gateway_env.entries()
    assert entry.status == "provider_unavailable"
    assert entry.cost_usd == Decimal(0)


def test_unreachable_provider_is_502(gateway_env, load_event, single_attempt) -> None:
    from finops.local.stack import free_port

    gateway_env.set(FINOPS_PROVIDERS=json.dumps(gateway_env.providers(
        base_url=f"http://127.0.0.1:{free_port()}/v1")))
    result = gateway_env.invoke(load_event("chat_completion", body=chat()))
    assert result.status == 502
    assert result.error()["provider"] == "openai"
    assert gateway_env.entries()[0].status == "provider_unavailable"


def test_rotated_provider_secret_is_used_after_a_cold_start(gateway_env, load_event) -> None:
    """The key sent upstream is whatever Secrets Manager holds (cached while the function is warm)."""
    from aws_lambda_powertools.utilities import parameters
    from finops import aws

    assert gateway_env.invoke(load_event("chat_completion", body=chat())).status == 200
    aws.client("secretsmanager").put_secret_value(SecretId=gateway_env.secret_name("openai"),
                                                  SecretString="sk-rotated-0001\n")
    assert gateway_env.invoke(load_event("chat_completion", body=chat())).status == 200
    parameters.clear_caches()  # a cold start: the cached key is gone
    gateway_env.set()
    assert gateway_env.invoke(load_event("chat_completion", body=chat())).status == 200
    seen = [c["authorization"] for c in gateway_env.simulator.calls]
    old = f"Bearer {gateway_env.secrets['openai']}"
    assert seen == [old, old, "Bearer sk-rotated-0001"]


def test_missing_provider_secret_does_not_crash_the_handler(gateway_env, load_event) -> None:
    """No secret for the provider: an OpenAI-style 5xx error, not an unhandled exception."""
    from aws_lambda_powertools.utilities import parameters
    from finops import aws

    aws.client("secretsmanager").delete_secret(SecretId=gateway_env.secret_name("groq"),
                                               ForceDeleteWithoutRecovery=True)
    parameters.clear_caches()
    result = gateway_env.invoke(load_event("chat_completion", body=chat(model="llama-3.1-8b-instant")))
    assert result.status in (502, 503)
    assert result.error()["type"] in ("provider_error", "server_error")
    assert gateway_env.simulator.calls == []
    [entry] = gateway_env.entries()  # the failed call is booked (at zero) like any provider failure
    assert entry.cost_usd == Decimal(0)
    assert entry.status != "ok"
