"""The price catalog (``data/prices.json``) and the cost of a call, in Decimal USD.

Prices are USD per 1M tokens. Token encodings for models that are not OpenAI's are an estimate used
only before the call (admission); what is billed is always the provider's reported usage.
"""

from __future__ import annotations

import importlib.resources
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, NonNegativeInt

from .errors import ModelNotFound

PER_TOKENS = Decimal(1_000_000)


def format_usd(amount: Decimal, places: int | None = None) -> str:
    """Dollars as a plain decimal string (no exponent, no trailing zeros), e.g. ``0.000125``; rounded to
    ``places`` decimals first if given."""
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places))
    text = format(amount.normalize(), "f")
    return text if text not in ("-0", "") else "0"


class Usage(BaseModel):
    """Tokens as the provider reports them (OpenAI ``usage`` semantics)."""

    prompt_tokens: NonNegativeInt = 0
    completion_tokens: NonNegativeInt = 0
    cached_tokens: NonNegativeInt = 0  # part of prompt_tokens billed at the cached-input rate
    cache_write_tokens: NonNegativeInt = 0  # part of prompt_tokens billed at the cache-write rate (Anthropic, Bedrock)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, int | dict[str, int]]:
        details = {"cached_tokens": self.cached_tokens}
        if self.cache_write_tokens:  # not an OpenAI field: an extra detail, only when there is one
            details["cache_write_tokens"] = self.cache_write_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "prompt_tokens_details": details}


class ModelPrice(BaseModel, frozen=True):
    model: str
    provider: str
    aliases: tuple[str, ...] = ()
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    cache_write_input: Decimal | None = Field(default=None, ge=0)  # prompt-cache writes (5-minute TTL rate)
    # The id the provider's API expects when it is not the catalog name (Bedrock inference profiles).
    upstream_model: str | None = None
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    encoding: str
    effective_date: str
    source: str

    @property
    def upstream_id(self) -> str:
        """The ``model`` to send to the provider."""
        return self.upstream_model or self.model

    def cost(self, usage: Usage) -> Decimal:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        write_rate = self.cache_write_input if self.cache_write_input is not None else self.input
        return (
            (usage.prompt_tokens - cached - written) * self.input
            + cached * cached_rate
            + written * write_rate
            + usage.completion_tokens * self.output
        ) / PER_TOKENS

    def worst_case_cost(self, prompt_tokens: int, max_tokens: int | None) -> Decimal:
        """Upper bound on a call's cost: the whole prompt at its dearest rate (uncached, or written to the prompt
        cache where that costs more, as Anthropic's 1.25x), and every output token allowed."""
        limit = self.max_output_tokens if max_tokens is None else min(max_tokens, self.max_output_tokens)
        prompt_rate = self.input if self.cache_write_input is None else max(self.input, self.cache_write_input)
        return (prompt_tokens * prompt_rate + limit * self.output) / PER_TOKENS


class PriceCatalog(BaseModel, frozen=True):
    version: str
    currency: str = "USD"
    unit: str
    models: tuple[ModelPrice, ...]

    def model_post_init(self, __context: object) -> None:
        index: dict[str, ModelPrice] = {}
        for price in self.models:
            for name in (price.model, *price.aliases):
                if name in index:
                    raise ValueError(f"model {name} is priced twice")
                index[name] = price
        object.__setattr__(self, "_index", index)

    def get(self, model: str) -> ModelPrice:
        price = self._index.get(model)  # type: ignore[attr-defined]
        if price is None:
            raise ModelNotFound(f"The model `{model}` does not exist or is not served by this gateway.",
                                param="model")
        return price

    def __contains__(self, model: object) -> bool:
        return model in self._index  # type: ignore[attr-defined]


@lru_cache(maxsize=4)
def load_catalog(path: str | None = None) -> PriceCatalog:
    raw = Path(path).read_text() if path else (
        importlib.resources.files("finops") / "data" / "prices.json").read_text()
    return PriceCatalog.model_validate(json.loads(raw, parse_float=Decimal))
