"""The request path of one chat completion: key -> tags -> price -> admit -> call -> settle -> respond.

Pure orchestration over injected parts (settings, catalog, providers, ledger, clock); no AWS or HTTP
framework here, so it is tested without either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from .. import tokens
from ..budgets.governor import BudgetGovernor, Ticket, prompt_hash
from ..budgets.store import StoreUnavailable
from ..errors import InternalError, ModelNotFound, ProviderError
from ..keys.service import KeyRecord, KeyService
from ..ledger.entry import LedgerEntry
from ..ledger.repository import LedgerRepository
from ..openai_schema import ChatCompletionRequest
from ..pricing import ModelPrice, PriceCatalog, Usage, format_usd
from ..providers.base import ChatProvider
from ..providers.registry import PROVIDERS
from ..routing import ROUTE_HEADER, RouteDecision, Router
from ..settings import Settings
from ..tags import CostTags, header, resolve_tags
from . import headers as h
from .sse import completion_to_sse

logger = Logger(child=True)


@dataclass
class GatewayResponse:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


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
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.providers = providers
        self.ledger = ledger
        self.governor = governor
        self.keys = keys
        self.router = router
        self.now = now
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

    def chat(self, request: ChatCompletionRequest, request_headers: Mapping[str, str],
             request_id: str) -> GatewayResponse:
        key = self.authenticate(request_headers)
        tags = resolve_tags(request_headers, self.settings)
        key.check_bindings(tags, self.settings.unallocated)
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        route = self.route(messages, request.model, key.tier, request_headers)
        price = self.resolve(route.model)
        self.governor.check_model(key, price.model)
        out_headers = {h.REQUEST_ID: request_id, h.MODEL: price.model}
        if route.routed or route.downgraded:
            out_headers[h.ROUTE] = f"{route.strategy or 'tier'}; {route.reason}"[:200]
        if tags.unallocated:
            out_headers[h.WARNING] = (
                f"untagged request booked to '{self.settings.unallocated}' "
                f"(missing or invalid: {', '.join(tags.unallocated)})"
            )

        prompt_tokens = tokens.count_chat_tokens(messages, price.encoding)
        worst = price.worst_case_cost(prompt_tokens, request.output_limit) * request.n
        started = self.now()
        ticket = self.governor.admit(
            request_id, key, tags, price.model, worst, prompt_hash(price.model, messages),
            reservation={"project_id": tags.project_id, "user_id": tags.user_id, "environment": tags.environment,
                         "department_id": tags.department_id, "model": price.model, "provider": price.provider,
                         "key_id": key.key_id, "tier": key.tier, "ts": started.isoformat()})
        clock = time.perf_counter()
        provider = self.providers.get(price.provider)
        try:
            completion = provider.complete(request.provider_payload(price.model))
        except Exception as exc:
            # Whatever failed, the attempt is booked at cost 0 and the reservation released in full.
            error = exc if isinstance(exc, ProviderError) else InternalError("The gateway failed to call the provider.")
            if error is not exc:
                logger.exception("provider call crashed")
            entry = self._entry(request, key, tags, price, route, ticket, request_id, started, clock, usage=Usage(),
                                cost=Decimal(0), status=error.code, http_status=error.status, error_code=error.code)
            error.headers.update(out_headers)
            error.headers[h.COST] = "0"
            error.headers.update(self._settle(ticket, entry, succeeded=False))
            if error is exc:
                raise
            raise error from exc

        usage, source = completion.usage, "provider"
        if usage is None:
            usage, source = self._count_usage(prompt_tokens, price, completion.body), "estimated"
        cost = price.cost(usage)
        entry = self._entry(request, key, tags, price, route, ticket, request_id, started, clock, usage=usage,
                            cost=cost, status="ok", http_status=200, usage_source=source)
        out_headers.update(self._settle(ticket, entry, succeeded=True))
        out_headers[h.COST] = format_usd(cost)
        body = completion.body
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            usage_chunk = (body.get("usage") or usage.as_openai()) if include_usage else None
            return GatewayResponse(200, completion_to_sse(body, usage_chunk), out_headers,
                                   content_type="text/event-stream")
        return GatewayResponse(200, body, out_headers)

    # --- helpers --------------------------------------------------------------------------------------

    def _settle(self, ticket: Ticket, entry: LedgerEntry, succeeded: bool) -> dict[str, str]:
        """Refund the reservation and write the ledger row in one write; never loses the row."""
        try:
            return self.governor.settle(ticket, entry.cost_usd, succeeded, self.ledger.item(entry))
        except StoreUnavailable as exc:
            # The reservation stays until the reconciler books or releases it; the row goes to the log.
            self.ledger.spill(entry, exc)
            return {}

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

    def _entry(self, request: ChatCompletionRequest, key: KeyRecord, tags: CostTags, price: ModelPrice,
               route: RouteDecision, ticket: Ticket, request_id: str, started: datetime, clock: float, *,
               usage: Usage, cost: Decimal, status: str, http_status: int, error_code: str | None = None,
               usage_source: str = "provider") -> LedgerEntry:
        return LedgerEntry(
            request_id=request_id,
            ts=started,
            project_id=tags.project_id,
            user_id=tags.user_id,
            environment=tags.environment,
            department_id=tags.department_id,
            unallocated_tags=tags.unallocated,
            requested_model=request.model,
            model=price.model,
            provider=price.provider,
            input_tokens=usage.prompt_tokens,
            cached_input_tokens=usage.cached_tokens,
            output_tokens=usage.completion_tokens,
            usage_source=usage_source,
            cost_usd=cost,
            price_version=self.catalog.version,
            status=status,
            http_status=http_status,
            error_code=error_code,
            latency_ms=max(0, round((time.perf_counter() - clock) * 1000)),
            stream=request.stream,
            key_id=key.key_id,
            tier=key.tier,
            reserved_usd=ticket.worst_usd,
            tax_usd=ticket.tax_on(cost),
            budget_bypassed=ticket.bypassed,
            counterfactual_usd=self._counterfactual(route, price, usage, cost),
            route_strategy=("downgrade" if route.downgraded else route.strategy or "tier") if route.routed
            or route.downgraded else None,
        )
