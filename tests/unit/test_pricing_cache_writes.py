"""Prompt-cache writes (Anthropic, Bedrock) in the cost maths, upstream model ids, and the Bedrock catalog."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from finops import tokens
from finops.pricing import ModelPrice, Usage, load_catalog

M = 1_000_000
BEDROCK = {
    "bedrock/claude-sonnet-4-5": ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "3.30", "16.50", "0.33", "4.125"),
    "bedrock/claude-haiku-4-5": ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "1.10", "5.50", "0.11", "1.375"),
    "bedrock/nova-pro": ("us.amazon.nova-pro-v1:0", "0.80", "3.20", "0.20", None),
    "bedrock/nova-lite": ("us.amazon.nova-lite-v1:0", "0.06", "0.24", "0.015", None),
    "bedrock/llama-3-3-70b": ("us.meta.llama3-3-70b-instruct-v1:0", "0.72", "0.72", None, None),
}


def price(**kw: str) -> ModelPrice:
    return ModelPrice(model="m", provider="anthropic", input="3.00", output="15.00", context_window=10,
                      max_output_tokens=5, encoding="cl100k_base", effective_date="2025-01-01", source="https://x",
                      **kw)


def test_cache_writes_billed_at_the_write_rate() -> None:
    p = price(cached_input="0.30", cache_write_input="3.75")
    usage = Usage(prompt_tokens=M, cached_tokens=500_000, cache_write_tokens=300_000, completion_tokens=0)
    # 200k fresh * 3.00 + 500k read * 0.30 + 300k written * 3.75
    assert p.cost(usage) == Decimal("0.60") + Decimal("0.15") + Decimal("1.125")


def test_cache_writes_without_a_write_rate_are_billed_as_input() -> None:
    assert price().cost(Usage(prompt_tokens=M, cache_write_tokens=M)) == Decimal("3.00")


def test_cache_reads_and_writes_never_exceed_the_prompt() -> None:
    p = price(cached_input="0.30", cache_write_input="3.75")
    capped = p.cost(Usage(prompt_tokens=100, cached_tokens=80, cache_write_tokens=20))
    assert p.cost(Usage(prompt_tokens=100, cached_tokens=80, cache_write_tokens=10_000)) == capped
    assert p.cost(Usage(prompt_tokens=100, cached_tokens=10_000, cache_write_tokens=10_000)) == p.cost(
        Usage(prompt_tokens=100, cached_tokens=100))


def test_usage_as_openai_mentions_cache_writes_only_when_there_are_some() -> None:
    assert Usage(prompt_tokens=5, cached_tokens=2).as_openai()["prompt_tokens_details"] == {"cached_tokens": 2}
    assert Usage(prompt_tokens=5, cache_write_tokens=3).as_openai()["prompt_tokens_details"] == {
        "cached_tokens": 0, "cache_write_tokens": 3}


def test_upstream_id_defaults_to_the_catalog_name() -> None:
    assert price().upstream_id == "m"
    assert price(upstream_model="vendor.m-v1:0").upstream_id == "vendor.m-v1:0"


@pytest.mark.parametrize(("model", "write"), [("claude-sonnet-4-5", "3.75"), ("claude-haiku-4-5", "1.25")])
def test_anthropic_cache_write_prices(model: str, write: str) -> None:
    p = load_catalog().get(model)
    assert p.cache_write_input == Decimal(write)
    assert p.cache_write_input == p.input * Decimal("1.25")  # 5-minute cache writes: 1.25x base input
    assert p.upstream_id == model


@pytest.mark.parametrize("model", sorted(BEDROCK))
def test_bedrock_catalog(model: str) -> None:
    upstream, input_, output, cached, write = BEDROCK[model]
    p = load_catalog().get(model)
    assert p.provider == "bedrock"
    assert p.upstream_id == upstream
    assert (p.input, p.output) == (Decimal(input_), Decimal(output))
    assert p.cached_input == (None if cached is None else Decimal(cached))
    assert p.cache_write_input == (None if write is None else Decimal(write))
    assert p.source == "https://aws.amazon.com/bedrock/pricing/"
    date.fromisoformat(p.effective_date)
    assert p.encoding in tokens.SHIPPED_ENCODINGS
    assert p.max_output_tokens <= p.context_window
    assert upstream not in load_catalog()  # callers use the catalog name; the upstream id is not a second name
