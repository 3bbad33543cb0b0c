"""32 concurrent clients on one budget, over HTTP against the DynamoDB emulator (moto's server).

Admitted spend must never exceed the budget (plus what refilled during the test), and must reach at least
the budget minus one call's worst case: reservations are always settled, so none leaks into false 429s.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import boto3
import pytest
from botocore.config import Config
from finops.budgets import gcra
from finops.budgets.store import BucketStore, Cell, Refused
from finops.local import aws_emulator

CLIENTS = 32
BUDGET = Decimal("1.00")
WORST = Decimal("0.05")
LEDGER = "ledger-concurrency"
BUCKETS = "budgets-concurrency"


@pytest.fixture(scope="module")
def dynamodb():
    server = aws_emulator.serve(port=0)
    client = boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{server.port}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(max_pool_connections=CLIENTS * 2, retries={"mode": "standard", "max_attempts": 3}))
    for table in (LEDGER, BUCKETS):
        key = "request_id" if table == LEDGER else "pk"
        client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
    yield client
    server.shutdown()


def _cell(scope: str, worst: Decimal) -> Cell:
    return Cell(pk=f"bucket#{scope}", attr="tat", inc=gcra.increment(worst, BUDGET, gcra.DAY_US),
                period_us=gcra.DAY_US, capacity=BUDGET, kind="budget", scope=scope, refundable=True)


def _run(dynamodb, scope: str, actual_of) -> tuple[Decimal, float, int]:
    """Every client spends until refused while no other reservation is outstanding.

    A client whose reservation succeeded but is not yet counted in ``in_flight`` goes on spending after it
    settles, so the last client to stop was refused by a bucket holding only settled spend.
    Returns (spent, seconds, admitted calls).
    """
    store = BucketStore(dynamodb, BUCKETS, ledger_table=LEDGER)
    lock = threading.Lock()
    state = {"in_flight": 0, "spent": Decimal(0), "calls": 0}
    started = time.time()

    def client(n: int) -> None:
        rng = random.Random(n)
        i = 0
        while True:
            i += 1
            request_id = f"{scope}-{n}-{i}"
            cell = _cell(scope, WORST)
            try:
                admission = store.reserve(request_id, [cell], [], {"exp": time.time() + 900})
            except Refused:
                with lock:
                    idle = state["in_flight"] == 0
                if idle:  # refused with no reservation of anyone else outstanding: the budget is used up
                    return
                time.sleep(0.002)
                continue
            with lock:
                state["in_flight"] += 1
            actual = actual_of(rng)
            used = {cell.key: gcra.increment(actual, BUDGET, gcra.DAY_US)}
            item = {"request_id": {"S": request_id}, "cost_usd": {"N": str(actual)}}
            assert store.settle(admission, used, item)
            with lock:
                state["in_flight"] -= 1
                state["spent"] += actual
                state["calls"] += 1

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return state["spent"], time.time() - started, state["calls"]


def _ledger_total(dynamodb, scope: str) -> tuple[Decimal, int]:
    total, rows = Decimal(0), 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=LEDGER):
        for item in page["Items"]:
            if item["request_id"]["S"].startswith(scope + "-"):
                total += Decimal(item["cost_usd"]["N"])
                rows += 1
    return total, rows


def _refill(seconds: float) -> Decimal:
    return BUDGET * Decimal(str(seconds)) / 86_400


@pytest.mark.parametrize("scope,actual_of", [
    ("exact", lambda rng: WORST),  # every call costs its worst case
    ("refunds", lambda rng: Decimal(rng.randint(1, 50)) / 1000),  # 0.001 .. 0.050, unused part refunded
])
def test_concurrent_clients_never_overspend_and_never_leak(dynamodb, scope, actual_of):
    spent, seconds, calls = _run(dynamodb, scope, actual_of)

    assert spent <= BUDGET + _refill(seconds) + Decimal("0.000001")
    assert spent >= BUDGET - WORST
    ledger_total, rows = _ledger_total(dynamodb, scope)
    assert (ledger_total, rows) == (spent, calls)
    item = dynamodb.get_item(TableName=BUCKETS, Key={"pk": {"S": f"bucket#{scope}"}}, ConsistentRead=True)["Item"]
    assert not [k for k in item if k.startswith("r_")], "a reservation was left behind"
