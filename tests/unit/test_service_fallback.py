"""Retries and fallback chains: every attempt booked, the reservation following the model, waits bounded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from finops import tokens
from finops.budgets.governor import Ticket
from finops.errors import (
    BudgetExceeded,
    ModelNotAllowed,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
)
from finops.gateway import headers as h
from finops.gateway.fallback import AttemptPlan, chain_for
from finops.gateway.service import ChatGateway, ProviderSet
from finops.pricing import Usage, load_catalog
from finops.providers.base import Completion
from finops.settings import RetryPolicy, Settings

from tests.unit.test_service import NOW, TAGS, FakeGovernor, FakeLedger, completion, request

CATALOG = load_catalog()


class ScriptedProvider:
    """Answers each model from its own queue: an exception to raise or a completion to return."""

    def __init__(self, name: str, script: dict[str, list[Completion | Exception]]) -> None:
        self.name = name
        self.script = script
        self.calls: list[str] = []

    def complete(self, payload: dict[str, Any]) -> Completion:
        model = payload["model"]
        self.calls.append(model)
        result = self.script[model].pop(0)
        if isinstance(result, Exception):
            raise result
        return result


class PickyGovernor(FakeGovernor):
    def __init__(self, forbidden: set[str] = frozenset(), unaffordable: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.forbidden = forbidden
        self.unaffordable = unaffordable
        self.retry_flags: list[bool] = []

    def check_model(self, key: Any, model: str) -> None:
        if model in self.forbidden:
            raise ModelNotAllowed(f"{model} not in tier")

    def admit(self, request_id: str, key: Any, tags: Any, model: str, worst: Decimal, loop_hash: Any,
              reservation: dict[str, Any], **kw: Any) -> Ticket:
        if model in self.unaffordable:
            raise BudgetExceeded("no room")
        self.retry_flags.append(kw.get("retry", False))
        self.admitted.append((request_id, worst))
        return Ticket(request_id, worst, None)


def gateway(script: dict[str, list[Completion | Exception]], *, fallbacks: dict[str, tuple[str, ...]],
            retry: RetryPolicy | None = None, governor: FakeGovernor | None = None
            ) -> tuple[ChatGateway, ScriptedProvider, FakeGovernor, list[float]]:
    settings = Settings(auth_mode="none", fallbacks=fallbacks, retry=retry or RetryPolicy())
    providers = ProviderSet(settings)
    fake = ScriptedProvider("any", script)
    for name in ("openai", "groq", "anthropic"):
        providers._built[name] = fake  # type: ignore[assignment]
    governor = governor or PickyGovernor()
    slept: list[float] = []
    gw = ChatGateway(settings=settings, catalog=CATALOG, providers=providers, ledger=FakeLedger(),  # type: ignore[arg-type]
                     governor=governor, keys=None, now=lambda: NOW, sleep=slept.append)  # type: ignore[arg-type]
    return gw, fake, governor, slept


USAGE = Usage(prompt_tokens=100, completion_tokens=20)


def test_rate_limited_twice_then_the_fallback_answers_and_every_attempt_is_booked() -> None:
    gw, fake, gov, slept = gateway(
        {"gpt-4o": [ProviderRateLimited("openai", "slow down"), ProviderRateLimited("openai", "slow down")],
         "llama-3.3-70b-versatile": [completion(usage=USAGE)]},
        fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)})
    resp = gw.chat(request(max_tokens=50), TAGS, "rid")
    assert fake.calls == ["gpt-4o", "gpt-4o", "llama-3.3-70b-versatile"]
    llama = CATALOG.get("llama-3.3-70b-versatile")
    assert resp.headers[h.MODEL] == "llama-3.3-70b-versatile"
    assert resp.headers[h.FALLBACK] == "gpt-4o -> llama-3.3-70b-versatile"
    assert resp.headers[h.ATTEMPTS] == "3"
    assert Decimal(resp.headers[h.COST]) == llama.cost(USAGE)
    # Each attempt reserved its own model's worst case; only the first counts as a new request.
    assert [r for r, _ in gov.admitted] == ["rid", "rid.1", "rid.2"]
    prompt = tokens.count_chat_tokens([{"role": "user", "content": "hi"}], llama.encoding)
    assert gov.admitted[0][1] == CATALOG.get("gpt-4o").worst_case_cost(prompt, 50)
    assert gov.admitted[2][1] == llama.worst_case_cost(prompt, 50)
    assert gov.retry_flags == [False, True, True]  # type: ignore[attr-defined]
    assert gov.settled == [(Decimal(0), False), (Decimal(0), False), (llama.cost(USAGE), True)]
    rows = gov.entries
    assert [(e.request_id, e.attempt, e.parent_request_id, e.model, e.status) for e in rows] == [
        ("rid", 0, "rid", "gpt-4o", "provider_rate_limited"),
        ("rid.1", 1, "rid", "gpt-4o", "provider_rate_limited"),
        ("rid.2", 2, "rid", "llama-3.3-70b-versatile", "ok")]
    assert [e.cost_usd for e in rows] == [0, 0, llama.cost(USAGE)]
    # One jittered wait between the two tries of gpt-4o, none before switching provider.
    assert len(slept) == 1 and 0 <= slept[0] <= 0.2


def test_a_retry_after_longer_than_the_cap_goes_straight_to_the_fallback() -> None:
    gw, fake, _, slept = gateway(
        {"gpt-4o": [ProviderRateLimited("openai", "later", retry_after=30)],
         "llama-3.3-70b-versatile": [completion(usage=USAGE)]},
        fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)})
    gw.chat(request(), TAGS, "rid")
    assert fake.calls == ["gpt-4o", "llama-3.3-70b-versatile"]
    assert slept == []


def test_a_short_retry_after_is_honoured() -> None:
    gw, fake, _, slept = gateway(
        {"gpt-4o": [ProviderOverloaded("openai", "busy", retry_after=1.5), completion(usage=USAGE)]},
        fallbacks={})
    gw.chat(request(), TAGS, "rid")
    assert fake.calls == ["gpt-4o", "gpt-4o"]
    assert slept == [1.5]


@pytest.mark.parametrize("error", [ProviderBadRequest("openai", "bad"), ProviderError("openai", "auth?")])
def test_errors_that_a_retry_cannot_fix_are_not_retried(error: ProviderError) -> None:
    gw, fake, gov, _ = gateway({"gpt-4o": [error]}, fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)})
    with pytest.raises(type(error)):
        gw.chat(request(), TAGS, "rid")
    assert fake.calls == ["gpt-4o"]
    assert len(gov.entries) == 1


def test_a_fallback_whose_key_is_rejected_is_skipped_but_the_first_models_is_not() -> None:
    gw, fake, gov, _ = gateway(
        {"gpt-4o": [ProviderTimeout("openai", "t")], "gpt-4o-mini": [ProviderAuthError("openai", "401")],
         "llama-3.3-70b-versatile": [completion(usage=USAGE)]},
        fallbacks={"gpt-4o": ("gpt-4o-mini", "llama-3.3-70b-versatile")}, retry=RetryPolicy(attempts_per_model=1))
    assert gw.chat(request(), TAGS, "rid").headers[h.MODEL] == "llama-3.3-70b-versatile"
    assert [e.status for e in gov.entries] == ["provider_timeout", "provider_auth_error", "ok"]
    gw, fake, _, _ = gateway({"gpt-4o": [ProviderAuthError("openai", "401")]},
                             fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)})
    with pytest.raises(ProviderAuthError):
        gw.chat(request(), TAGS, "rid")
    assert fake.calls == ["gpt-4o"]


def test_when_every_attempt_fails_the_last_error_is_raised_after_max_attempts() -> None:
    gw, fake, gov, _ = gateway(
        {"gpt-4o": [ProviderTimeout("openai", "t1"), ProviderTimeout("openai", "t2")],
         "llama-3.3-70b-versatile": [ProviderOverloaded("groq", "o1"), completion(usage=USAGE)]},
        fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)}, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ProviderOverloaded) as info:
        gw.chat(request(), TAGS, "rid")
    assert fake.calls == ["gpt-4o", "gpt-4o", "llama-3.3-70b-versatile"]
    assert info.value.headers[h.COST] == "0"
    assert info.value.headers[h.REQUEST_ID] == "rid"
    assert [e.status for e in gov.entries] == ["provider_timeout", "provider_timeout", "provider_overloaded"]
    assert all(not ok for _, ok in gov.settled)


def test_the_fallback_header_turns_the_chain_off() -> None:
    gw, fake, _, _ = gateway({"gpt-4o": [ProviderTimeout("openai", "t")] * 2,
                              "llama-3.3-70b-versatile": [completion(usage=USAGE)]},
                             fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)})
    with pytest.raises(ProviderTimeout):
        gw.chat(request(), {**TAGS, "x-finops-fallback": "off"}, "rid")
    assert fake.calls == ["gpt-4o", "gpt-4o"]


def test_fallbacks_the_tier_forbids_or_the_budget_cannot_cover_are_skipped() -> None:
    gov = PickyGovernor(forbidden={"claude-sonnet-4-5"}, unaffordable={"gpt-4o-mini"})
    gw, fake, _, _ = gateway(
        {"gpt-4o": [ProviderTimeout("openai", "t")], "llama-3.3-70b-versatile": [completion(usage=USAGE)]},
        fallbacks={"gpt-4o": ("claude-sonnet-4-5", "gpt-4o-mini", "llama-3.3-70b-versatile")},
        retry=RetryPolicy(attempts_per_model=1), governor=gov)
    resp = gw.chat(request(), TAGS, "rid")
    assert fake.calls == ["gpt-4o", "llama-3.3-70b-versatile"]
    assert resp.headers[h.MODEL] == "llama-3.3-70b-versatile"


def test_the_first_attempts_budget_refusal_is_the_callers_429() -> None:
    gov = PickyGovernor(unaffordable={"gpt-4o"})
    gw, fake, _, _ = gateway({"gpt-4o": []}, fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)}, governor=gov)
    with pytest.raises(BudgetExceeded):
        gw.chat(request(), TAGS, "rid")
    assert fake.calls == []


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(attempts_per_model=5, max_attempts=5, base_delay_ms=100, max_delay_ms=500)
    plan = AttemptPlan([CATALOG.get("gpt-4o")], policy, jitter=lambda low, high: high)
    assert [plan.backoff(i) for i in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
    plan = AttemptPlan([CATALOG.get("gpt-4o")], policy, jitter=lambda low, high: low)
    assert plan.backoff(3) == 0.0
    assert [a.delay_s for a in plan] == [0.0, 0.0, 0.0, 0.0, 0.0]


def test_chain_skips_unknown_and_duplicate_models() -> None:
    first = CATALOG.get("gpt-4o")
    chain = chain_for(first, {"gpt-4o": ("nope", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini")},
                      lambda m: CATALOG.get(m) if m in CATALOG else None)
    assert [p.model for p in chain] == ["gpt-4o", "gpt-4o-mini"]


def test_the_prompt_is_counted_once_per_encoding_not_per_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[str] = []
    real = tokens.count_chat_tokens

    def counting(messages: Any, encoding: str) -> int:
        counted.append(encoding)
        return real(messages, encoding)

    monkeypatch.setattr(tokens, "count_chat_tokens", counting)
    gw, fake, _, _ = gateway(
        {"gpt-4o": [ProviderRateLimited("openai", "slow down"), ProviderRateLimited("openai", "slow down")],
         "llama-3.3-70b-versatile": [completion(usage=USAGE)]},
        fallbacks={"gpt-4o": ("llama-3.3-70b-versatile",)})
    gw.chat(request(max_tokens=50), TAGS, "rid")
    assert len(fake.calls) == 3
    encodings = [CATALOG.get("gpt-4o").encoding, CATALOG.get("llama-3.3-70b-versatile").encoding]
    assert sorted(counted) == sorted(set(encodings))
