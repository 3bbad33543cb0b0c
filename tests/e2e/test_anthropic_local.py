"""Claude models through the whole local stack: the openai SDK -> gateway -> Anthropic adapter -> the simulated
Messages API (``finops.local.simulated_anthropic``), and the ledger row each call leaves.

Expected usage is counted here with tiktoken (cl100k_base, the catalog's encoding for Claude) from the prompt
sent and the text received, so a simulator that misreports usage, or a call that never reaches it, fails.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest
from finops import tokens
from finops.pricing import Usage, load_catalog
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
CATALOG = load_catalog()
SONNET = "claude-sonnet-4-5"
ENCODING = CATALOG.get(SONNET).encoding


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def row_usage(row: dict[str, Any]) -> Usage:
    return Usage(prompt_tokens=int(row["input_tokens"]["N"]), completion_tokens=int(row["output_tokens"]["N"]),
                 cached_tokens=int(row["cached_input_tokens"]["N"]),
                 cache_write_tokens=int(row["cache_write_input_tokens"]["N"]))


def test_a_claude_completion_is_served_priced_and_booked(sdk, running_stack) -> None:
    messages = [{"role": "system", "content": "You are terse."}, *ask("Where did the Claude budget go?")]
    raw = sdk.chat.completions.with_raw_response.create(model=SONNET, messages=messages)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert raw.headers["X-FinOps-Model"] == SONNET
    assert completion.id.startswith("msg_")  # Anthropic's message id, relayed
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    text = choice.message.content
    assert len(text.split()) >= 10
    usage = completion.usage
    assert usage is not None
    # The simulator counts like the gateway: the prompt in chat framing, the answer as text.
    assert usage.prompt_tokens == tokens.count_chat_tokens(messages, ENCODING)
    assert usage.completion_tokens == tokens.count_text(text, ENCODING) == 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    row = running_stack.wait_for_ledger_row(raw.headers["X-Request-ID"])
    assert (row["status"]["S"], row["model"]["S"], row["provider"]["S"]) == ("ok", SONNET, "anthropic")
    assert (int(row["input_tokens"]["N"]), int(row["output_tokens"]["N"])) == (
        usage.prompt_tokens, usage.completion_tokens)
    assert int(row["cache_write_input_tokens"]["N"]) == int(row["cached_input_tokens"]["N"]) == 0
    expected = CATALOG.get(SONNET).cost(Usage(prompt_tokens=usage.prompt_tokens,
                                              completion_tokens=usage.completion_tokens))
    assert expected > 0
    assert Decimal(row["cost_usd"]["N"]) == expected == Decimal(raw.headers["X-FinOps-Cost-USD"])


def test_max_tokens_reaches_claude_and_its_stop_reason_comes_back_as_length(sdk, running_stack) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=SONNET, messages=ask("A long essay on chargeback [[sim:tokens=50]]"), max_tokens=7)
    completion = raw.parse()
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == tokens.count_text(completion.choices[0].message.content,
                                                                   ENCODING) == 7
    row = running_stack.wait_for_ledger_row(raw.headers["X-Request-ID"])
    assert int(row["output_tokens"]["N"]) == 7


def test_a_claude_stream_arrives_in_chunks_and_its_usage_matches_the_ledger(sdk, running_stack) -> None:
    messages = ask("Stream the Claude spend report [[sim:tokens=16]] [[sim:chunk_ms=20]]")
    raw = sdk.chat.completions.with_raw_response.create(
        model=SONNET, messages=messages, stream=True, stream_options={"include_usage": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["X-FinOps-Model"] == SONNET
    chunks = list(raw.parse())
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 10  # one text_delta per word, relayed one chunk each
    text = "".join(pieces)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[-1] is chunks[-1] and chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.prompt_tokens == tokens.count_chat_tokens(messages, ENCODING)
    assert usage.completion_tokens == tokens.count_text(text, ENCODING) == 16

    row = running_stack.wait_for_ledger_row(raw.headers["X-Request-ID"])
    assert (row["status"]["S"], row["model"]["S"], row["provider"]["S"]) == ("ok", SONNET, "anthropic")
    assert row["stream"] == {"BOOL": True} and row["usage_source"] == {"S": "provider"}
    assert (int(row["input_tokens"]["N"]), int(row["output_tokens"]["N"])) == (
        usage.prompt_tokens, usage.completion_tokens)
    assert Decimal(row["cost_usd"]["N"]) == CATALOG.get(SONNET).cost(
        Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens))


def test_a_rate_limited_gpt_4o_falls_back_to_claude(sdk, running_stack) -> None:
    prompt = "Forecast spend [[sim:status=429]] [[sim:only_model=gpt-4o]] [[sim:tokens=12]]"
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=ask(prompt))
    request_id = raw.headers["X-Request-ID"]
    # gpt-4o twice (bounded retry), then the default chain's next model, served by the Anthropic simulation.
    assert raw.headers["X-FinOps-Model"] == SONNET
    assert raw.headers["X-FinOps-Fallback"] == f"gpt-4o -> {SONNET}"
    assert raw.headers["X-FinOps-Attempts"] == "3"
    completion = raw.parse()
    assert completion.choices[0].message.content
    usage = completion.usage
    assert usage.prompt_tokens == tokens.count_chat_tokens(ask(prompt), ENCODING)
    assert usage.completion_tokens == tokens.count_text(completion.choices[0].message.content, ENCODING) == 12

    failed = [running_stack.wait_for_ledger_row(rid) for rid in (request_id, f"{request_id}.1")]
    billed = running_stack.wait_for_ledger_row(f"{request_id}.2")
    assert running_stack.ledger_row(f"{request_id}.3") is None  # one row per attempt, no more
    assert [(r["status"]["S"], r["model"]["S"], r["provider"]["S"], Decimal(r["cost_usd"]["N"])) for r in failed] == [
        ("provider_rate_limited", "gpt-4o", "openai", 0)] * 2
    assert (billed["status"]["S"], billed["model"]["S"], billed["provider"]["S"]) == ("ok", SONNET, "anthropic")
    assert billed["requested_model"] == {"S": "gpt-4o"}
    assert {r["parent_request_id"]["S"] for r in (*failed, billed)} == {request_id}
    assert (int(billed["input_tokens"]["N"]), int(billed["output_tokens"]["N"])) == (
        usage.prompt_tokens, usage.completion_tokens)
    expected = CATALOG.get(SONNET).cost(Usage(prompt_tokens=usage.prompt_tokens,
                                              completion_tokens=usage.completion_tokens))
    assert Decimal(billed["cost_usd"]["N"]) == expected == Decimal(raw.headers["X-FinOps-Cost-USD"])


@pytest.mark.parametrize(("status", "code", "gateway_status"), [
    (529, "provider_overloaded", 503),  # Anthropic's overloaded_error
    (429, "provider_rate_limited", 429),  # rate_limit_error
    (500, "provider_unavailable", 502),  # api_error
])
def test_anthropic_errors_map_to_the_gateway_errors(running_stack, tagged_headers, status, code,
                                                    gateway_status) -> None:
    client = OpenAI(base_url=f"{running_stack.url}/v1", api_key="unused-see-default-headers",
                    default_headers=tagged_headers(extra={"X-FinOps-Fallback": "off"}), max_retries=0, timeout=20)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=SONNET, messages=ask(f"Fail please [[sim:status={status}]]"))
    err = info.value
    assert err.status_code == gateway_status
    assert err.code == code
    assert err.body["provider"] == "anthropic"
    request_id = err.response.headers["X-Request-ID"]
    for rid in (request_id, f"{request_id}.1"):  # one bounded retry, each attempt booked at cost 0
        row = running_stack.wait_for_ledger_row(rid)
        assert (row["status"]["S"], row["provider"]["S"], Decimal(row["cost_usd"]["N"])) == (code, "anthropic", 0)


def test_a_cache_control_part_is_billed_as_a_cache_write(sdk, running_stack) -> None:
    context = {"type": "text", "text": "Cost allocation policy for the Claude tenants. " * 40,
               "cache_control": {"type": "ephemeral"}}
    question = {"type": "text", "text": "Which department pays for the batch jobs?"}
    messages = [{"role": "user", "content": [context, question]}]
    raw = sdk.chat.completions.with_raw_response.create(model=SONNET, messages=messages)
    usage = raw.parse().usage
    row = running_stack.wait_for_ledger_row(raw.headers["X-Request-ID"])
    written = int(row["cache_write_input_tokens"]["N"])
    # Anthropic caches the prompt up to and including the marked block: here the user turn's framing and the
    # context part; the question after the breakpoint is plain input.
    assert written == tokens.count_chat_tokens([{"role": "user", "content": [context]}], ENCODING) \
        - tokens.REPLY_PRIMING
    assert written > 300
    assert int(row["input_tokens"]["N"]) == usage.prompt_tokens == tokens.count_chat_tokens(messages, ENCODING)
    assert usage.prompt_tokens - written == tokens.count_text(question["text"], ENCODING) + tokens.REPLY_PRIMING
    assert usage.prompt_tokens_details.model_dump()["cache_write_tokens"] == written  # the gateway's extra detail
    assert int(row["cached_input_tokens"]["N"]) == 0

    price = CATALOG.get(SONNET)
    billed = Decimal(row["cost_usd"]["N"])
    assert billed == price.cost(row_usage(row)) == Decimal(raw.headers["X-FinOps-Cost-USD"])
    uncached = price.cost(Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens))
    # The written tokens are charged the cache-write rate (1.25x input), the rest at the input rate.
    assert price.cache_write_input is not None and price.cache_write_input > price.input
    assert billed - uncached == written * (price.cache_write_input - price.input) / Decimal(1_000_000)
