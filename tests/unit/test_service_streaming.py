"""Streaming through the gateway: relayed lazily, billed for what was produced however the stream ends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from finops import tokens
from finops.budgets.governor import Ticket
from finops.errors import BudgetExceeded, ProviderRateLimited, ProviderTimeout
from finops.gateway import headers as h
from finops.gateway.service import ChatGateway, ProviderSet
from finops.gateway.streaming import StreamingResponse
from finops.pricing import Usage, load_catalog
from finops.providers.base import StreamChunk
from finops.settings import RetryPolicy, Settings, StreamPolicy

from tests.unit.test_service import NOW, TAGS, FakeGovernor, FakeLedger, request

CATALOG = load_catalog()
WORDS = ["Budgets", " keep", " agents", " from", " burning", " money", " overnight", "."]


def chunk(content: str | None = None, finish: str | None = None, role: bool = False) -> StreamChunk:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return StreamChunk({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def usage_chunk(usage: Usage) -> StreamChunk:
    return StreamChunk({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                        "choices": [], "usage": usage.as_openai()}, usage=usage)


class StreamingProvider:
    """Yields a script per model; ``pulled`` shows how far the gateway has read, ``closed`` whether it let go."""

    name = "openai"

    def __init__(self, scripts: dict[str, list[StreamChunk | Exception]]) -> None:
        self.scripts = scripts
        self.pulled = 0
        self.closed = False
        self.payloads: list[dict[str, Any]] = []
        self.streams: list[Iterator[StreamChunk]] = []  # held, so only the gateway's close() can close them

    def stream(self, payload: dict[str, Any]) -> Iterator[StreamChunk]:
        self.payloads.append(payload)
        script = self.scripts[payload["model"]]

        def generate() -> Iterator[StreamChunk]:
            try:
                for item in script:
                    self.pulled += 1
                    if isinstance(item, Exception):
                        raise item
                    yield item
            finally:
                self.closed = True

        stream = generate()
        self.streams.append(stream)
        return stream


class ExtendingGovernor(FakeGovernor):
    """Admits the call; extensions (``budgets_only``) while ``extensions_left`` lasts, then refuses."""

    def __init__(self, extensions_left: int = 0) -> None:
        super().__init__()
        self.extensions_left = extensions_left
        self.extensions: list[tuple[str, Decimal]] = []
        self.shares: list[Decimal] = []

    def admit(self, request_id: str, key: Any, tags: Any, model: str, worst: Decimal, loop_hash: Any,
              reservation: dict[str, Any], **kw: Any) -> Ticket:
        if kw.get("budgets_only"):
            if self.extensions_left <= 0:
                raise BudgetExceeded("daily budget exhausted")
            self.extensions_left -= 1
            self.extensions.append((request_id, worst))
            return Ticket(request_id, worst, None)
        return super().admit(request_id, key, tags, model, worst, loop_hash, reservation)

    def settle(self, ticket: Ticket, actual: Decimal, succeeded: bool, ledger_item: Any) -> dict[str, str]:
        self.shares.append(actual)
        if ledger_item is None:
            return {}
        return super().settle(ticket, actual, succeeded, ledger_item)


def make(scripts: dict[str, list[StreamChunk | Exception]], *, governor: FakeGovernor | None = None,
         stream: StreamPolicy | None = None, fallbacks: dict[str, tuple[str, ...]] | None = None
         ) -> tuple[ChatGateway, StreamingProvider, FakeGovernor]:
    settings = Settings(auth_mode="none", fallbacks=fallbacks or {}, stream=stream or StreamPolicy(),
                        retry=RetryPolicy(attempts_per_model=1))
    providers = ProviderSet(settings)
    fake = StreamingProvider(scripts)
    for name in ("openai", "groq"):
        providers._built[name] = fake  # type: ignore[assignment]
    governor = governor or ExtendingGovernor()
    gw = ChatGateway(settings=settings, catalog=CATALOG, providers=providers, ledger=FakeLedger(),  # type: ignore[arg-type]
                     governor=governor, keys=None, now=lambda: NOW, sleep=lambda s: None)  # type: ignore[arg-type]
    return gw, fake, governor


def events(raw: list[bytes]) -> list[Any]:
    out = []
    for event in raw:
        text = event.decode()
        assert text.startswith("data: ") and text.endswith("\n\n")
        payload = text[len("data: "):-2]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def text_of(parsed: list[Any]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed
                   if isinstance(c, dict) and c.get("choices"))


FULL = [chunk(role=True, content=""), *[chunk(w) for w in WORDS], chunk(finish="stop")]
PROVIDER_USAGE = Usage(prompt_tokens=11, completion_tokens=8)


def stream_request(**kw: Any) -> Any:
    return request(stream=True, stream_options={"include_usage": True}, **kw)


def test_chunks_are_relayed_lazily_and_the_providers_usage_is_billed() -> None:
    gw, fake, gov = make({"gpt-4o": [*FULL, usage_chunk(PROVIDER_USAGE)]})
    resp = gw.chat(stream_request(), TAGS, "rid", streaming=True)
    assert isinstance(resp, StreamingResponse)
    assert resp.content_type == "text/event-stream"
    assert resp.headers[h.MODEL] == "gpt-4o"
    assert fake.pulled == 1  # only the first chunk was read before the headers went out
    first = next(resp.chunks)
    assert fake.pulled == 1 and gov.entries == []
    parsed = events([first, *resp.chunks])
    assert parsed[-1] == "[DONE]"
    assert text_of(parsed) == "".join(WORDS)
    assert parsed[-2]["usage"]["completion_tokens"] == 8 and parsed[-2]["choices"] == []
    [entry] = gov.entries
    assert (entry.status, entry.stream, entry.usage_source) == ("ok", True, "provider")
    assert (entry.input_tokens, entry.output_tokens) == (11, 8)
    assert entry.cost_usd == CATALOG.get("gpt-4o").cost(PROVIDER_USAGE)
    assert fake.closed


def test_without_include_usage_no_usage_chunk_is_sent_but_usage_is_still_billed() -> None:
    gw, _fake, gov = make({"gpt-4o": [*FULL, usage_chunk(PROVIDER_USAGE)]})
    parsed = events(list(gw.chat(request(stream=True), TAGS, "rid", streaming=True).chunks))
    assert all("usage" not in c for c in parsed if isinstance(c, dict))
    assert gov.entries[0].output_tokens == 8


def test_missing_usage_is_counted_from_the_delivered_text() -> None:
    gw, _, gov = make({"gpt-4o": FULL})
    parsed = events(list(gw.chat(stream_request(), TAGS, "rid", streaming=True).chunks))
    [entry] = gov.entries
    assert entry.usage_source == "estimated"
    assert entry.output_tokens == tokens.count_text("".join(WORDS), "o200k_base")
    assert entry.input_tokens == tokens.count_chat_tokens([{"role": "user", "content": "hi"}], "o200k_base")
    assert parsed[-2]["usage"]["completion_tokens"] == entry.output_tokens  # the client sees what is billed


def test_a_client_disconnect_bills_what_was_delivered_and_lets_go_of_the_provider() -> None:
    gw, fake, gov = make({"gpt-4o": [*FULL, usage_chunk(PROVIDER_USAGE)]})
    stream = gw.chat(stream_request(), TAGS, "rid", streaming=True).chunks
    delivered = events([next(stream) for _ in range(4)])
    stream.close()  # what the transport does when the client goes away
    assert fake.closed
    [entry] = gov.entries
    assert (entry.status, entry.error_code, entry.usage_source) == ("client_disconnected", "client_disconnected",
                                                                     "estimated")
    assert entry.output_tokens == tokens.count_text(text_of(delivered), "o200k_base") > 0
    assert entry.cost_usd > 0
    assert gov.settled == [(entry.cost_usd, True)]


def test_an_interrupted_stream_keeps_the_providers_prompt_count_and_counts_the_output() -> None:
    # Anthropic-style: usage for the prompt arrives first, the output count only at the end.
    early = StreamChunk(None, usage=Usage(prompt_tokens=11, completion_tokens=1))
    gw, _, gov = make({"gpt-4o": [early, *FULL, usage_chunk(PROVIDER_USAGE)]})
    stream = gw.chat(stream_request(), TAGS, "rid", streaming=True).chunks
    delivered = events([next(stream) for _ in range(5)])
    stream.close()
    [entry] = gov.entries
    assert (entry.input_tokens, entry.usage_source) == (11, "estimated")
    assert entry.output_tokens == tokens.count_text(text_of(delivered), "o200k_base") > 1


def test_a_provider_failure_mid_stream_ends_with_an_error_event_and_is_billed() -> None:
    gw, _, gov = make({"gpt-4o": [*FULL[:4], ProviderTimeout("openai", "read timeout")]})
    parsed = events(list(gw.chat(stream_request(), TAGS, "rid", streaming=True).chunks))
    assert parsed[-2]["error"]["code"] == "provider_timeout"
    assert parsed[-1] == "[DONE]"
    [entry] = gov.entries
    assert (entry.status, entry.error_code) == ("provider_interrupted", "provider_timeout")
    assert entry.output_tokens == tokens.count_text("".join(WORDS[:3]), "o200k_base")


def test_a_failure_before_the_first_chunk_falls_back_to_the_next_model() -> None:
    gw, _fake, gov = make({"gpt-4o": [ProviderRateLimited("openai", "429")],
                          "gpt-4o-mini": [*FULL, usage_chunk(PROVIDER_USAGE)]},
                         fallbacks={"gpt-4o": ("gpt-4o-mini",)})
    resp = gw.chat(stream_request(), TAGS, "rid", streaming=True)
    assert resp.headers[h.MODEL] == "gpt-4o-mini"
    assert text_of(events(list(resp.chunks))) == "".join(WORDS)
    assert [(e.request_id, e.status, e.model) for e in gov.entries] == [
        ("rid", "provider_rate_limited", "gpt-4o"), ("rid.1", "ok", "gpt-4o-mini")]
    assert gov.entries[1].cost_usd == CATALOG.get("gpt-4o-mini").cost(PROVIDER_USAGE)


def long_script(n: int) -> list[StreamChunk | Exception]:
    return [chunk(role=True, content=""), *[chunk(" budget") for _ in range(n)], chunk(finish="stop")]


def test_a_stream_past_its_hard_limit_is_stopped_mid_way() -> None:
    gov = ExtendingGovernor(extensions_left=1)
    gw, fake, _ = make({"gpt-4o": long_script(200)}, governor=gov, stream=StreamPolicy(reserve_tokens=32))
    parsed = events(list(gw.chat(stream_request(), TAGS, "rid", streaming=True).chunks))
    stop = [c for c in parsed if isinstance(c, dict) and c.get("finops")]
    assert stop and stop[0]["choices"][0]["finish_reason"] == "length"
    assert stop[0]["finops"]["stopped"] == "budget_exceeded"
    assert fake.closed and fake.pulled < 100  # the provider stream was dropped, not drained
    [entry] = gov.entries
    assert (entry.status, entry.error_code) == ("stopped_budget", "budget_exceeded")
    delivered = text_of(parsed)
    assert entry.output_tokens == tokens.count_text(delivered, "o200k_base")
    assert 0.9 * 64 <= delivered.count("budget") <= 64  # one reservation + one extension of 32 tokens each
    assert [r for r, _ in gov.extensions] == ["rid+1"]
    # Settlement split the cost over the reservation and its extension; together they are the cost.
    assert sum(gov.shares) == entry.cost_usd


def test_allow_lets_the_stream_finish_and_charges_the_overrun() -> None:
    gov = ExtendingGovernor(extensions_left=0)
    gw, _, _ = make({"gpt-4o": long_script(100)}, governor=gov,
                    stream=StreamPolicy(reserve_tokens=32, on_budget_exhausted="allow"))
    parsed = events(list(gw.chat(stream_request(), TAGS, "rid", streaming=True).chunks))
    assert text_of(parsed).count("budget") == 100
    [entry] = gov.entries
    assert entry.status == "ok"
    assert gov.settled == [(entry.cost_usd, True)]  # above the reservation: charged at settlement
    assert entry.cost_usd > entry.reserved_usd


@pytest.mark.parametrize("max_tokens", [500])
def test_an_explicit_max_tokens_is_reserved_whole_and_never_extended(max_tokens: int) -> None:
    gov = ExtendingGovernor(extensions_left=0)
    gw, _, _ = make({"gpt-4o": long_script(100)}, governor=gov, stream=StreamPolicy(reserve_tokens=32))
    parsed = events(list(gw.chat(stream_request(max_tokens=max_tokens), TAGS, "rid", streaming=True).chunks))
    assert text_of(parsed).count("budget") == 100
    price = CATALOG.get("gpt-4o")
    prompt = tokens.count_chat_tokens([{"role": "user", "content": "hi"}], price.encoding)
    assert gov.admitted == [("rid", price.worst_case_cost(prompt, max_tokens))]
    assert gov.extensions == []


def test_stream_true_on_the_buffered_transport_still_gets_one_sse_body() -> None:
    from tests.unit.test_service import completion
    from tests.unit.test_service import make as make_buffered

    gw, _, _ = make_buffered(completion(usage=PROVIDER_USAGE))
    resp = gw.chat(stream_request(), TAGS, "rid")  # streaming=False: the buffered function
    assert resp.content_type == "text/event-stream" and isinstance(resp.body, str)
    assert resp.body.endswith("data: [DONE]\n\n")
