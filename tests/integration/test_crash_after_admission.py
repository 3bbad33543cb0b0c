"""A crash between admission and settlement that is not a provider error (a bug, an unexpected exception):
the caller gets a typed 500 in OpenAI's envelope, the attempt is booked at cost 0 and the reservation is
released in full."""

from __future__ import annotations

import time

import pytest
from finops import aws
from finops.gateway import factory
from finops.providers.openai_compatible import OpenAICompatibleProvider


def _bucket_items(gateway_env) -> list[dict]:
    items = aws.client("dynamodb").scan(TableName=gateway_env.budgets_table, ConsistentRead=True)["Items"]
    return [i for i in items if i["pk"]["S"].startswith(("bucket#", "breaker#"))]


def test_unexpected_crash_books_the_attempt_and_releases_the_reservation(gateway_env, load_event, monkeypatch):
    event = load_event("chat_completion")
    assert gateway_env.invoke(event).status == 200  # warm the gateway (buckets exist)
    counted_before = {i["pk"]["S"]: int(i["req"]["N"]) for i in _bucket_items(gateway_env) if "req" in i}

    def crash(self, payload):
        raise RuntimeError("bug in an adapter")

    monkeypatch.setattr(OpenAICompatibleProvider, "complete", crash)
    crashed = load_event("chat_completion")
    crashed["requestContext"]["requestId"] = "crash-1"
    result = gateway_env.invoke(crashed)

    assert result.status == 500
    error = result.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "bug in an adapter" not in result.body  # internals are not leaked
    row = gateway_env.repo.get("crash-1")
    assert row is not None
    assert (row.status, row.cost_usd, row.http_status) == ("internal_error", 0, 500)
    after = {i["pk"]["S"]: i for i in _bucket_items(gateway_env)}
    assert not [k for item in after.values() for k in item if k.startswith("r_")], "reservation left behind"
    # Enterprise keys have no dollar budget but a spend breaker: released in full, its window is empty again
    # (a TAT at or before now means nothing in use), though the call's request was counted.
    now_us = int(time.time() * 1_000_000)
    spend = {pk: int(item["usd"]["N"]) for pk, item in after.items() if "usd" in item}
    assert len(spend) == 3 and all(tat <= now_us for tat in spend.values())
    # (compared with before the call, not with the clock: a request's cell is 100 ms, less than a loaded CI
    # machine may take between the call and this read)
    counted_after = {pk: int(item["req"]["N"]) for pk, item in after.items() if "req" in item}
    assert counted_after.keys() == counted_before.keys() and counted_before
    assert all(counted_after[pk] > counted_before[pk] for pk in counted_before)
    factory.reset()


@pytest.fixture(autouse=True)
def _fresh_gateway():
    factory.reset()
    yield
    factory.reset()
