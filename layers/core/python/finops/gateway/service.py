"""The request path of one chat completion: tags -> price -> call -> settle -> ledger -> respond.

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
from ..errors import ModelNotFound, ProviderError
from ..ledger.entry import LedgerEntry
from ..ledger.repository import LedgerRepository
from ..openai_schema import ChatCompletionRequest
from ..pricing import ModelPrice, PriceCatalog, Usage
from ..providers.base import ChatProvider
from ..providers.registry import PROVIDERS
from ..settings import Settings
from ..tags import CostTags, resolve_tags
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


def format_cost(cost: Decimal) -> str:
    """A cost as a plain decimal string (no exponent), e.g. ``0.000125``."""
    text = format(cost.normalize(), "f")
    return text if text not in ("-0", "") else "0"


class ChatGateway:
    def __init__(
        self,
        settings: Settings,
        catalog: PriceCatalog,
        providers: ProviderSet,
        ledger: LedgerRepository,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.providers = providers
        self.ledger = ledger
        self.now = now

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
                    "input": format_cost(price.input),
                    "output": format_cost(price.output),
                    "cached_input": None if price.cached_input is None else format_cost(price.cached_input),
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

    def resolve(self, request: ChatCompletionRequest) -> ModelPrice:
        price = self.catalog.get(request.model)
        if not self.providers.serves(price.provider):
            raise ModelNotFound(f"The model `{request.model}` is not served by this gateway.", param="model")
        return price

    def chat(self, request: ChatCompletionRequest, request_headers: Mapping[str, str],
             request_id: str) -> GatewayResponse:
        tags = resolve_tags(request_headers, self.settings)
        price = self.resolve(request)
        out_headers = {h.REQUEST_ID: request_id, h.MODEL: price.model}
        if tags.unallocated:
            out_headers[h.WARNING] = (
                f"untagged request booked to '{self.settings.unallocated}' "
                f"(missing or invalid: {', '.join(tags.unallocated)})"
            )
        started = self.now()
        clock = time.perf_counter()
        provider = self.providers.get(price.provider)
        try:
            completion = provider.complete(request.provider_payload(price.model))
        except ProviderError as exc:
            self._record(request, tags, price, request_id, started, clock, usage=Usage(),
                         cost=Decimal(0), status=exc.code, http_status=exc.status, error_code=exc.code)
            exc.headers.update(out_headers)
            exc.headers[h.COST] = "0"
            raise

        usage, source = completion.usage, "provider"
        if usage is None:
            usage, source = self._count_usage(request, price, completion.body), "estimated"
        cost = price.cost(usage)
        self._record(request, tags, price, request_id, started, clock, usage=usage, cost=cost,
                     status="ok", http_status=200, usage_source=source)
        out_headers[h.COST] = format_cost(cost)
        body = completion.body
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return GatewayResponse(200, completion_to_sse(body, include_usage), out_headers,
                                   content_type="text/event-stream")
        return GatewayResponse(200, body, out_headers)

    # --- helpers --------------------------------------------------------------------------------------

    @staticmethod
    def _count_usage(request: ChatCompletionRequest, price: ModelPrice, body: dict[str, Any]) -> Usage:
        prompt = tokens.count_chat_tokens([m.model_dump(exclude_none=True) for m in request.messages],
                                          price.encoding)
        text = "".join(str((c.get("message") or {}).get("content") or "") for c in body.get("choices", []))
        return Usage(prompt_tokens=prompt, completion_tokens=tokens.count_text(text, price.encoding))

    def _record(self, request: ChatCompletionRequest, tags: CostTags, price: ModelPrice, request_id: str,
                started: datetime, clock: float, *, usage: Usage, cost: Decimal, status: str,
                http_status: int, error_code: str | None = None, usage_source: str = "provider") -> None:
        entry = LedgerEntry(
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
        )
        try:
            self.ledger.append(entry)
        except Exception:
            # The repository spilled the whole row to the log before raising; the caller keeps its answer.
            logger.exception("ledger write failed", extra={"request_id": request_id})
