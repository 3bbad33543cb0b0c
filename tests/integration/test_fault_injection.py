"""Fault injection after admission: whatever fails, no ledger row is lost and no budget leaks.

Each case admits a call through the real handlers (moto, the simulated provider, a ``pro`` key with a dollar
budget, a per-day gpt-4o cap and spend breakers), breaks one thing between admission and the response, and
checks the invariants:

(a) no reservation (``r_*``) is left on a budget item, and each budget holds exactly what the ledger booked;
    where the settle write itself cannot be made, the reservation stays and the documented recovery gives the
    money back: the spilled row replayed through the reconciler (CloudWatch Logs subscription event), or the
    reservation's expiry and the reconciler's scheduled run;
(b) exactly one ledger row per attempt (``<id>``, ``<id>.1``, ...), or a ``ledger_spill`` log record that holds
    the whole row, which the reconciler restores;
(c) the client gets OpenAI's error envelope with a typed code (for a stream: an error event), never a traceback;
(d) every cost booked is a Decimal and never negative.

The budget store runs on a frozen clock (1000 s in the past, so reservations made now are already expired for
the reconciler) and the gateway retries without waiting; the whole file runs in well under a minute.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import socket
import time
import types
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from botocore.awsrequest import AWSResponse
from finops import aws, tokens
from finops.budgets import gcra
from finops.budgets.policy import load_policy
from finops.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from finops.gateway import factory, metering, service
from finops.keys.service import KeySpec
from finops.ledger import model as ledger_model
from finops.ledger import repository
from finops.ledger.entry import LedgerEntry
from finops.local import lambda_runtime
from finops.pricing import ModelPrice
from finops.providers.openai_compatible import OpenAICompatibleProvider
from finops.settings import get_settings
from finops.streaming_runtime import RuntimeClient
from pynamodb.exceptions import PutError

PRO = load_policy().tier("pro")
DAILY = PRO.budget.daily_usd
WINDOW_US = PRO.breaker.window_seconds * gcra.MICROS
SPEND_CAP = PRO.breaker.max_spend_usd
FIRST, FALLBACK = "gpt-4o", "llama-3.3-70b-versatile"  # the pro chain (claude is not configured here)


# --- plumbing -------------------------------------------------------------------------------------------


class FrozenClock:
    def __init__(self) -> None:
        self.t = float(int(time.time()) - 1000)

    def __call__(self) -> float:
        return self.t

    @property
    def us(self) -> int:
        return int(self.t * gcra.MICROS)


@pytest.fixture
def clock(gateway_env, monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock()
    build = factory.governor

    def governor(settings):
        built = build(settings)
        built.store.clock, built.store.sleep = frozen, lambda s: None
        return built

    monkeypatch.setattr(factory, "governor", governor)
    gateway_env.set(FINOPS_RETRY=json.dumps({"attempts_per_model": 2, "max_attempts": 3, "base_delay_ms": 0,
                                             "max_delay_ms": 0}))
    return frozen


@pytest.fixture
def pro_key(gateway_env) -> tuple[str, str]:
    key, record = factory.keys(get_settings()).create(KeySpec(name="faults", tier="pro"))
    return key, record.key_id


@pytest.fixture
def virtual_key(pro_key) -> str:
    return pro_key[0]


def chat_event(load_event, rid: str, content: str = "Hello", *, model: str = FIRST, **body: Any) -> dict:
    return load_event("chat_completion", request_id=rid,
                      body={"model": model, "messages": [{"role": "user", "content": content}], **body})


class Script:
    """The providers' answers per model: an exception factory to raise, or None to call the simulator."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, plan: dict[str, list[Callable[[str], BaseException] | None]]):
        self.plan, self.calls = plan, []
        real = OpenAICompatibleProvider.complete

        def complete(provider, payload):
            self.calls.append(payload["model"])
            queue = self.plan.get(payload["model"]) or [None]
            make = queue.pop(0) if len(queue) > 1 else queue[0]
            if make is not None:
                raise make(provider.name)
            return real(provider, payload)

        monkeypatch.setattr(OpenAICompatibleProvider, "complete", complete)


class DynamoFaults:
    """Answers matching DynamoDB calls with an error (botocore ``before-call``: nothing reaches the table)."""

    def __init__(self, ledger_table: str, client: Callable[[], Any] = lambda: aws.client("dynamodb")) -> None:
        self.ledger_table = ledger_table
        self.client = client  # the budget store's client (settle transactions too), as built now
        self.rules: list[dict[str, Any]] = []
        self.injected = 0
        self._clients: list[Any] = []

    def attach(self, client: Any) -> None:
        if client not in self._clients:
            client.meta.events.register("before-call.dynamodb.*", self._before_call)
            self._clients.append(client)

    def detach(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-call.dynamodb.*", self._before_call)

    def add(self, op: str, code: str, *, times: int = 10_000, reasons: str | None = None) -> None:
        """``op``: settle | reserve | ledger_put; ``reasons`` (for TransactionCanceledException): which
        items of the transaction are throttled: ledger | budget | both | conflict."""
        self.attach(self.client())  # a changed setting rebuilds the gateway and its clients
        self.rules.append({"op": op, "code": code, "left": times, "reasons": reasons})

    def _op(self, operation: str, body: dict[str, Any]) -> str | None:
        if operation == "TransactWriteItems":
            items = body.get("TransactItems", [])
            settles = any("Put" in i or "REMOVE" in i.get("Update", {}).get("UpdateExpression", "") for i in items)
            return "settle" if settles else "reserve"
        if operation == "PutItem" and body.get("TableName") == self.ledger_table:
            return "ledger_put"
        if operation == "UpdateItem" and "attribute_not_exists(#r)" in body.get("ConditionExpression", ""):
            return "reserve"
        return None

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        body = json.loads(params.get("body") or b"{}")
        op = self._op(model.name, body)
        for rule in self.rules:
            if rule["op"] == op and rule["left"] > 0:
                rule["left"] -= 1
                self.injected += 1
                return AWSResponse("https://dynamodb.test", 400, {}, None), self._error(rule, body)
        return None

    @staticmethod
    def _error(rule: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        parsed: dict[str, Any] = {"Error": {"Code": rule["code"], "Message": "injected"},
                                  "ResponseMetadata": {"HTTPStatusCode": 400}}
        if rule["reasons"]:
            reasons = []
            why = "TransactionConflict" if rule["reasons"] == "conflict" else "ThrottlingError"
            for item in body.get("TransactItems", []):
                ledger = "Put" in item
                hit = {"ledger": ledger, "budget": not ledger, "both": True, "conflict": not ledger}[rule["reasons"]]
                reasons.append({"Code": why if hit else "None", "Message": "injected"})
            parsed["CancellationReasons"] = reasons
        return parsed


@pytest.fixture
def dynamo(gateway_env) -> Iterator[DynamoFaults]:
    faults = DynamoFaults(gateway_env.ledger_table)
    try:
        yield faults
    finally:
        faults.detach()


class SpillLog(logging.Handler):
    """``ledger_spill`` records as CloudWatch Logs receives them (Powertools JSON lines)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(LambdaPowertoolsFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "ledger_spill":
            self.lines.append(self.format(record))

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(line)["ledger_spill"] for line in self.lines]

    def subscription_event(self) -> dict[str, Any]:
        """What a CloudWatch Logs subscription filter delivers to a Lambda function."""
        data = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/lambda/finops-gateway",
                "logStream": "2026/12/01/[$LATEST]abc", "subscriptionFilters": ["ledger-spill"],
                "logEvents": [{"id": str(i), "timestamp": 0, "message": line + "\n"}
                              for i, line in enumerate(self.lines)]}
        return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()}}


@pytest.fixture
def spills() -> Iterator[SpillLog]:
    handler = SpillLog()
    target = repository.logger._logger
    target.addHandler(handler)
    try:
        yield handler
    finally:
        target.removeHandler(handler)


def reconcile(event: dict[str, Any] | None = None) -> dict[str, Any]:
    """The reconciler function: a scheduled run ({}), or a ledger_spill subscription delivery."""
    return lambda_runtime.invoke("reconciler", event or {})


# --- invariants -----------------------------------------------------------------------------------------


def budget_items(env) -> dict[str, dict[str, Any]]:
    items = aws.client("dynamodb").scan(TableName=env.budgets_table, ConsistentRead=True)["Items"]
    return {i["pk"]["S"]: i for i in items}


def open_reservations(env) -> list[tuple[str, str]]:
    return sorted((pk, a) for pk, item in budget_items(env).items() for a in item if a.startswith("r_"))


def _used(inc: int, row: LedgerEntry) -> int:
    """Units of a cell a row's call consumed, as settlement (or the reconciler's booking) charges them."""
    charged = row.http_status == 200 or row.error_code == "booked_unsettled"
    if not charged or row.reserved_usd <= 0:
        return 0
    return math.ceil(Decimal(inc) * row.cost_usd / row.reserved_usd)


def assert_books_balance(env, clock: FrozenClock, key_id: str, *, slack: int = 0) -> list[LedgerEntry]:
    """(a) and (d): no reservation left; each budget, spend breaker and the cap hold what the rows booked."""
    assert open_reservations(env) == [], "a reservation was left behind"
    rows = env.entries()
    for raw in env.raw_items():
        assert "N" in raw["cost_usd"]
    for row in rows:
        for money in (row.cost_usd, row.reserved_usd, row.tax_usd, row.counterfactual_usd):
            assert isinstance(money, Decimal) and money >= 0, row
    items = budget_items(env)
    now = clock.us

    def level(pk: str, attr: str) -> int:
        item = items.get(pk)
        return max(0, int(item[attr]["N"]) - now) if item and attr in item else 0

    bucket = sum(_used(gcra.increment(r.reserved_usd, DAILY, gcra.DAY_US), r) for r in rows)
    assert abs(level(f"bucket#key#{key_id}", "tat") - bucket) <= slack
    for pk in (f"breaker#key#{key_id}", "breaker#user#alice", "breaker#project#checkout-web"):
        spend = sum(_used(min(WINDOW_US, gcra.increment(r.reserved_usd, SPEND_CAP, WINDOW_US)), r) for r in rows)
        assert abs(level(pk, "usd") - spend) <= slack, pk
    caps = [i for pk, i in items.items() if pk.startswith(f"cap#{key_id}#{FIRST}#")]
    charged = [r for r in rows if r.model == FIRST and (r.http_status == 200 or r.error_code == "booked_unsettled")]
    assert sum(int(i.get("n", {"N": "0"})["N"]) for i in caps) == len(charged)
    return rows


def assert_envelope(result, status: int, code: str, *, booked: bool = True) -> dict[str, Any]:
    """(c): OpenAI's error envelope, typed, with no internals (and, once an attempt is booked, its cost: 0)."""
    assert result.status == status, result.body
    error = result.error()
    assert set(error) >= {"message", "type", "code", "param"} and error["code"] == code
    assert "Traceback" not in result.body and "injected" not in result.body
    if booked:
        assert result.header("x-finops-cost-usd") == "0"
    return error


def attempt_ids(rid: str, n: int) -> list[str]:
    return [rid if i == 0 else f"{rid}.{i}" for i in range(n)]


# --- provider faults ------------------------------------------------------------------------------------

ERRORS: dict[str, tuple[Callable[[str], BaseException], int, str, bool]] = {
    # name: (raise, client status and code, retried on the same model and then the next)
    "unavailable": (lambda p: ProviderUnavailable(p, "down", upstream_status=503), 502, "provider_unavailable", True),
    "timeout": (lambda p: ProviderTimeout(p, "slow"), 504, "provider_timeout", True),
    "rate_limited": (lambda p: ProviderRateLimited(p, "429", upstream_status=429), 429, "provider_rate_limited", True),
    "overloaded": (lambda p: ProviderOverloaded(p, "529", upstream_status=529), 503, "provider_overloaded", True),
    "bad_request": (lambda p: ProviderBadRequest(p, "400", upstream_status=400), 400, "provider_bad_request", False),
    "auth": (lambda p: ProviderAuthError(p, "401", upstream_status=401), 502, "provider_auth_error", False),
    "generic": (lambda p: ProviderError(p, "garbage"), 502, "provider_error", False),
    "untyped": (lambda p: RuntimeError("injected adapter bug"), 500, "internal_error", False),
}
OVERLOADED = ERRORS["overloaded"][0]


@pytest.mark.parametrize("position", ["first", "fallback"])
@pytest.mark.parametrize("name", list(ERRORS))
def test_provider_fault_books_every_attempt_at_zero_and_releases_it(
        name, position, gateway_env, clock, pro_key, load_event, monkeypatch):
    make, status, code, retryable = ERRORS[name]
    if position == "first":  # every attempt fails so
        script = Script(monkeypatch, {FIRST: [make], FALLBACK: [make]})
        codes = [code] * (3 if retryable else 1)
    else:  # the first model is overloaded (and retried), the fallback fails so
        script = Script(monkeypatch, {FIRST: [OVERLOADED], FALLBACK: [make]})
        codes = ["provider_overloaded", "provider_overloaded", code]

    assert_envelope(gateway_env.invoke(chat_event(load_event, "pf")), status, code)

    assert len(script.calls) == len(codes)
    rows = {r.request_id: r for r in assert_books_balance(gateway_env, clock, pro_key[1])}
    assert sorted(rows) == attempt_ids("pf", len(codes))  # (b) one row per attempt
    for i, rid in enumerate(attempt_ids("pf", len(codes))):
        row = rows[rid]
        assert (row.status, row.error_code, row.cost_usd, row.attempt, row.parent_request_id) == (
            codes[i], codes[i], 0, i, "pf")
        assert row.reserved_usd > 0  # it was admitted, then released


def test_a_fallback_that_answers_charges_only_the_answer(gateway_env, clock, pro_key, load_event, monkeypatch):
    Script(monkeypatch, {FIRST: [ERRORS["timeout"][0]], FALLBACK: [None]})
    result = gateway_env.invoke(chat_event(load_event, "fa"))
    assert result.status == 200 and result.header("x-finops-model") == FALLBACK
    rows = {r.request_id: r for r in assert_books_balance(gateway_env, clock, pro_key[1])}
    assert [(rows[i].status, rows[i].cost_usd > 0) for i in attempt_ids("fa", 3)] == [
        ("provider_timeout", False), ("provider_timeout", False), ("ok", True)]
    assert Decimal(result.header("x-finops-cost-usd")) == rows["fa.2"].cost_usd


class FunctionKilled(BaseException):
    """The execution environment dies mid-request (timeout, OOM): nothing after this line runs."""


def test_a_function_killed_mid_call_is_booked_by_the_reconciler(gateway_env, clock, pro_key, load_event,
                                                                monkeypatch):
    Script(monkeypatch, {FIRST: [lambda p: FunctionKilled()]})
    with pytest.raises(FunctionKilled):
        gateway_env.invoke(chat_event(load_event, "killed"))
    assert gateway_env.entries() == []
    assert {a for _, a in open_reservations(gateway_env)} == {"r_killed"}

    assert reconcile()["booked"] == 5  # key budget, the day's cap, three spend breakers
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert (row.request_id, row.status, row.error_code) == ("killed", "reconciled", "booked_unsettled")
    assert row.parent_request_id == "killed"  # grouped with its call, as an attempt's row is
    assert row.cost_usd == row.reserved_usd > 0  # the provider may have been paid: the worst case is booked


# --- metering and bookkeeping faults after the provider answered -------------------------------------------


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected metering bug")


BROKEN_TOKENS = types.SimpleNamespace(count_text=_broken, count_chat_tokens=tokens.count_chat_tokens)


def _break_count(monkeypatch):  # only the gateway's view of tiktoken (the simulator counts with it too)
    monkeypatch.setattr(service, "tokens", BROKEN_TOKENS)
    monkeypatch.setattr(metering, "tokens", BROKEN_TOKENS)


def _break_pricing(monkeypatch):
    monkeypatch.setattr(ModelPrice, "cost", _broken)


def _break_ledger_item(monkeypatch):
    monkeypatch.setattr(repository.LedgerRepository, "item", _broken)


@pytest.mark.parametrize("fault,content", [
    ("count", "Hello [[sim:no_usage]]"),  # no usage from the provider: the answer is counted, and that fails
    ("pricing", "Hello"),
    ("ledger_item", "Hello"),  # building the row for the settle transaction fails
])
def test_a_metering_fault_after_the_answer_still_books_the_call(fault, content, gateway_env, clock, pro_key,
                                                                load_event, monkeypatch, spills):
    Script(monkeypatch, {})
    with monkeypatch.context() as patched:
        {"count": _break_count, "pricing": _break_pricing, "ledger_item": _break_ledger_item}[fault](patched)
        result = gateway_env.invoke(chat_event(load_event, "mf", content))
    assert "injected" not in result.body and "Traceback" not in result.body
    assert result.status == 200, result.body  # the provider answered and was paid: the client gets the answer

    if fault == "ledger_item":  # the row could not even be built for DynamoDB: it is in the log
        [spilled] = spills.rows
        assert spilled["request_id"] == "mf" and Decimal(spilled["cost_usd"]) > 0
        assert reconcile(spills.subscription_event())["restored"] == 1
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert (row.request_id, row.status) == ("mf", "ok")
    if fault != "ledger_item":  # cost unknown: the reservation is booked, as the reconciler would
        assert row.cost_usd == row.reserved_usd and row.usage_source == "reservation"
    assert Decimal(result.header("x-finops-cost-usd")) == row.cost_usd


def test_a_fault_counting_a_fallbacks_prompt_is_a_typed_500(gateway_env, clock, pro_key, load_event, monkeypatch):
    Script(monkeypatch, {FIRST: [OVERLOADED]})
    real = tokens.count_chat_tokens

    def count(messages, encoding):
        if encoding != "o200k_base":  # llama's encoding: counted only when the fallback is reached
            raise RuntimeError("injected tokenizer bug")
        return real(messages, encoding)

    monkeypatch.setattr(service, "tokens", types.SimpleNamespace(count_chat_tokens=count, count_text=tokens.count_text))
    assert_envelope(gateway_env.invoke(chat_event(load_event, "fc")), 500, "internal_error", booked=False)
    rows = assert_books_balance(gateway_env, clock, pro_key[1])
    assert sorted(r.request_id for r in rows) == ["fc", "fc.1"]


# --- DynamoDB faults on the settle write ------------------------------------------------------------------

THROTTLES = {
    "provisioned": ("ProvisionedThroughputExceededException", None),
    "throttling": ("ThrottlingException", None),
    "txn_ledger": ("TransactionCanceledException", "ledger"),  # the ledger Put is throttled
    "txn_budget": ("TransactionCanceledException", "budget"),  # the bucket updates are throttled
    "txn_both": ("TransactionCanceledException", "both"),
    "txn_conflict": ("TransactionCanceledException", "conflict"),  # another write to a bucket item
}


@pytest.mark.parametrize("name", list(THROTTLES))
def test_a_settle_throttled_a_few_times_is_retried_and_written_once(name, gateway_env, clock, pro_key, load_event,
                                                                    dynamo, spills):
    code, reasons = THROTTLES[name]
    dynamo.add("settle", code, reasons=reasons, times=5)  # the store tries 6 times
    result = gateway_env.invoke(chat_event(load_event, "st"))
    assert result.status == 200 and dynamo.injected == 5
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert row.status == "ok" and row.cost_usd == Decimal(result.header("x-finops-cost-usd")) > 0
    assert spills.lines == []


@pytest.mark.parametrize("name", list(THROTTLES))
def test_a_settle_that_cannot_be_written_spills_the_row_and_the_reconciler_restores_it(
        name, gateway_env, clock, pro_key, load_event, dynamo, spills):
    code, reasons = THROTTLES[name]
    dynamo.add("settle", code, reasons=reasons)
    result = gateway_env.invoke(chat_event(load_event, "sp"))
    assert result.status == 200, result.body  # a ledger failure does not fail the call

    assert gateway_env.entries() == []
    [spilled] = spills.rows  # (b) the whole row, in the log
    assert set(spilled) == set(LedgerEntry.model_fields)
    entry = LedgerEntry.model_validate(spilled)
    assert (entry.request_id, entry.status) == ("sp", "ok")
    assert entry.cost_usd == Decimal(result.header("x-finops-cost-usd")) > 0
    assert {a for _, a in open_reservations(gateway_env)} == {"r_sp"}  # (a) held until recovered

    dynamo.detach()
    assert reconcile(spills.subscription_event())["restored"] == 1
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])  # charged the actual cost, not the worst case
    assert row == entry
    assert reconcile(spills.subscription_event())["restored"] == 0  # a replay is idempotent
    assert reconcile() == {"booked": 0, "released": 0, "already_settled": 0}
    assert assert_books_balance(gateway_env, clock, pro_key[1]) == [row]


def test_a_restore_that_fails_raises_so_lambda_retries_the_delivery_and_the_retry_restores(
        gateway_env, clock, pro_key, load_event, dynamo, spills):
    dynamo.add("settle", "ProvisionedThroughputExceededException")
    result = gateway_env.invoke(chat_event(load_event, "rr"))
    assert result.status == 200 and gateway_env.entries() == []
    dynamo.detach()
    pynamodb = ledger_model.bind(gateway_env.ledger_table)._get_connection().connection.client
    faults = DynamoFaults(gateway_env.ledger_table, lambda: pynamodb)  # the restore writes through PynamoDB
    faults.add("ledger_put", "ProvisionedThroughputExceededException")
    try:
        with pytest.raises(PutError):  # the invocation fails: Lambda's async retry (infra: 2) delivers it again
            reconcile(spills.subscription_event())
    finally:
        faults.detach()
    assert {a for _, a in open_reservations(gateway_env)} == {"r_rr"}  # nothing settled by the failed try
    assert reconcile(spills.subscription_event())["restored"] == 1  # the retry
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert (row.request_id, row.status, row.cost_usd) == ("rr", "ok", Decimal(result.header("x-finops-cost-usd")))


def test_a_failed_attempt_whose_settle_cannot_be_written_is_released_on_restore(
        gateway_env, clock, pro_key, load_event, monkeypatch, dynamo, spills):
    Script(monkeypatch, {FIRST: [ERRORS["bad_request"][0]]})
    dynamo.add("settle", "ProvisionedThroughputExceededException")
    assert_envelope(gateway_env.invoke(chat_event(load_event, "fs")), 400, "provider_bad_request")
    assert [r["status"] for r in spills.rows] == ["provider_bad_request"]
    dynamo.detach()
    assert reconcile(spills.subscription_event())["restored"] == 1
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])  # released in full, the cap not counted
    assert (row.request_id, row.cost_usd) == ("fs", 0)


def test_without_a_replay_the_reservation_expires_and_a_late_replay_changes_nothing(
        gateway_env, clock, pro_key, load_event, dynamo, spills):
    dynamo.add("settle", "ThrottlingException")
    assert gateway_env.invoke(chat_event(load_event, "ex")).status == 200
    dynamo.detach()
    assert reconcile()["booked"] == 5  # expired: the worst case is booked
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert (row.status, row.cost_usd) == ("reconciled", row.reserved_usd)
    assert reconcile(spills.subscription_event())["restored"] == 0  # the ledger is immutable: the row stands
    assert assert_books_balance(gateway_env, clock, pro_key[1]) == [row]


def test_the_reconcilers_own_ledger_write_failing_is_retried_on_its_next_run(
        gateway_env, clock, pro_key, load_event, monkeypatch, spills):
    Script(monkeypatch, {FIRST: [lambda p: FunctionKilled()]})
    with pytest.raises(FunctionKilled):
        gateway_env.invoke(chat_event(load_event, "rk"))
    pynamodb = ledger_model.bind(gateway_env.ledger_table)._get_connection().connection.client
    faults = DynamoFaults(gateway_env.ledger_table, lambda: pynamodb)  # the reconciler writes through PynamoDB
    faults.add("ledger_put", "ProvisionedThroughputExceededException")
    try:
        with pytest.raises(PutError):
            reconcile()
    finally:
        faults.detach()
    assert [r["request_id"] for r in spills.rows] == ["rk"] and open_reservations(gateway_env)
    assert reconcile()["booked"] == 5
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert row.status == "reconciled"


def test_fail_open_with_the_ledger_put_throttled_spills_and_restores_the_bypassed_row(
        gateway_env, clock, pro_key, load_event, dynamo, spills, tmp_path):
    policy = json.loads(json.dumps(load_policy().model_dump(mode="json")))
    (tmp_path / "open.json").write_text(json.dumps({**policy, "fail_mode": "open"}))
    gateway_env.set(FINOPS_BUDGET_POLICY_PATH=str(tmp_path / "open.json"))
    dynamo.add("reserve", "ProvisionedThroughputExceededException")
    dynamo.add("ledger_put", "ProvisionedThroughputExceededException")
    assert gateway_env.invoke(chat_event(load_event, "fo")).status == 200
    assert [r["budget_bypassed"] for r in spills.rows] == [True]
    dynamo.detach()
    assert reconcile(spills.subscription_event())["restored"] == 1
    [row] = gateway_env.entries()
    assert row.budget_bypassed and row.cost_usd > 0 and open_reservations(gateway_env) == []


# --- streaming ------------------------------------------------------------------------------------------


def open_stream(load_event, rid: str, content: str) -> Any:
    event = chat_event(load_event, rid, content, stream=True, stream_options={"include_usage": True})
    return lambda_runtime.load_handler("gateway_stream")(event, lambda_runtime.LocalContext("finops-gateway-stream"))


def sse(chunks: list[bytes]) -> list[Any]:
    out = []
    for chunk in chunks:
        text = chunk.decode()
        assert "Traceback" not in text and "injected" not in text
        payload = text.removeprefix("data: ").strip()
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


@pytest.fixture
def provider_streams(monkeypatch) -> dict[str, Any]:
    """Wraps the adapters' streams: ``closed`` counts streams let go of; ``crash_after`` raises mid-stream."""
    state: dict[str, Any] = {"closed": 0, "crash_after": None, "close_raises": False}
    real = OpenAICompatibleProvider.stream

    def stream(provider, payload):
        inner = real(provider, payload)
        try:
            for n, chunk in enumerate(inner):
                if state["crash_after"] is not None and n >= state["crash_after"]:
                    raise RuntimeError("injected stream bug")
                yield chunk
        finally:
            inner.close()
            state["closed"] += 1
            if state["close_raises"]:
                raise OSError("injected close failure")

    monkeypatch.setattr(OpenAICompatibleProvider, "stream", stream)
    return state


def test_a_provider_stream_that_dies_bills_what_was_delivered(gateway_env, clock, pro_key, load_event,
                                                              provider_streams):
    parsed = sse(list(open_stream(load_event, "sd", "Tell me [[sim:tokens=40]] [[sim:fail_after=5]]").body))
    assert parsed[-1] == "[DONE]" and parsed[-2]["error"]["code"] == "provider_unavailable"
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert (row.status, row.error_code, row.usage_source) == ("provider_interrupted", "provider_unavailable",
                                                              "estimated")
    assert row.output_tokens > 0 and row.cost_usd > 0 and provider_streams["closed"] == 1


@pytest.mark.parametrize("fault", ["crash", "count", "pricing"])
def test_a_crash_while_streaming_still_settles(fault, gateway_env, clock, pro_key, load_event, monkeypatch,
                                               provider_streams):
    if fault == "crash":
        provider_streams["crash_after"] = 4
    elif fault == "count":
        _break_count(monkeypatch)
    else:
        _break_pricing(monkeypatch)
    response = open_stream(load_event, "sc", "Tell me [[sim:tokens=40]]")
    assert response.status == 200
    parsed = sse(list(response.body))
    if fault in ("crash", "count"):
        assert parsed[-1]["error"]["code"] == "internal_error"
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert row.request_id == "sc" and row.cost_usd > 0
    if fault in ("count", "pricing"):  # cost unknown: the reservation is booked
        assert row.cost_usd == row.reserved_usd and row.usage_source == "reservation"
    assert provider_streams["closed"] == 1


@pytest.mark.parametrize("close_raises", [False, True], ids=["clean", "close_raises"])
def test_a_client_that_disconnects_mid_stream_pays_for_what_was_delivered(close_raises, gateway_env, clock, pro_key,
                                                                          load_event, provider_streams):
    provider_streams["close_raises"] = close_raises  # letting go of the provider fails too
    body = iter(open_stream(load_event, "cd", "Tell me [[sim:tokens=40]]").body)
    delivered = sse([next(body) for _ in range(4)])
    body.close()
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert (row.status, row.usage_source) == ("client_disconnected", "estimated")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in delivered)
    assert row.output_tokens == tokens.count_text(text, "o200k_base") > 0
    assert provider_streams["closed"] == 1


def test_a_client_gone_before_the_first_byte_still_settles(gateway_env, clock, pro_key, load_event,
                                                           provider_streams):
    response = open_stream(load_event, "cg", "Tell me [[sim:tokens=40]]")
    with socket.socket() as s:  # a Runtime API address nobody listens on: the response cannot be sent
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    assert RuntimeClient(dead, timeout=2).stream("cg", response) is False
    [row] = assert_books_balance(gateway_env, clock, pro_key[1])
    assert (row.status, row.output_tokens) == ("client_disconnected", 0)
    assert provider_streams["closed"] == 1


def test_a_stream_whose_settle_cannot_be_written_is_restored_with_its_extensions(
        gateway_env, clock, pro_key, load_event, dynamo, spills):
    gateway_env.set(FINOPS_STREAM__RESERVE_TOKENS="16")  # no max_tokens: the reservation grows by 16 tokens
    dynamo.add("settle", "ProvisionedThroughputExceededException")
    parsed = sse(list(open_stream(load_event, "se", "Tell me [[sim:tokens=60]]").body))
    assert parsed[-1] == "[DONE]" and "usage" in parsed[-2]
    [spilled] = spills.rows
    held = {a for _, a in open_reservations(gateway_env)}
    assert {"r_se", "r_se+1"} <= held  # the call's reservation and its extensions
    dynamo.detach()
    assert reconcile(spills.subscription_event())["restored"] == 1
    [row] = assert_books_balance(gateway_env, clock, pro_key[1], slack=2 * len(held))
    assert row == LedgerEntry.model_validate(spilled) and row.status == "ok"


def test_a_throttled_extension_stops_the_stream_and_settles(gateway_env, clock, pro_key, load_event, dynamo):
    gateway_env.set(FINOPS_STREAM__RESERVE_TOKENS="16")
    parsed = []
    response = open_stream(load_event, "te", "Tell me [[sim:tokens=60]]")
    for chunk in response.body:
        parsed.extend(sse([chunk]))
        if len(parsed) == 2:  # the call is admitted and streaming: now the budget store throttles
            dynamo.add("reserve", "ThrottlingException")
    [stop] = [c["finops"] for c in parsed if isinstance(c, dict) and c.get("finops", {}).get("stopped")]
    assert stop["stopped"] == "budget_store_unavailable" and "budget store" in stop["message"]  # not the budget's fault
    [row] = assert_books_balance(gateway_env, clock, pro_key[1], slack=8)
    assert (row.status, row.error_code) == ("stopped_unmetered", "budget_store_unavailable") and row.cost_usd > 0
