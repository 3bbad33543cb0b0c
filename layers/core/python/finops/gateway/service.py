"""The request path of one chat completion: key -> tags -> price -> admit -> call -> settle -> respond.

Pure orchestration over injected parts (settings, catalog, providers, ledger, clock); no AWS or HTTP
framework here, so it is tested without either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from .. import tokens
from ..budgets.governor import BudgetGovernor, Ticket, prompt_hash
from ..budgets.store import StoreUnavailable
from ..errors import (
    FinOpsError,
    InternalError,
    ModelNotAllowed,
    ModelNotFound,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from ..keys.service import KeyRecord, KeyService
from ..ledger.entry import LedgerEntry
from ..ledger.repository import LedgerRepository
from ..openai_schema import ChatCompletionRequest
from ..pricing import ModelPrice, PriceCatalog, Usage, format_usd
from ..providers.base import ChatProvider, Completion, StreamChunk
from ..providers.registry import PROVIDERS
from ..routing import ROUTE_HEADER, RouteDecision, Router
from ..settings import Settings
from ..tags import UNALLOCATED, CostTags, header, resolve_tags
from . import headers as h
from . import route_metrics
from .fallback import Attempt, AttemptPlan, chain_for
from .sse import completion_to_sse
from .streaming import SessionEvents, StreamingResponse, StreamSession

logger = Logger(child=True)


@dataclass
class GatewayResponse:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Call:
    """A request past authentication, tags and routing: what every attempt needs."""

    request: ChatCompletionRequest
    request_id: str
    key: KeyRecord
    tags: CostTags
    messages: list[dict[str, Any]]
    route: RouteDecision
    chain: list[ModelPrice]  # the routed model, then its usable fallbacks
    headers: dict[str, str]


@dataclass
class Done:
    """The attempt that answered (or is being booked), with its reservation."""

    attempt: Attempt
    request_id: str
    ticket: Ticket
    prompt_tokens: int
    started: datetime
    clock: float
    result: Any = None


class ProviderSet:
    """Adapters built on first use, one per configured provider, reused while the function is warm."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str, ChatProvider] = {}

    def serves(self, provider: str) -> bool:
        return provider in PROVIDERS and provider in self.settings.providers

    def get(self, provider: str) -> ChatProvider:
        if provider not in self._built:
            if not self.serves(provider):
                raise ModelNotFound(f"No provider `{provider}` is configured on this gateway.", param="model")
            cls = PROVIDERS[provider]
            self._built[provider] = cls(self.settings.providers[provider],
                                        secret_max_age=self.settings.secret_max_age_seconds)
        return self._built[provider]


class ChatGateway:
    def __init__(
        self,
        settings: Settings,
        catalog: PriceCatalog,
        providers: ProviderSet,
        ledger: LedgerRepository,
        governor: BudgetGovernor,
        keys: KeyService | None,
        router: Router | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.providers = providers
        self.ledger = ledger
        self.governor = governor
        self.keys = keys
        self.router = router
        self.now = now
        self.sleep = sleep
        self.anonymous = KeyRecord(key_id="anonymous", name="anonymous", tier=settings.anonymous_tier,
                                   projects=("*",), environments=("*",), created_at="1970-01-01T00:00:00Z")

    # --- GET /v1/models ------------------------------------------------------------------------------

    def list_models(self) -> dict[str, Any]:
        data = []
        for price in self.catalog.models:
            if not self.providers.serves(price.provider):
                continue
            data.append({
                "id": price.model,
                "object": "model",
                "created": 0,
                "owned_by": price.provider,
                "pricing": {
                    "currency": self.catalog.currency,
                    "unit": self.catalog.unit,
                    "input": format_usd(price.input),
                    "output": format_usd(price.output),
                    "cached_input": None if price.cached_input is None else format_usd(price.cached_input),
                    "effective_date": price.effective_date,
                    "source": price.source,
                    "price_version": self.catalog.version,
                },
                "context_window": price.context_window,
                "max_output_tokens": price.max_output_tokens,
                "aliases": list(price.aliases),
            })
        return {"object": "list", "data": data}

    # --- POST /v1/chat/completions ----------------------------------------------------------------------

    def authenticate(self, request_headers: Mapping[str, str]) -> KeyRecord:
        if self.keys is None:
            return self.anonymous
        return self.keys.authenticate(header(request_headers, "Authorization"))

    def route(self, messages: list[dict[str, Any]], model: str, tier: str,
              request_headers: Mapping[str, str]) -> RouteDecision:
        """The model to call: the router's choice, or the requested one when no router is configured."""
        if self.router is None:
            return RouteDecision(model=model, requested_model=model, strategy=None, score=None, model_class=None,
                                 reason="no router", counterfactual_model=model)
        return self.router.route(messages, model, tier, header(request_headers, ROUTE_HEADER))

    def resolve(self, model: str) -> ModelPrice:
        price = self.catalog.get(model)
        if not self.providers.serves(price.provider):
            raise ModelNotFound(f"The model `{model}` is not served by this gateway.", param="model")
        return price

    def chat(self, request: ChatCompletionRequest, request_headers: Mapping[str, str], request_id: str, *,
             streaming: bool = False) -> GatewayResponse | StreamingResponse:
        """One chat completion. ``streaming``: the transport can stream (the response-streaming function), so
        ``stream: true`` is answered as the provider produces; otherwise it gets the whole SSE body at once."""
        try:
            call = self._prepare(request, request_headers, request_id)
            if request.stream and streaming:
                return self._stream(call)
            return self._complete(call)
        except FinOpsError:
            raise
        except Exception as exc:  # a bug: the caller gets a typed 500 in OpenAI's envelope, not a traceback
            logger.exception("chat completion crashed")
            raise InternalError("The gateway failed to handle the request.") from exc

    def _prepare(self, request: ChatCompletionRequest, request_headers: Mapping[str, str],
                 request_id: str) -> Call:
        key = self.authenticate(request_headers)
        tags = resolve_tags(request_headers, self.settings)
        key.check_bindings(tags)
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        route = self.route(messages, request.model, key.tier, request_headers)
        route_metrics.record(key.tier, route)
        price = self.resolve(route.model)
        self.governor.check_model(key, price.model)
        out_headers = {h.REQUEST_ID: request_id, h.MODEL: price.model}
        if route.routed or route.downgraded:
            out_headers[h.ROUTE] = f"{route.strategy or 'tier'}; {route.reason}"[:200]
        if tags.unallocated:
            out_headers[h.WARNING] = (
                f"untagged request booked to '{UNALLOCATED}' "
                f"(missing or invalid: {', '.join(tags.unallocated)})"
            )
        fallback_off = (header(request_headers, h.FALLBACK) or "").strip().lower() in ("off", "false", "0", "none")
        chain = [price] if fallback_off else chain_for(price, self.settings.fallbacks, lambda m: self._usable(key, m))
        return Call(request, request_id, key, tags, messages, route, chain, out_headers)

    def _usable(self, key: KeyRecord, model: str) -> ModelPrice | None:
        """A fallback model this caller may use and this gateway serves, else None (it is skipped)."""
        try:
            price = self.resolve(model)
            self.governor.check_model(key, price.model)
        except (ModelNotFound, ModelNotAllowed):
            return None
        return price

    def _complete(self, call: Call) -> GatewayResponse:
        request = call.request
        done = self._attempts(call, request.output_limit,
                              lambda price, provider: provider.complete(request.provider_payload(price.upstream_id)))
        completion: Completion = done.result
        price = done.attempt.price

        def measure() -> tuple[Usage, str]:
            if completion.usage is not None:
                return completion.usage, "provider"
            return self._count_usage(done.prompt_tokens, price, completion.body), "estimated"

        entry = self.metered_entry(call, done, measure, [done.ticket], status="ok",
                                   known=completion.usage or Usage(prompt_tokens=done.prompt_tokens))
        cost = entry.cost_usd
        out_headers = {**call.headers, **self.settle([done.ticket], entry, succeeded=True)}
        out_headers[h.COST] = format_usd(cost)
        body = completion.body
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            usage_chunk = (body.get("usage") or entry.usage.as_openai()) if include_usage else None
            return GatewayResponse(200, completion_to_sse(body, usage_chunk), out_headers,
                                   content_type="text/event-stream")
        return GatewayResponse(200, body, out_headers)

    def _stream(self, call: Call) -> StreamingResponse:
        limit = call.request.output_limit
        reserve = limit or self.settings.stream.reserve_tokens

        def open_stream(price: ModelPrice, provider: ChatProvider) -> tuple[Iterator[StreamChunk], StreamChunk]:
            chunks = provider.stream(call.request.provider_payload(price.upstream_id))
            try:
                first = next(chunks)
            except StopIteration:
                raise ProviderUnavailable(price.provider, f"{price.provider} ended the stream before any chunk.",
                                          upstream_status=200) from None
            return chunks, first

        done = self._attempts(call, reserve, open_stream)
        session = StreamSession(self, call, done, reserved_tokens=reserve, extendable=limit is None)
        headers = {**call.headers, **done.ticket.headers}
        return StreamingResponse(200, headers, SessionEvents(session))

    def _attempts(self, call: Call, output_limit: int | None,
                  invoke: Callable[[ModelPrice, ChatProvider], Any]) -> Done:
        """Try the call's models until one answers: admit (the reservation follows each model's price), call,
        and book every failed attempt (cost 0, reservation released). Raises the last error if none answers."""
        plan = AttemptPlan(call.chain, self.settings.retry)
        last: ProviderError | None = None
        prompt_counts: dict[str, int] = {}  # encoding -> the prompt's tokens: counted once, not per retry
        for attempt in plan:
            if attempt.delay_s:
                self.sleep(attempt.delay_s)
            price = attempt.price
            request_id = call.request_id if attempt.number == 0 else f"{call.request_id}.{attempt.number}"
            if price.encoding not in prompt_counts:
                prompt_counts[price.encoding] = tokens.count_chat_tokens(call.messages, price.encoding)
            prompt_tokens = prompt_counts[price.encoding]
            worst = price.worst_case_cost(prompt_tokens, output_limit) * call.request.n
            started = self.now()
            try:
                ticket = self.governor.admit(
                    request_id, call.key, call.tags, price.model, worst,
                    prompt_hash(price.model, call.messages) if attempt.number == 0 else None,
                    reservation=self.reservation_payload(call, price, started), retry=attempt.number > 0)
            except RateLimited:
                if last is None:
                    raise
                continue  # this fallback does not fit the budget: try a cheaper one
            done = Done(attempt, request_id, ticket, prompt_tokens, started, time.perf_counter())
            try:
                done.result = invoke(price, self.providers.get(price.provider))
            except Exception as exc:
                error = exc if isinstance(exc, ProviderError) else InternalError(
                    "The gateway failed to call the provider.")
                if error is not exc:
                    logger.exception("provider call crashed")
                entry = self.ledger_entry(call, done, usage=Usage(), cost=Decimal(0), status=error.code,
                                          http_status=error.status, error_code=error.code)
                settled = self.settle([ticket], entry, succeeded=False)
                # A fallback whose provider rejects our key (not configured yet) is skipped like a busy one.
                if isinstance(error, ProviderError) and (
                        error.retryable or (attempt.fallback and isinstance(error, ProviderAuthError))):
                    logger.warning("provider attempt failed", extra={"attempt": attempt.number, "model": price.model,
                                                                     "code": error.code})
                    plan.failed(error)
                    last = error
                    continue
                self._fail(error, call, attempt, settled)
                if error is exc:
                    raise
                raise error from exc
            if attempt.number:
                call.headers[h.ATTEMPTS] = str(attempt.number + 1)
            if attempt.fallback:
                call.headers[h.MODEL] = price.model
                call.headers[h.FALLBACK] = f"{call.chain[0].model} -> {price.model}"
            return done
        assert last is not None  # the plan always yields the first attempt
        self._fail(last, call, None, {})
        raise last

    @staticmethod
    def _fail(error: FinOpsError, call: Call, attempt: Attempt | None, settled: dict[str, str]) -> None:
        error.headers.update(call.headers)
        error.headers[h.COST] = "0"
        error.headers.update(settled)

    # --- bookkeeping, also used by the stream session (gateway/streaming.py) ----------------------------

    @staticmethod
    def reservation_payload(call: Call, price: ModelPrice, started: datetime) -> dict[str, Any]:
        """What a reservation records, so the reconciler can book a call whose function died."""
        tags, key = call.tags, call.key
        return {"project_id": tags.project_id, "user_id": tags.user_id, "environment": tags.environment,
                "department_id": tags.department_id, "model": price.model, "provider": price.provider,
                "key_id": key.key_id, "tier": key.tier, "ts": started.isoformat(),
                "parent_request_id": call.request_id}

    def settle(self, tickets: list[Ticket], entry: LedgerEntry, succeeded: bool) -> dict[str, str]:
        """Refund the reservation(s) and write the ledger row in one write; never loses the row, never raises."""
        try:
            return self.governor.settle_all(tickets, entry.cost_usd, succeeded, self.ledger.item(entry))
        except Exception as exc:
            if not isinstance(exc, StoreUnavailable):
                logger.exception("settlement crashed")
            # The reservation stays until the row is restored from the log (the reconciler then settles it with
            # the row's cost) or it expires (the reconciler books or releases it).
            self.ledger.spill(entry, exc)
            return {}

    def metered_entry(self, call: Call, done: Done, measure: Callable[[], tuple[Usage, str]], tickets: list[Ticket],
                      *, status: str, known: Usage, error_code: str | None = None) -> LedgerEntry:
        """The row of an attempt that answered: priced at the usage ``measure`` returns (with its source). If
        counting or pricing fails, the provider was still paid: the row books what ``tickets`` reserved (with the
        ``known`` usage), as the reconciler books a call it cannot measure, and is never dropped."""
        try:
            usage, source = measure()
            return self.ledger_entry(call, done, usage=usage, cost=done.attempt.price.cost(usage), status=status,
                                     http_status=200, error_code=error_code, usage_source=source)
        except Exception:
            logger.exception("metering failed: the call is booked at its reserved worst case")
            reserved = sum((t.worst_usd for t in tickets), Decimal(0))
            return self.ledger_entry(call, done, usage=known, cost=reserved, status=status, http_status=200,
                                     error_code=error_code or "metering_failed", usage_source="reservation",
                                     counterfactual=reserved)

    def ledger_entry(self, call: Call, done: Done, *, usage: Usage, cost: Decimal, status: str, http_status: int,
                     error_code: str | None = None, usage_source: str = "provider",
                     counterfactual: Decimal | None = None) -> LedgerEntry:
        """The ledger row of one attempt (``done``) of ``call``."""
        price, route, tags, key, ticket = done.attempt.price, call.route, call.tags, call.key, done.ticket
        routed = route.routed or route.downgraded
        if counterfactual is None:
            counterfactual = self._counterfactual(route, price, usage, cost)
        return LedgerEntry(
            request_id=done.request_id,
            ts=done.started,
            project_id=tags.project_id,
            user_id=tags.user_id,
            environment=tags.environment,
            department_id=tags.department_id,
            unallocated_tags=tags.unallocated,
            requested_model=call.request.model,
            model=price.model,
            provider=price.provider,
            input_tokens=usage.prompt_tokens,
            cached_input_tokens=usage.cached_tokens,
            cache_write_input_tokens=usage.cache_write_tokens,
            output_tokens=usage.completion_tokens,
            usage_source=usage_source,
            cost_usd=cost,
            price_version=self.catalog.version,
            status=status,
            http_status=http_status,
            error_code=error_code,
            latency_ms=max(0, round((time.perf_counter() - done.clock) * 1000)),
            stream=call.request.stream,
            key_id=key.key_id,
            tier=key.tier,
            reserved_usd=ticket.worst_usd,
            tax_usd=ticket.tax_on(cost),
            budget_bypassed=ticket.bypassed,
            counterfactual_usd=counterfactual,
            route_strategy=("downgrade" if route.downgraded else route.strategy or "tier") if routed else None,
            attempt=done.attempt.number,
            parent_request_id=call.request_id,
        )

    # --- helpers --------------------------------------------------------------------------------------

    @staticmethod
    def _count_usage(prompt_tokens: int, price: ModelPrice, body: dict[str, Any]) -> Usage:
        """The provider sent no usage: the prompt as counted before the call, the answer counted now."""
        text = "".join(str((c.get("message") or {}).get("content") or "") for c in body.get("choices", []))
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=tokens.count_text(text, price.encoding))

    def _counterfactual(self, route: RouteDecision, price: ModelPrice, usage: Usage, cost: Decimal) -> Decimal:
        """What the same usage would have cost on the model the call would have used without the router."""
        if route.counterfactual_model == price.model or route.counterfactual_model not in self.catalog:
            return cost
        return self.catalog.get(route.counterfactual_model).cost(usage)
