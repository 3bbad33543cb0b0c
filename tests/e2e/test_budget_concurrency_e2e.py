"""32 openai-SDK clients share one virtual key's budget through the whole local stack (HTTP all the way:
SDK -> API Gateway bridge -> handler -> moto server). The ledger afterwards must show spend within the
budget, and at least the budget minus one call's worst case (no reservation leaked into a false 429).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import openai
import pytest
from finops.gateway import factory
from finops.keys.service import KeySpec
from finops.settings import get_settings

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CLIENTS = 32
BUDGET = Decimal("0.02")
MAX_TOKENS = 400
POLICY = {
    "tiers": {"tiny": {"budget": {"daily_usd": str(BUDGET)}, "models": ["gpt-3.5-turbo"], "breaker": {}}},
    "reservation_ttl_seconds": 900,
}


@pytest.fixture
def tiny_key(running_stack, tmp_path, monkeypatch) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    monkeypatch.setenv("FINOPS_BUDGET_POLICY_PATH", str(path))
    factory.reset()
    key, _ = factory.keys(get_settings()).create(KeySpec(name="concurrency", tier="tiny"))
    yield key
    factory.reset()


def _sdk(running_stack, key: str, agent: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{running_stack.url}/v1", api_key=key, max_retries=0, timeout=30,
                         default_headers={"X-Project-ID": "concurrency", "X-User-ID": agent, "X-Environment": "test"})


def _call(sdk: openai.OpenAI, agent: str, i: int) -> str:
    reply = sdk.chat.completions.with_raw_response.create(
        model="gpt-3.5-turbo", max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": f"{agent} step {i} [[sim:tokens={100 + (7 * i + len(agent)) % 300}]]"}])
    return reply.headers["x-request-id"]


def test_32_sdk_clients_on_one_budget_neither_overspend_nor_leak(running_stack, tiny_key):
    """Phase 1: 32 clients spend concurrently until each is refused. Phase 2: one client, alone, spends
    whatever is left; its refusal, with nothing in flight, shows what the bucket really holds. A leaked
    reservation would make phase 2 stop short of the budget."""
    lock = threading.Lock()
    refused: list[str] = []
    admitted: list[str] = []
    started = time.time()

    def client(n: int) -> None:
        sdk = _sdk(running_stack, tiny_key, f"agent-{n}")
        for i in range(400):  # bounded: the budget runs out long before this
            try:
                request_id = _call(sdk, f"agent-{n}", i)
            except openai.RateLimitError as exc:
                with lock:
                    refused.append(exc.code or "")
                return
            with lock:
                admitted.append(request_id)
        raise AssertionError("client never ran out of budget")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    concurrent_calls = len(admitted)
    sdk = _sdk(running_stack, tiny_key, "last")
    for i in range(400):
        try:
            admitted.append(_call(sdk, "last", i))
        except openai.RateLimitError as exc:
            refused.append(exc.code or "")
            break
    seconds = time.time() - started

    assert set(refused) == {"budget_exceeded"}
    assert len(refused) == CLIENTS + 1
    costs, worst = [], Decimal(0)
    for request_id in admitted:
        row = running_stack.ledger_row(request_id)
        assert row is not None and row["status"]["S"] == "ok"
        costs.append(Decimal(row["cost_usd"]["N"]))
        worst = max(worst, Decimal(row["reserved_usd"]["N"]))
    spent = sum(costs, Decimal(0))
    refill = BUDGET * Decimal(str(seconds)) / 86_400
    assert spent <= BUDGET + refill
    assert spent >= BUDGET - worst
    assert concurrent_calls >= 20  # enough concurrent calls that the budget, not one call, was the limit
