"""Plumbing for the budget integration tests: a gateway assembled from its real parts over moto, a fake clock,
the simulated provider, and SNS/EventBridge alerts read back through SQS. Imported by name (this directory is
on sys.path)."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from finops import aws
from finops.budgets import gcra
from finops.budgets import table as budget_table
from finops.budgets.alerts import AlertPublisher
from finops.budgets.governor import BudgetGovernor
from finops.budgets.policy import BudgetPolicy, load_policy
from finops.budgets.store import BucketStore
from finops.errors import FinOpsError
from finops.gateway import factory
from finops.gateway.service import ChatGateway, ProviderSet
from finops.keys import model as keys_model
from finops.keys.service import KeyService, KeySpec
from finops.ledger import model as ledger_model
from finops.ledger.entry import LedgerEntry
from finops.ledger.repository import LedgerRepository, entry_of_item
from finops.local import lambda_runtime
from finops.openai_schema import ChatCompletionRequest
from finops.pricing import load_catalog
from finops.settings import Settings

START = 1_795_962_600.0  # 2026-11-29T14:30:00Z
EVENTS = Path(__file__).resolve().parents[3] / "events"
TAGS = {"X-Project-ID": "checkout-web", "X-User-ID": "alice", "X-Environment": "production"}


class FakeClock:
    def __init__(self, start: float = START) -> None:
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    @property
    def us(self) -> int:
        return int(self.t * gcra.MICROS)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


def forget_connections() -> None:
    factory.reset()
    aws.client.cache_clear()
    for model in (ledger_model.LedgerRow, keys_model.ApiKey, budget_table.BudgetItem):
        model._connection = None
    try:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
    except ImportError:  # pragma: no cover
        pass


@dataclass
class Tables:
    """One test's resource names: unique, because moto's state is process-global and never reset here."""

    suffix: str

    @property
    def ledger(self) -> str:
        return f"finops-ledger-it-{self.suffix}"

    @property
    def keys(self) -> str:
        return f"finops-keys-it-{self.suffix}"

    @property
    def budgets(self) -> str:
        return f"finops-budgets-it-{self.suffix}"

    def env(self) -> dict[str, str]:
        return {"FINOPS_LEDGER_TABLE": self.ledger, "FINOPS_KEYS_TABLE": self.keys,
                "FINOPS_BUDGETS_TABLE": self.budgets}


@dataclass
class RecordingSimulator:
    server: Any
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.calls)


@dataclass
class Reply:
    """One answer, from ChatGateway (a GatewayResponse or a raised FinOpsError) or from a handler."""

    status: int
    headers: dict[str, str]
    body: Any

    @classmethod
    def of_error(cls, exc: FinOpsError) -> Reply:
        return cls(exc.status, {k.lower(): str(v) for k, v in exc.headers.items()}, exc.envelope())

    @classmethod
    def of_proxy(cls, raw: dict[str, Any]) -> Reply:
        headers = {k.lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
        for k, values in (raw.get("multiValueHeaders") or {}).items():
            headers[k.lower()] = ", ".join(str(v) for v in values)
        body = raw.get("body") or ""
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body
        return cls(int(raw["statusCode"]), headers, parsed)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and set(self.body) == {"error"}, self.body
        return self.body["error"]

    @property
    def code(self) -> str | None:
        return self.error.get("code") if self.status >= 400 else None

    @property
    def request_id(self) -> str | None:
        return self.header("x-request-id")


@dataclass
class Alerts:
    """An SNS topic and an EventBridge bus, each delivering to its own SQS queue."""

    topic_arn: str
    bus: str
    sns_queue: str
    events_queue: str

    @staticmethod
    def _drain(url: str) -> list[dict[str, Any]]:
        sqs = aws.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return out
            for m in messages:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def sns(self) -> list[dict[str, Any]]:
        """Alert payloads published to SNS since the last read (the ``Message`` of each notification)."""
        return [json.loads(n["Message"]) | {"_subject": n.get("Subject")} for n in self._drain(self.sns_queue)]

    def events(self) -> list[dict[str, Any]]:
        """EventBridge events delivered since the last read."""
        return self._drain(self.events_queue)

    @classmethod
    def create(cls, name: str) -> Alerts:
        sns, sqs, events = aws.client("sns"), aws.client("sqs"), aws.client("events")
        topic = sns.create_topic(Name=name)["TopicArn"]
        queues = []
        for suffix in ("sns", "events"):
            url = sqs.create_queue(QueueName=f"{name}-{suffix}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            queues.append((url, arn))
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queues[0][1])
        events.create_event_bus(Name=name)
        events.put_rule(Name=f"{name}-rule", EventBusName=name,
                        EventPattern=json.dumps({"source": ["finops.gateway"]}))
        events.put_targets(Rule=f"{name}-rule", EventBusName=name, Targets=[{"Id": "q", "Arn": queues[1][1]}])
        return cls(topic, name, queues[0][0], queues[1][0])


def policy_dict(**overrides: Any) -> dict[str, Any]:
    """The shipped policy as JSON-able data; ``tier_<name>={...}`` updates a tier, anything else replaces a key."""
    base = json.loads(json.dumps(load_policy().model_dump(mode="json")))
    for name, value in overrides.items():
        if name.startswith("tier_"):
            base["tiers"][name.removeprefix("tier_")].update(value)
        else:
            base[name] = value
    return base


def to_policy(data: Mapping[str, Any]) -> BudgetPolicy:
    return BudgetPolicy.model_validate(json.loads(json.dumps(data), parse_float=Decimal))


QUIET_BREAKER = {"window_seconds": 300, "cooldown_seconds": 300}  # no trip conditions at all


@dataclass
class BudgetStack:
    monkeypatch: pytest.MonkeyPatch
    sim: RecordingSimulator
    tmp_path: Path
    tables: Tables
    clock: FakeClock = field(default_factory=FakeClock)
    _policies: int = 0

    # --- environment --------------------------------------------------------------------------------------

    @property
    def ddb(self) -> Any:
        return aws.client("dynamodb")

    def providers(self) -> dict[str, Any]:
        return {name: {"base_url": f"{self.sim.url}/{name}/v1", "secret_name": f"finops/providers/{name}",
                       "timeout_seconds": 5, "connect_timeout_seconds": 2} for name in ("openai", "groq")}

    def set_env(self, **env: str) -> None:
        for k, v in env.items():
            self.monkeypatch.setenv(k, v)
        factory.reset()

    def use_policy(self, data: Mapping[str, Any]) -> Path:
        """Write ``data`` as the deployment's policy file (FINOPS_BUDGET_POLICY_PATH) for handlers and the CLI."""
        self._policies += 1
        path = self.tmp_path / f"budgets-{self._policies}.json"
        path.write_text(json.dumps(data))
        self.set_env(FINOPS_BUDGET_POLICY_PATH=str(path))
        return path

    # --- parts ----------------------------------------------------------------------------------------------

    def key_service(self, cache_ttl_seconds: float = 30.0, policy: BudgetPolicy | None = None) -> KeyService:
        tiers = set((policy or load_policy()).tiers)
        return KeyService(self.tables.keys, tiers, cache_ttl_seconds=cache_ttl_seconds, clock=self.clock)

    def create_key(self, tier: str, **spec: Any) -> str:
        key, _ = self.key_service().create(KeySpec(name=spec.pop("name", f"it-{tier}"), tier=tier, **spec))
        return key

    def key_id(self, key: str) -> str:
        return self.key_service(cache_ttl_seconds=0).authenticate(f"Bearer {key}").key_id

    def store(self, table: str | None = None) -> BucketStore:
        return BucketStore(self.ddb, table or self.tables.budgets, ledger_table=self.tables.ledger, clock=self.clock,
                           sleep=lambda _: None)

    def gateway(self, policy: Mapping[str, Any] | None = None, *, alerts: Alerts | None = None,
                store: BucketStore | None = None, key_cache_seconds: float = 30.0,
                keys: KeyService | None = None, **settings: Any) -> ChatGateway:
        """A ChatGateway from its real parts (as factory.gateway builds it), on the fake clock."""
        settings.setdefault("ledger_table", self.tables.ledger)
        settings.setdefault("keys_table", self.tables.keys)
        settings.setdefault("budgets_table", self.tables.budgets)
        settings.setdefault("providers", self.providers())
        config = Settings(**settings)
        p = to_policy(policy) if policy is not None else load_policy()
        publisher = None
        if alerts is not None:
            publisher = AlertPublisher(self.ddb, config.budgets_table, p.alert_thresholds, sns=aws.client("sns"),
                                       topic_arn=alerts.topic_arn, events=aws.client("events"),
                                       event_bus=alerts.bus)
        governor = BudgetGovernor(p, store or self.store(config.budgets_table), publisher)
        return ChatGateway(settings=config, catalog=load_catalog(), providers=ProviderSet(config),
                           ledger=LedgerRepository(config.ledger_table, config.ledger_shards), governor=governor,
                           keys=keys or self.key_service(key_cache_seconds, p), now=self.clock.now)

    # --- calls ----------------------------------------------------------------------------------------------

    @staticmethod
    def body(content: str = "Hello", model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": content}], **extra}

    @staticmethod
    def headers(key: str | None, **tags: str | None) -> dict[str, str]:
        chosen = {**TAGS}
        for name, value in tags.items():
            header = {"project": "X-Project-ID", "user": "X-User-ID", "environment": "X-Environment"}[name]
            if value is None:
                chosen.pop(header)
            else:
                chosen[header] = value
        if key is not None:
            chosen["Authorization"] = f"Bearer {key}"
        return chosen

    def chat(self, gw: ChatGateway, key: str | None, content: str = "Hello", model: str = "gpt-4o-mini",
             tags: Mapping[str, str | None] | None = None, request_id: str | None = None, **extra: Any) -> Reply:
        request = ChatCompletionRequest.model_validate(self.body(content, model, **extra))
        rid = request_id or str(uuid.uuid4())
        try:
            result = gw.chat(request, self.headers(key, **(tags or {})), rid)
        except FinOpsError as exc:
            reply = Reply.of_error(exc)
            reply.headers["x-request-id"] = rid
            return reply
        headers = {k.lower(): v for k, v in result.headers.items()}
        return Reply(result.status, headers, result.body)

    def event(self, key: str | None, body: Mapping[str, Any] | None = None, **tags: str | None) -> dict[str, Any]:
        """An API Gateway REST proxy event for POST /v1/chat/completions."""
        event = copy.deepcopy(json.loads((EVENTS / "chat_completion.json").read_text()))
        headers = {k: v for k, v in event["headers"].items() if k not in TAGS}
        headers.update(self.headers(key, **tags))
        event["headers"] = headers
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        event["body"] = json.dumps(body or self.body())
        rid = str(uuid.uuid4())
        event["requestContext"]["requestId"] = rid
        event["requestContext"]["extendedRequestId"] = rid
        return event

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        return lambda_runtime.invoke(function, event)

    def invoke_gateway(self, key: str | None, body: Mapping[str, Any] | None = None, **tags: str | None) -> Reply:
        return Reply.of_proxy(self.invoke("gateway", self.event(key, body, **tags)))

    # --- state ------------------------------------------------------------------------------------------------

    def item(self, pk: str) -> dict[str, Any]:
        found = self.ddb.get_item(TableName=self.tables.budgets, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return found.get("Item", {})

    def tat(self, pk: str, attr: str = "tat") -> int | None:
        item = self.item(pk)
        return int(item[attr]["N"]) if attr in item else None

    def budget_items(self) -> dict[str, dict[str, Any]]:
        return {i["pk"]["S"]: i for i in self.ddb.scan(TableName=self.tables.budgets)["Items"]}

    def entries(self) -> list[LedgerEntry]:
        items = self.ddb.scan(TableName=self.tables.ledger)["Items"]
        return [entry_of_item(i) for i in items]

    def entry(self, request_id: str | None) -> LedgerEntry:
        assert request_id
        found = LedgerRepository(self.tables.ledger, 8).get(request_id)
        assert found is not None, f"no ledger row for {request_id}"
        return found


def remaining_usd(tat: int | None, now_us: int, daily: str) -> Decimal:
    return gcra.remaining(tat, now_us, Decimal(daily), gcra.DAY_US)
