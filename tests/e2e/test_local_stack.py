"""The whole gateway over real HTTP on 127.0.0.1: the official openai SDK, curl and raw httpx."""

from __future__ import annotations

import json
import subprocess
import time
from decimal import Decimal

import httpx
import openai
import pytest
from finops.pricing import Usage, load_catalog
from finops.routing import load_routing_policy
from finops.routing.fleet_scores import hour_of
from finops.routing.score_store import DynamoScoreStore
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

TAGS = ("X-Project-ID", "X-User-ID", "X-Environment")
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello from e2e"}]}


@pytest.fixture
def http(running_stack) -> httpx.Client:
    with httpx.Client(base_url=running_stack.url, timeout=20) as client:
        yield client


def test_sdk_chat_completion_is_priced_and_booked(sdk, running_stack, default_tags) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What did we spend on tokens?"}])
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    expected = load_catalog().get("gpt-4o-mini").cost(
        Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens))
    assert Decimal(raw.headers["X-FinOps-Cost-USD"]) == expected
    assert raw.headers["X-FinOps-Model"] == "gpt-4o-mini"
    request_id = raw.headers["X-Request-ID"]

    row = running_stack.ledger_row(request_id)
    assert row is not None, "no ledger row for the call"
    assert row["status"] == {"S": "ok"}
    assert Decimal(row["cost_usd"]["N"]) == expected
    assert int(row["input_tokens"]["N"]) == usage.prompt_tokens
    assert int(row["output_tokens"]["N"]) == usage.completion_tokens
    assert row["project_id"] == {"S": default_tags["X-Project-ID"]}
    assert row["user_id"] == {"S": default_tags["X-User-ID"]}
    assert row["environment"] == {"S": default_tags["X-Environment"]}
    assert row["model"] == {"S": "gpt-4o-mini"}


def test_sdk_streaming(sdk, running_stack) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Stream me a budget summary"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) >= 5
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].usage.completion_tokens > 0


def test_sdk_models_list(sdk) -> None:
    ids = [m.id for m in sdk.models.list()]
    # Every catalog model: the local stack simulates every provider (OpenAI, Groq, Anthropic, Bedrock).
    assert ids == ["gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "llama-3.3-70b-versatile", "llama-3.1-8b-instant",
                   "claude-sonnet-4-5", "claude-haiku-4-5", "bedrock/claude-sonnet-4-5", "bedrock/claude-haiku-4-5",
                   "bedrock/nova-pro", "bedrock/nova-lite", "bedrock/llama-3-3-70b"]


def test_sdk_missing_tags_raise_bad_request(running_stack, tagged_headers) -> None:
    client = OpenAI(base_url=f"{running_stack.url}/v1", api_key="unused",
                    default_headers=tagged_headers(project=None, user=None, environment=None), max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**HELLO)
    err = info.value
    assert err.status_code == 400
    assert err.code == "missing_cost_tags"
    assert err.type == "invalid_request_error"
    assert err.param == "X-Project-ID, X-User-ID, X-Environment"


def test_sdk_unknown_model_raises_not_found(sdk) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="gpt-7", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found"


def _curl(url: str, headers: dict[str, str], body: str) -> tuple[int, str]:
    args = ["curl", "-sS", "--noproxy", "*", "-m", "20", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", url,
            "-H", "Content-Type: application/json"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    args += ["--data-binary", body]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), text


def test_curl_happy_path(running_stack, tagged_headers) -> None:
    status, text = _curl(f"{running_stack.url}/v1/chat/completions", tagged_headers(), json.dumps(HELLO))
    assert status == 200
    body = json.loads(text)
    assert body["object"] == "chat.completion"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_curl_missing_tag_is_400(running_stack, tagged_headers) -> None:
    status, text = _curl(f"{running_stack.url}/v1/chat/completions", tagged_headers(environment=None),
                         json.dumps(HELLO))
    assert status == 400
    err = json.loads(text)["error"]
    assert err["code"] == "missing_cost_tags"
    assert err["param"] == "X-Environment"


def test_httpx_malformed_json_is_400(http, tagged_headers) -> None:
    r = http.post("/v1/chat/completions", headers={**tagged_headers(), "Content-Type": "application/json"},
                  content=b'{"model": "gpt-4o-mini", "messages": [}')
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.headers["X-Request-ID"]


def test_httpx_two_mib_body_is_413(http, tagged_headers, running_stack) -> None:
    body = json.dumps({**HELLO, "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]})
    r = http.post("/v1/chat/completions", headers={**tagged_headers(), "Content-Type": "application/json"},
                  content=body.encode())
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert running_stack.ledger_row(r.headers["X-Request-ID"]) is None


def test_httpx_unknown_model_is_404(http, tagged_headers) -> None:
    r = http.post("/v1/chat/completions", headers=tagged_headers(), json={**HELLO, "model": "gpt-9000"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_httpx_missing_tags_name_all_three_headers(http, tagged_headers) -> None:
    r = http.post("/v1/chat/completions", headers=tagged_headers(project=None, user=None, environment=None),
                  json=HELLO)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "missing_cost_tags"
    assert err["invalid_headers"] == list(TAGS)
    for name in TAGS:
        assert name in err["message"]


def test_httpx_provider_failure_is_booked(http, tagged_headers, running_stack) -> None:
    r = http.post("/v1/chat/completions", headers=tagged_headers(extra={"X-FinOps-Fallback": "off"}),
                  json={**HELLO, "messages": [{"role": "user", "content": "[[sim:status=500]]"}]})
    assert r.status_code == 502
    assert r.json()["error"]["provider"] == "openai"
    assert r.json()["error"]["code"] == "provider_unavailable"
    assert r.headers["X-FinOps-Cost-USD"] == "0"
    for request_id in (r.headers["X-Request-ID"], r.headers["X-Request-ID"] + ".1"):  # one bounded retry
        row = running_stack.ledger_row(request_id)
        assert row is not None
        assert row["status"] == {"S": "provider_unavailable"}
    assert Decimal(row["cost_usd"]["N"]) == 0


def test_httpx_unknown_route_is_404(http, tagged_headers) -> None:
    r = http.get("/v1/engines", headers=tagged_headers())
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_auto_routing_shares_its_scores_through_the_budgets_table(sdk, running_stack) -> None:
    """The fleet's score counts over moto's HTTP wire: BatchGetItem on a call's routing, UpdateItem ADD every
    ``flush_every`` routed calls."""
    policy = load_routing_policy()
    ddb = running_stack.dynamodb()
    table = running_stack.env.get("FINOPS_BUDGETS_TABLE", "finops-budgets")
    # Other environments saw enough prompts, all scored 0.99: the fleet's cut-off sits there.
    DynamoScoreStore(ddb, table).add("classifier#enterprise", hour_of(time.time()), {990: policy.adaptive_min_samples})
    first = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Summarise this month's AI spend by team."}])
    assert "from the fleet's recent calls" in first.headers["X-FinOps-Route-Decision"]
    for i in range(policy.fleet.flush_every):  # distinct prompts: the loop breaker stays shut
        sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": f"What is {i} squared?"}])
    items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    counted = sum(int(v["N"]) for item in items if item["pk"]["S"].startswith("route#classifier#enterprise#")
                  for k, v in item.items() if k.startswith("b"))
    assert counted > policy.adaptive_min_samples  # the stack's own scores reached the table
