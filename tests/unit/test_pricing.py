from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from finops import tokens
from finops.errors import ModelNotFound, NotFound
from finops.pricing import ModelPrice, PriceCatalog, Usage, load_catalog
from hypothesis import given, settings
from hypothesis import strategies as st

REQUIRED = {
    "gpt-4o": "openai",
    "gpt-4o-mini": "openai",
    "gpt-3.5-turbo": "openai",
    "llama-3.3-70b-versatile": "groq",
    "llama-3.1-8b-instant": "groq",
    "claude-sonnet-4-5": "anthropic",
    "claude-haiku-4-5": "anthropic",
}
M = 1_000_000


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return load_catalog()


@pytest.mark.parametrize(("model", "provider"), sorted(REQUIRED.items()))
def test_required_models_are_priced_with_provenance(catalog: PriceCatalog, model: str, provider: str) -> None:
    price = catalog.get(model)
    assert price.model == model
    assert price.provider == provider
    date.fromisoformat(price.effective_date)
    assert price.source.startswith("https://")
    assert isinstance(price.input, Decimal)
    assert isinstance(price.output, Decimal)
    assert price.output >= price.input > 0
    assert price.encoding in tokens.SHIPPED_ENCODINGS
    assert price.max_output_tokens <= price.context_window


def test_catalog_metadata(catalog: PriceCatalog) -> None:
    date.fromisoformat(catalog.version)
    assert catalog.currency == "USD"
    assert catalog.unit == "USD per 1M tokens"


@pytest.mark.parametrize(("model", "input_", "output", "cached"), [
    ("gpt-4o", "2.50", "10.00", "1.25"),
    ("gpt-4o-mini", "0.15", "0.60", "0.075"),
    ("gpt-3.5-turbo", "0.50", "1.50", None),
    ("llama-3.3-70b-versatile", "0.59", "0.79", None),
    ("llama-3.1-8b-instant", "0.05", "0.08", None),
    ("claude-sonnet-4-5", "3.00", "15.00", "0.30"),
    ("claude-haiku-4-5", "1.00", "5.00", "0.10"),
])
def test_list_prices(catalog: PriceCatalog, model: str, input_: str, output: str, cached: str | None) -> None:
    price = catalog.get(model)
    assert price.input == Decimal(input_)
    assert price.output == Decimal(output)
    assert price.cached_input == (None if cached is None else Decimal(cached))


def test_one_million_input_tokens_of_gpt4o_cost_exactly_2_50(catalog: PriceCatalog) -> None:
    cost = catalog.get("gpt-4o").cost(Usage(prompt_tokens=M))
    assert isinstance(cost, Decimal)
    assert cost == Decimal("2.50")


def test_costs_are_exact_decimals(catalog: PriceCatalog) -> None:
    cost = catalog.get("gpt-4o-mini").cost(Usage(prompt_tokens=27, completion_tokens=24))
    assert cost == Decimal("0.00001845")  # 27 * 0.15 + 24 * 0.60 = 18.45 per 1M
    one = catalog.get("gpt-4o").cost(Usage(prompt_tokens=1, completion_tokens=1))
    assert one == Decimal("0.0000125")
    assert str(catalog.get("llama-3.1-8b-instant").cost(Usage(prompt_tokens=3, completion_tokens=7))) == "7.1E-7"
    # A float would not survive this: 0.1 + 0.2 cents style accumulation stays exact.
    total = sum((catalog.get("gpt-4o-mini").cost(Usage(prompt_tokens=1)) for _ in range(10)), Decimal(0))
    assert total == Decimal("0.0000015")


def test_output_tokens_billed_at_output_rate(catalog: PriceCatalog) -> None:
    assert catalog.get("gpt-4o").cost(Usage(completion_tokens=M)) == Decimal("10")
    assert catalog.get("claude-sonnet-4-5").cost(Usage(prompt_tokens=M, completion_tokens=M)) == Decimal("18")


def test_cached_input_billed_at_the_cached_rate(catalog: PriceCatalog) -> None:
    price = catalog.get("gpt-4o")
    # 600k uncached * 2.50 + 400k cached * 1.25 = 1.50 + 0.50
    assert price.cost(Usage(prompt_tokens=M, cached_tokens=400_000)) == Decimal("2.00")
    assert price.cost(Usage(prompt_tokens=M, cached_tokens=M)) == Decimal("1.25")


def test_cached_tokens_beyond_prompt_are_capped(catalog: PriceCatalog) -> None:
    price = catalog.get("gpt-4o")
    assert price.cost(Usage(prompt_tokens=100, cached_tokens=10_000)) == price.cost(
        Usage(prompt_tokens=100, cached_tokens=100))


def test_model_without_cached_rate_bills_cached_as_input(catalog: PriceCatalog) -> None:
    price = catalog.get("gpt-3.5-turbo")
    assert price.cost(Usage(prompt_tokens=M, cached_tokens=M)) == Decimal("0.50")


@pytest.mark.parametrize(("alias", "model"), [
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-2024-11-20", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
])
def test_aliases_resolve(catalog: PriceCatalog, alias: str, model: str) -> None:
    assert alias in catalog
    assert catalog.get(alias) is catalog.get(model)


@pytest.mark.parametrize("model", ["gpt-5", "GPT-4O", "gpt-4o ", "", "claude-3-opus"])
def test_unknown_model_is_model_not_found(catalog: PriceCatalog, model: str) -> None:
    assert model not in catalog
    with pytest.raises(ModelNotFound) as info:
        catalog.get(model)
    assert isinstance(info.value, NotFound)
    assert info.value.status == 404
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"


def test_worst_case_uses_the_model_limit_when_uncapped(catalog: PriceCatalog) -> None:
    price = catalog.get("gpt-4o")
    assert price.worst_case_cost(1000, None) == (1000 * Decimal("2.50") + 16384 * Decimal("10.00")) / M


def test_worst_case_caps_max_tokens_at_the_model_limit(catalog: PriceCatalog) -> None:
    price = catalog.get("gpt-3.5-turbo")
    assert price.worst_case_cost(10, 1_000_000) == price.worst_case_cost(10, 4096)
    assert price.worst_case_cost(10, 100) == (10 * Decimal("0.50") + 100 * Decimal("1.50")) / M


@settings(deadline=None, max_examples=200)
@given(
    model=st.sampled_from(sorted(p.model for p in load_catalog().models)),
    prompt=st.integers(0, 200_000),
    cached=st.integers(0, 200_000),
    written=st.integers(0, 200_000),
    completion=st.integers(0, 200_000),
    max_tokens=st.one_of(st.none(), st.integers(1, 200_000)),
)
def test_worst_case_bounds_every_allowed_outcome(model: str, prompt: int, cached: int, written: int,
                                                 completion: int, max_tokens: int | None) -> None:
    price = load_catalog().get(model)
    limit = price.max_output_tokens if max_tokens is None else min(max_tokens, price.max_output_tokens)
    completion = min(completion, limit)
    actual = price.cost(Usage(prompt_tokens=prompt, cached_tokens=cached, cache_write_tokens=written,
                              completion_tokens=completion))
    bound = price.worst_case_cost(prompt, max_tokens)
    assert Decimal(0) <= actual <= bound
    writes_cost_more = price.cache_write_input is not None and price.cache_write_input > price.input
    if cached == 0 and completion == limit and (written >= prompt if writes_cost_more else written == 0):
        assert actual == bound


def test_worst_case_covers_a_prompt_written_to_the_cache() -> None:
    price = next(p for p in load_catalog().models if p.cache_write_input and p.cache_write_input > p.input)
    everything_written = price.cost(Usage(prompt_tokens=10_000, cache_write_tokens=10_000, completion_tokens=100))
    assert price.worst_case_cost(10_000, 100) == everything_written
    assert everything_written > price.cost(Usage(prompt_tokens=10_000, completion_tokens=100))


def test_usage_total_and_validation() -> None:
    assert Usage(prompt_tokens=3, completion_tokens=4).total_tokens == 7
    with pytest.raises(ValueError):
        Usage(prompt_tokens=-1)


def test_duplicate_names_are_refused() -> None:
    base = {"provider": "openai", "input": "1", "output": "2", "context_window": 10, "max_output_tokens": 5,
            "encoding": "cl100k_base", "effective_date": "2025-01-01", "source": "https://x"}
    with pytest.raises(ValueError, match="priced twice"):
        PriceCatalog(version="v", unit="u", models=(
            ModelPrice(model="a", **base), ModelPrice(model="b", aliases=("a",), **base)))


def test_negative_price_is_refused() -> None:
    with pytest.raises(ValueError):
        ModelPrice(model="a", provider="p", input="-1", output="1", context_window=1, max_output_tokens=1,
                   encoding="cl100k_base", effective_date="2025-01-01", source="s")


def test_catalog_path_override(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"version": "2030-01-01", "unit": "USD per 1M tokens", "models": [{
        "model": "house-model", "provider": "openai", "input": "0.1", "output": "0.3",
        "context_window": 1000, "max_output_tokens": 100, "encoding": "cl100k_base",
        "effective_date": "2030-01-01", "source": "https://example.invalid/prices"}]}))
    custom = load_catalog(str(path))
    assert custom.version == "2030-01-01"
    assert "house-model" in custom
    assert "gpt-4o" not in custom
    # Prices in the file are read as Decimal even when written as JSON numbers.
    path2 = tmp_path / "numbers.json"
    path2.write_text('{"version": "v", "unit": "u", "models": [{"model": "m", "provider": "openai", '
                     '"input": 0.1, "output": 0.3, "context_window": 1000, "max_output_tokens": 100, '
                     '"encoding": "cl100k_base", "effective_date": "2030-01-01", "source": "s"}]}')
    assert load_catalog(str(path2)).get("m").cost(Usage(prompt_tokens=3)) == Decimal("0.0000003")
