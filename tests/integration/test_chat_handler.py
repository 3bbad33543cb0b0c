"""POST /v1/chat/completions and GET /v1/models through the real Lambda handler, under moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from finops import tokens
from finops.local.simulated_provider import SimulatedProvider
from finops.pricing import Usage, load_catalog

SERVED = ["gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "llama-3.3-70b-versatile", "llama-3.1-8b-instant"]


def test_happy_path(gateway_env, load_event, default_tags) -> None:
    event = load_event("chat_completion")
    body_in = json.loads(event["body"])
    before = datetime.now(UTC)
    result = gateway_env.invoke(event)
    after = datetime.now(UTC)

    assert result.status == 200
    assert result.header("Content-Type") == "application/json"
    body = result.json()
    assert body["object"] == "chat.completion"
    reply = body["choices"][0]["message"]["content"]

    # The provider's usage, recomputed independently from what the simulator counts.
    prompt = tokens.count_chat_tokens(body_in["messages"], "o200k_base")
    completion = tokens.count_text(reply, "o200k_base")
    assert body["usage"] == {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": 0}}

    request_id = event["requestContext"]["requestId"]
    assert result.header("X-Request-ID") == request_id
    assert result.header("X-FinOps-Model") == "gpt-4o-mini"
    expected_cost = (Decimal(prompt) * Decimal("0.15") + Decimal(completion) * Decimal("0.60")) / 1_000_000
    assert Decimal(result.header("X-FinOps-Cost-USD")) == expected_cost
    assert expected_cost == load_catalog().get("gpt-4o-mini").cost(
        Usage(prompt_tokens=prompt, completion_tokens=completion))

    [entry] = gateway_env.entries()
    assert entry.request_id == request_id
    assert entry.ts.tzinfo is not None and entry.ts.utcoffset().total_seconds() == 0
    assert before <= entry.ts <= after
    assert (entry.project_id, entry.user_id, entry.environment) == (
        default_tags["X-Project-ID"], default_tags["X-User-ID"], default_tags["X-Environment"])
    assert entry.department_id == "unallocated"
    assert entry.unallocated_tags == ()
    assert entry.requested_model == "gpt-4o-mini"
    assert entry.model == "gpt-4o-mini"
    assert entry.provider == "openai"
    assert (entry.input_tokens, entry.cached_input_tokens, entry.output_tokens) == (prompt, 0, completion)
    assert entry.usage_source == "provider"
    assert isinstance(entry.cost_usd, Decimal)
    assert entry.cost_usd == expected_cost
    assert entry.price_version == load_catalog().version
    assert entry.status == "ok"
    assert entry.http_status == 200
    assert entry.error_code is None
    assert entry.stream is False
    assert isinstance(entry.latency_ms, int)

    [raw] = gateway_env.raw_items()
    assert raw["cost_usd"] == {"N": format(expected_cost, "f")}
    assert raw["ts"]["S"].endswith("Z")
    assert raw["day"] == {"S": entry.ts.strftime("%Y-%m-%d")}


def test_provider_received_the_concrete_model_and_caller_fields(gateway_env, load_event) -> None:
    event = load_event("chat_completion", body={
        "model": "gpt-4o-2024-08-06", "temperature": 0.1, "user": "end-user-7",
        "messages": [{"role": "user", "content": "hi"}]})
    result = gateway_env.invoke(event)
    assert result.status == 200
    assert result.header("X-FinOps-Model") == "gpt-4o"
    sent = json.loads(gateway_env.simulator.calls[-1]["body"])
    assert sent == {"model": "gpt-4o", "temperature": 0.1, "user": "end-user-7",
                    "messages": [{"role": "user", "content": "hi"}]}
    [entry] = gateway_env.entries()
    assert (entry.requested_model, entry.model) == ("gpt-4o-2024-08-06", "gpt-4o")


def test_replaying_the_same_event_books_one_row(gateway_env, load_event) -> None:
    event = load_event("chat_completion")
    first = gateway_env.invoke(event)
    second = gateway_env.invoke(json.loads(json.dumps(event)))
    assert first.status == second.status == 200
    entries = gateway_env.entries()
    assert [e.request_id for e in entries] == [event["requestContext"]["requestId"]]


def test_replay_leaves_no_reservation_behind(gateway_env, load_event) -> None:
    """A replayed event is answered without a second row, and its admission is settled like any other."""
    from finops import aws

    event = load_event("chat_completion")
    assert gateway_env.invoke(event).status == 200
    assert gateway_env.invoke(json.loads(json.dumps(event))).status == 200
    items = aws.client("dynamodb").scan(TableName=gateway_env.budgets_table, ConsistentRead=True)["Items"]
    dangling = sorted({attr for item in items for attr in item if attr.startswith("r_")})
    assert dangling == [], f"reservations never settled: {dangling}"
    assert len(gateway_env.entries()) == 1


def test_distinct_requests_book_distinct_rows(gateway_env, load_event) -> None:
    ids = []
    for _ in range(3):
        event = load_event("chat_completion")
        assert gateway_env.invoke(event).status == 200
        ids.append(event["requestContext"]["requestId"])
    assert sorted(e.request_id for e in gateway_env.entries()) == sorted(ids)


def test_groq_model_is_routed_to_groq(gateway_env, load_event) -> None:
    event = load_event("chat_completion", body={"model": "llama-3.1-8b-instant",
                                                "messages": [{"role": "user", "content": "hi"}]})
    result = gateway_env.invoke(event)
    assert result.status == 200
    assert gateway_env.simulator.calls[-1]["path"] == "/groq/v1/chat/completions"
    [entry] = gateway_env.entries()
    assert entry.provider == "groq"
    usage = result.json()["usage"]
    assert entry.cost_usd == (usage["prompt_tokens"] * Decimal("0.05")
                              + usage["completion_tokens"] * Decimal("0.08")) / 1_000_000


def test_provider_key_comes_from_secrets_manager(gateway_env, load_event) -> None:
    gateway_env.invoke(load_event("chat_completion"))
    gateway_env.invoke(load_event("chat_completion", body={
        "model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "hi"}]}))
    auth = {c["path"]: c["authorization"] for c in gateway_env.simulator.calls}
    assert auth == {"/openai/v1/chat/completions": f"Bearer {gateway_env.secrets['openai']}",
                    "/groq/v1/chat/completions": f"Bearer {gateway_env.secrets['groq']}"}


def test_models_lists_served_models_with_prices(gateway_env, load_event) -> None:
    event = load_event("models")
    result = gateway_env.invoke(event)
    assert result.status == 200
    assert result.header("Content-Type") == "application/json"
    body = result.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert list(by_id) == SERVED
    gpt4o = by_id["gpt-4o"]
    assert gpt4o["object"] == "model"
    assert gpt4o["owned_by"] == "openai"
    assert gpt4o["pricing"] == {
        "currency": "USD", "unit": "USD per 1M tokens", "input": "2.5", "output": "10", "cached_input": "1.25",
        "effective_date": "2024-10-01", "source": "https://openai.com/api/pricing/",
        "price_version": load_catalog().version}
    assert gpt4o["context_window"] == 128000
    assert "gpt-4o-2024-08-06" in gpt4o["aliases"]
    assert by_id["llama-3.1-8b-instant"]["pricing"]["cached_input"] is None
    assert by_id["llama-3.1-8b-instant"]["owned_by"] == "groq"
    for model in body["data"]:
        price = load_catalog().get(model["id"])
        assert Decimal(model["pricing"]["input"]) == price.input
        assert Decimal(model["pricing"]["output"]) == price.output


def test_models_needs_no_tags(gateway_env, load_event) -> None:
    event = load_event("models", drop=["X-Project-ID", "X-User-ID", "X-Environment"])
    assert gateway_env.invoke(event).status == 200


def test_missing_usage_is_counted_with_tiktoken(gateway_env, load_event) -> None:
    messages = [{"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Explain chargeback. [[sim:no_usage]]"}]
    result = gateway_env.invoke(load_event("chat_completion", body={"model": "gpt-3.5-turbo",
                                                                    "messages": messages}))
    assert result.status == 200
    body = result.json()
    assert "usage" not in body
    reply = body["choices"][0]["message"]["content"]
    [entry] = gateway_env.entries()
    assert entry.usage_source == "estimated"
    assert entry.input_tokens == tokens.count_chat_tokens(messages, "cl100k_base")
    assert entry.output_tokens == tokens.count_text(reply, "cl100k_base")
    expected = load_catalog().get("gpt-3.5-turbo").cost(
        Usage(prompt_tokens=entry.input_tokens, completion_tokens=entry.output_tokens))
    assert entry.cost_usd == expected > 0
    assert Decimal(result.header("X-FinOps-Cost-USD")) == expected


def test_token_directive_and_max_tokens(gateway_env, load_event) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body={
        "model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "[[sim:tokens=40]]"}]}))
    assert result.status == 200
    body = result.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    [entry] = gateway_env.entries()
    assert entry.output_tokens == 5


def test_stream_returns_server_sent_events(gateway_env, load_event) -> None:
    event = load_event("chat_completion_stream")
    body_in = json.loads(event["body"])
    result = gateway_env.invoke(event)
    assert result.status == 200
    assert result.header("Content-Type").startswith("text/event-stream")
    text = result.body
    assert text.endswith("data: [DONE]\n\n")
    payloads = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in text.split("\n\n") if line)
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    content = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    expected_text = SimulatedProvider().text_for(body_in["messages"], 24, "o200k_base")
    assert content == expected_text
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["choices"] == []
    [entry] = gateway_env.entries()
    assert entry.stream is True
    assert usage_chunks[0]["usage"]["prompt_tokens"] == entry.input_tokens
    assert usage_chunks[0]["usage"]["completion_tokens"] == entry.output_tokens
    assert Decimal(result.header("X-FinOps-Cost-USD")) == entry.cost_usd > 0


def test_stream_without_include_usage_has_no_usage_chunk(gateway_env, load_event) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body={
        "model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    assert result.status == 200
    payloads = [p.removeprefix("data: ") for p in result.body.split("\n\n") if p]
    assert payloads[-1] == "[DONE]"
    assert all("usage" not in json.loads(p) for p in payloads[:-1])
    assert [c["choices"][0]["finish_reason"] for c in map(json.loads, payloads[:-1])] == [None, "stop"]


def test_stream_usage_chunk_reports_estimated_usage_when_provider_sent_none(gateway_env, load_event) -> None:
    """include_usage promises a usage chunk; if the provider omitted usage, the gateway's count is it."""
    result = gateway_env.invoke(load_event("chat_completion", body={
        "model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello [[sim:no_usage]]"}]}))
    assert result.status == 200
    chunks = [json.loads(p.removeprefix("data: ")) for p in result.body.split("\n\n")[:-2]]
    [entry] = gateway_env.entries()
    assert entry.usage_source == "estimated"
    usage = chunks[-1].get("usage")
    assert usage is not None, "usage chunk carries usage: null"
    assert usage["prompt_tokens"] == entry.input_tokens
    assert usage["completion_tokens"] == entry.output_tokens


@pytest.mark.parametrize("model", SERVED)
def test_every_served_model_answers_and_is_priced(gateway_env, load_event, model) -> None:
    result = gateway_env.invoke(load_event("chat_completion", body={
        "model": model, "messages": [{"role": "user", "content": "ping"}]}))
    assert result.status == 200
    usage = result.json()["usage"]
    expected = load_catalog().get(model).cost(
        Usage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"]))
    assert Decimal(result.header("X-FinOps-Cost-USD")) == expected
    assert gateway_env.entries()[0].cost_usd == expected
