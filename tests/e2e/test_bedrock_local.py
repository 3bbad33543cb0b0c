"""Bedrock models through the whole local stack: the openai SDK -> gateway -> Bedrock adapter (boto3's
``bedrock-runtime`` client, SigV4-signed) -> the simulated Converse API (``finops.local.simulated_bedrock``), and
the ledger row each call leaves.

Expected usage is counted here with tiktoken from the prompt sent and the text received, so a simulator that
misreports usage, or a call that never reaches it, fails.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from finops import tokens
from finops.pricing import Usage, load_catalog
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
CATALOG = load_catalog()
NOVA = "bedrock/nova-lite"
HAIKU = "bedrock/claude-haiku-4-5"


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def billed(model: str, usage: Any) -> Decimal:
    return CATALOG.get(model).cost(Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens))


def test_a_bedrock_completion_is_served_priced_and_booked(sdk, running_stack) -> None:
    messages = [{"role": "system", "content": "You are terse."}, *ask("Where did the Bedrock budget go?")]
    raw = sdk.chat.completions.with_raw_response.create(model=NOVA, messages=messages)
    completion = raw.parse()
    assert raw.headers["X-FinOps-Model"] == NOVA
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    encoding = CATALOG.get(NOVA).encoding
    usage = completion.usage
    # The simulator counts like the gateway: the prompt (system block + user turn) in chat framing.
    assert usage.prompt_tokens == tokens.count_chat_tokens(messages, encoding)
    assert usage.completion_tokens == tokens.count_text(choice.message.content, encoding) == 24

    row = running_stack.wait_for_ledger_row(raw.headers["X-Request-ID"])
    assert (row["status"]["S"], row["model"]["S"], row["provider"]["S"]) == ("ok", NOVA, "bedrock")
    assert (int(row["input_tokens"]["N"]), int(row["output_tokens"]["N"])) == (
        usage.prompt_tokens, usage.completion_tokens)
    assert Decimal(row["cost_usd"]["N"]) == billed(NOVA, usage) == Decimal(raw.headers["X-FinOps-Cost-USD"]) > 0


def test_max_tokens_reaches_bedrock_and_its_stop_reason_comes_back_as_length(sdk, running_stack) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=NOVA, messages=ask("A long essay on chargeback [[sim:tokens=50]]"), max_tokens=6)
    completion = raw.parse()
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 6
    assert int(running_stack.wait_for_ledger_row(raw.headers["X-Request-ID"])["output_tokens"]["N"]) == 6


def test_a_bedrock_stream_arrives_in_event_stream_frames_and_its_usage_matches_the_ledger(sdk, running_stack) -> None:
    messages = ask("Stream the Bedrock spend report [[sim:tokens=16]] [[sim:chunk_ms=20]]")
    raw = sdk.chat.completions.with_raw_response.create(
        model=HAIKU, messages=messages, stream=True, stream_options={"include_usage": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 10  # one contentBlockDelta per word, relayed one chunk each
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    encoding = CATALOG.get(HAIKU).encoding
    assert usage.prompt_tokens == tokens.count_chat_tokens(messages, encoding)
    assert usage.completion_tokens == tokens.count_text("".join(pieces), encoding) == 16

    row = running_stack.wait_for_ledger_row(raw.headers["X-Request-ID"])
    assert (row["status"]["S"], row["provider"]["S"], row["usage_source"]["S"]) == ("ok", "bedrock", "provider")
    assert row["stream"] == {"BOOL": True}
    assert Decimal(row["cost_usd"]["N"]) == billed(HAIKU, usage)


def test_a_bedrock_stream_cut_mid_way_is_billed_for_what_was_produced(sdk, running_stack) -> None:
    stream = sdk.chat.completions.create(model=HAIKU, messages=ask("Cut me off [[sim:tokens=30]] [[sim:fail_after=5]]"),
                                         stream=True, stream_options={"include_usage": True})
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert len(received) == 5
    request_id = stream.response.headers["X-Request-ID"]
    row = running_stack.wait_for_ledger_row(request_id)
    assert (row["status"]["S"], row["provider"]["S"]) == ("provider_interrupted", "bedrock")
    produced = tokens.count_text("".join(received), CATALOG.get(HAIKU).encoding)
    assert int(row["output_tokens"]["N"]) == produced
    assert Decimal(row["cost_usd"]["N"]) > 0


@pytest.mark.parametrize(("status", "code", "gateway_status"), [
    (429, "provider_rate_limited", 429),  # ThrottlingException
    (503, "provider_overloaded", 503),  # ServiceUnavailableException
    (408, "provider_timeout", 504),  # ModelTimeoutException
    (500, "provider_unavailable", 502),  # InternalServerException
])
def test_bedrock_errors_map_to_the_gateway_errors(running_stack, tagged_headers, status, code,
                                                  gateway_status) -> None:
    client = OpenAI(base_url=f"{running_stack.url}/v1", api_key="unused-see-default-headers",
                    default_headers=tagged_headers(extra={"X-FinOps-Fallback": "off"}), max_retries=0, timeout=20)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=NOVA, messages=ask(f"Fail please [[sim:status={status}]]"))
    err = info.value
    assert (err.status_code, err.code, err.body["provider"]) == (gateway_status, code, "bedrock")
    request_id = err.response.headers["X-Request-ID"]
    for rid in (request_id, f"{request_id}.1"):  # one bounded retry, each attempt booked at cost 0
        row = running_stack.wait_for_ledger_row(rid)
        assert (row["status"]["S"], row["provider"]["S"], Decimal(row["cost_usd"]["N"])) == (code, "bedrock", 0)


SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=local/20261202/us-east-1/bedrock/aws4_request",
          "Content-Type": "application/json"}


def converse(running_stack, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{running_stack.stack.provider_url}/bedrock{path}", content=json.dumps(body),
                      headers={**SIGNED, **(headers or {})}, timeout=10)


@pytest.mark.parametrize(("path", "body", "headers", "status", "error"), [
    ("/model/amazon.nova-lite-v1%3A0/converse", {"messages": []}, None, 400, "ValidationException"),
    ("/model/amazon.nova-lite-v1%3A0/converse", {"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]},
     None, 400, "ValidationException"),
    ("/model/amazon.nova-lite-v1%3A0/converse", {"messages": [{"role": "user", "content": [{"text": "a"}]},
                                                               {"role": "user", "content": [{"text": "b"}]}]},
     None, 400, "ValidationException"),
    ("/model/amazon.nova-lite-v1%3A0/converse", {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                                                 "inferenceConfig": {"maxTokens": 0}}, None, 400,
     "ValidationException"),
    ("/model/amazon.nova-lite-v1%3A0/converse", {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
     {"Authorization": "Bearer not-sigv4"}, 403, "MissingAuthenticationTokenException"),
    ("/model/amazon.nova-lite-v1%3A0/invoke", {}, None, 404, "UnknownOperationException"),
])
def test_the_simulated_converse_api_refuses_what_bedrock_refuses(running_stack, path, body, headers, status,
                                                                 error) -> None:
    answer = converse(running_stack, path, body, headers)
    assert answer.status_code == status
    assert answer.headers["x-amzn-ErrorType"].split(":")[0] == error
    assert answer.json()["message"]


def test_the_simulated_converse_api_answers_a_signed_request(running_stack) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 3}}
    answer = converse(running_stack, "/model/amazon.nova-lite-v1%3A0/converse", body)
    assert answer.status_code == 200
    out = answer.json()
    assert out["stopReason"] == "max_tokens" and out["usage"]["outputTokens"] == 3
    assert out["output"]["message"]["role"] == "assistant"
