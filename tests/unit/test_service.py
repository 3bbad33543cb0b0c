"""ChatGateway orchestration with fake provider and ledger (no AWS, no HTTP)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from finops import tokens
from finops.budgets.governor import BudgetGovernor, Ticket
from finops.budgets.store import StoreUnavailable
from finops.errors import MissingCostTags, ModelNotFound, ProviderError, ProviderTimeout
from finops.gateway import headers as h
from finops.gateway.service import ChatGateway, ProviderSet
from finops.ledger.entry import LedgerEntry
from finops.openai_schema import ChatCompletionRequest
from finops.pricing import Usage, load_catalog
from finops.pricing import format_usd as format_cost
from finops.providers.base import Completion
from finops.settings import Settings

TAGS = {"X-Project-ID": "checkout-web", "X-User-ID": "alice", "X-Environment": "production"}
NOW = datetime(2026, 11, 29, 14, 30, tzinfo=UTC)
OPENAI_AND_GROQ = {name: {"base_url": f"http://127.0.0.1:9/{name}/v1", "secret_name": f"finops/providers/{name}"}
                   for name in ("openai", "groq")}
SLEPT: list[float] = []  # backoff waits the gateway asked for (never slept in unit tests)


class FakeLedger:
    """The ledger as the service uses it: ``item`` (the row to write) and ``spill`` (the log fallback)."""

    def __init__(self) -> None:
        self.spilled: list[LedgerEntry] = []

    def item(self, entry: LedgerEntry) -> LedgerEntry:
        return entry

    def spill(self, entry: LedgerEntry, exc: Exception) -> None:
        self.spilled.append(entry)


class FakeGovernor:
    """Admits everything; settlement records the ledger row it is asked to write."""

    def __init__(self, fail_settle: bool = False) -> None:
        self.entries: list[LedgerEntry] = []
        self.admitted: list[tuple[str, Decimal]] = []
        self.settled: list[tuple[Decimal, bool]] = []
        self.fail_settle = fail_settle

    def check_model(self, key: Any, model: str) -> None:
        return None

    def admit(self, request_id: str, key: Any, tags: Any, model: str, worst: Decimal, loop_hash: Any,
              reservation: dict[str, Any], **_: Any) -> Ticket:
        self.admitted.append((request_id, worst))
        return Ticket(request_id, worst, None)

    settle_all = BudgetGovernor.settle_all

    def settle(self, ticket: Ticket, actual: Decimal, succeeded: bool, ledger_item: Any) -> dict[str, str]:
        if self.fail_settle:
            raise StoreUnavailable("dynamodb is down")
        self.settled.append((actual, succeeded))
        self.entries.append(ledger_item)
        return {}


class FakeProvider:
    name = "openai"

    def __init__(self, result: Completion | Exception) -> None:
        self.result = result
        self.payloads: list[dict[str, Any]] = []

    def complete(self, payload: dict[str, Any]) -> Completion:
        self.payloads.append(payload)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def completion(text: str = "hello there", usage: Usage | None = None) -> Completion:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                         "total_tokens": usage.total_tokens}
    return Completion(body=body, usage=usage)


def make(result: Completion | Exception, settings: Settings | None = None,
         governor: FakeGovernor | None = None) -> tuple[ChatGateway, FakeProvider, FakeGovernor]:
    settings = settings or Settings(auth_mode="none", fallbacks={}, providers=OPENAI_AND_GROQ)
    providers = ProviderSet(settings)
    fake = FakeProvider(result)
    providers._built["openai"] = fake
    providers._built["groq"] = fake
    governor = governor or FakeGovernor()
    gw = ChatGateway(settings=settings, catalog=load_catalog(), providers=providers, ledger=FakeLedger(),  # type: ignore[arg-type]
                     governor=governor, keys=None, now=lambda: NOW, sleep=SLEPT.append)  # type: ignore[arg-type]
    return gw, fake, governor


def request(**kw: Any) -> ChatCompletionRequest:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **kw}
    return ChatCompletionRequest.model_validate(body)


def test_prompt_cache_writes_reach_the_ledger() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=10, cached_tokens=200, cache_write_tokens=300)
    gw, _, ledger = make(completion(usage=usage))
    gw.chat(request(max_tokens=50), TAGS, "rid-w")
    [entry] = ledger.entries
    assert (entry.input_tokens, entry.cached_input_tokens, entry.cache_write_input_tokens) == (1000, 200, 300)


def test_ok_call_headers_cost_and_ledger() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200)
    gw, fake, ledger = make(completion(usage=usage))
    resp = gw.chat(request(model="gpt-4o-2024-08-06", max_tokens=50, temperature=0.2), TAGS, "rid-1")
    assert resp.status == 200
    expected = (Decimal(800) * Decimal("2.50") + 200 * Decimal("1.25") + 500 * Decimal("10.00")) / 1_000_000
    assert resp.headers == {h.REQUEST_ID: "rid-1", h.MODEL: "gpt-4o", h.COST: "0.00725"}
    assert Decimal(resp.headers[h.COST]) == expected
    assert fake.payloads == [{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": 50, "temperature": 0.2}]
    [entry] = ledger.entries
    assert ledger.settled == [(expected, True)]
    assert entry.request_id == "rid-1"
    assert entry.ts == NOW
    assert entry.requested_model == "gpt-4o-2024-08-06"
    assert entry.model == "gpt-4o"
    assert (entry.input_tokens, entry.cached_input_tokens, entry.output_tokens) == (1000, 200, 500)
    assert entry.cost_usd == expected
    assert entry.usage_source == "provider"
    assert entry.status == "ok"
    assert entry.http_status == 200
    assert entry.price_version == load_catalog().version


def test_missing_tags_refused_before_the_provider_is_called() -> None:
    gw, fake, ledger = make(completion(usage=Usage()))
    with pytest.raises(MissingCostTags):
        gw.chat(request(), {}, "rid")
    assert fake.payloads == []
    assert ledger.entries == []


def test_unknown_model_refused_before_the_provider_is_called() -> None:
    gw, fake, ledger = make(completion(usage=Usage()))
    with pytest.raises(ModelNotFound):
        gw.chat(request(model="gpt-9"), TAGS, "rid")
    assert fake.payloads == []
    assert ledger.entries == []


def test_model_of_an_unconfigured_provider_is_not_found() -> None:
    gw, fake, _ = make(completion(usage=Usage()))
    with pytest.raises(ModelNotFound) as info:
        gw.chat(request(model="claude-haiku-4-5"), TAGS, "rid")
    assert info.value.status == 404
    assert fake.payloads == []


def test_provider_error_is_booked_at_zero_cost_and_reraised() -> None:
    gw, _, ledger = make(ProviderError("openai", "boom", upstream_status=503))
    with pytest.raises(ProviderError) as info:
        gw.chat(request(), TAGS, "rid-err")
    assert info.value.headers[h.COST] == "0"
    assert info.value.headers[h.REQUEST_ID] == "rid-err"
    [entry] = ledger.entries
    assert ledger.settled == [(Decimal(0), False)]
    assert (entry.status, entry.http_status, entry.error_code) == ("provider_error", 502, "provider_error")
    assert entry.cost_usd == Decimal(0)
    assert entry.input_tokens == entry.output_tokens == 0


def test_provider_timeout_is_booked_as_timeout() -> None:
    gw, _, ledger = make(ProviderTimeout("openai", "slow"))
    with pytest.raises(ProviderTimeout):
        gw.chat(request(), TAGS, "rid-t")
    assert (ledger.entries[0].status, ledger.entries[0].http_status) == ("provider_timeout", 504)


def test_missing_usage_is_estimated_with_tiktoken() -> None:
    gw, _, ledger = make(completion(text="one two three four", usage=None))
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "count to four"}]
    resp = gw.chat(request(messages=msgs, model="gpt-3.5-turbo"), TAGS, "rid")
    [entry] = ledger.entries
    assert entry.usage_source == "estimated"
    assert entry.input_tokens == tokens.count_chat_tokens(msgs, "cl100k_base")
    assert entry.output_tokens == tokens.count_text("one two three four", "cl100k_base")
    assert Decimal(resp.headers[h.COST]) == load_catalog().get("gpt-3.5-turbo").cost(
        Usage(prompt_tokens=entry.input_tokens, completion_tokens=entry.output_tokens))


def test_ledger_failure_does_not_fail_the_call_and_spills_the_row() -> None:
    gw, _, _ = make(completion(usage=Usage(prompt_tokens=1)), governor=FakeGovernor(fail_settle=True))
    resp = gw.chat(request(), TAGS, "rid")
    assert resp.status == 200
    [spilled] = gw.ledger.spilled  # type: ignore[attr-defined]
    assert spilled.request_id == "rid"
    assert spilled.cost_usd == Decimal("0.0000025")


def test_worst_case_is_reserved_before_the_call() -> None:
    gw, _, governor = make(completion(usage=Usage(prompt_tokens=1)))
    gw.chat(request(model="gpt-4o-mini", max_tokens=100, n=2), TAGS, "rid-w")
    prompt = tokens.count_chat_tokens([{"role": "user", "content": "hi"}], "o200k_base")
    expected = 2 * (prompt * Decimal("0.15") + 100 * Decimal("0.60")) / 1_000_000
    assert governor.admitted == [("rid-w", expected)]
    assert governor.entries[0].reserved_usd == expected


def test_observe_mode_warns_and_books_unallocated() -> None:
    gw, _, ledger = make(completion(usage=Usage(prompt_tokens=1)),
                            Settings(enforcement_mode="observe", auth_mode="none"))
    resp = gw.chat(request(), {"X-Project-ID": "<script>"}, "rid")
    warning = resp.headers[h.WARNING]
    for name in ("X-Project-ID", "X-User-ID", "X-Environment"):
        assert name in warning
    assert "<script>" not in warning
    entry = ledger.entries[0]
    assert (entry.project_id, entry.user_id, entry.environment, entry.department_id) == ("unallocated",) * 4
    assert entry.unallocated_tags == ("X-Project-ID", "X-User-ID", "X-Environment")


def test_stream_renders_sse() -> None:
    gw, fake, ledger = make(completion(text="streamed", usage=Usage(prompt_tokens=2, completion_tokens=1)))
    resp = gw.chat(request(stream=True, stream_options={"include_usage": True}), TAGS, "rid")
    assert resp.content_type == "text/event-stream"
    assert isinstance(resp.body, str)
    assert resp.body.endswith("data: [DONE]\n\n")
    assert "stream" not in fake.payloads[0]
    assert "stream_options" not in fake.payloads[0]
    assert ledger.entries[0].stream is True
    usage_chunk = json.loads(resp.body.split("\n\n")[-3].removeprefix("data: "))
    assert usage_chunk["usage"]["prompt_tokens"] == 2


def test_list_models_only_served_providers() -> None:
    gw, _, _ = make(completion())
    ids = [m["id"] for m in gw.list_models()["data"]]
    assert ids == ["gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "llama-3.3-70b-versatile", "llama-3.1-8b-instant"]
    only_groq = Settings(auth_mode="none",
                         providers={"groq": {"base_url": "http://127.0.0.1:9/v1", "secret_name": "g"}})
    gw2, _, _ = make(completion(), only_groq)
    assert [m["owned_by"] for m in gw2.list_models()["data"]] == ["groq", "groq"]


def test_provider_set_builds_configured_adapters_once() -> None:
    assert all(ProviderSet(Settings()).serves(p) for p in ("openai", "groq", "anthropic", "bedrock"))  # defaults
    providers = ProviderSet(Settings(providers=OPENAI_AND_GROQ))
    assert providers.serves("openai")
    assert providers.serves("groq")
    assert not providers.serves("anthropic")
    first = providers.get("groq")
    assert first is providers.get("groq")
    assert first.name == "groq"
    with pytest.raises(ModelNotFound):
        providers.get("anthropic")


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("0.00001845"), "0.00001845"),
    (Decimal("2.50"), "2.5"),
    (Decimal("100"), "100"),
    (Decimal("0"), "0"),
    (Decimal("0E-10"), "0"),
    (Decimal("1E-12"), "0.000000000001"),
])
def test_format_cost(value: Decimal, text: str) -> None:
    assert format_cost(value) == text
