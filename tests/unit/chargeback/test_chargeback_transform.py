"""Ledger row -> usage row: rounding once at the pinned scale, the exact split of cost by token direction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from finops.chargeback import periods, schema
from finops.chargeback.requests import ExportDayRequest, FocusExportRequest
from finops.chargeback.transform import NULL, QUANTUM, PriceBook, Totals, money, split_cost, usage_row
from finops.errors import InvalidRequest
from finops.pricing import Usage, load_catalog
from hypothesis import given, settings
from hypothesis import strategies as st

CATALOG = load_catalog()


def row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        request_id="req-1", ts=datetime(2026, 11, 29, 14, 30, 0, 123456, tzinfo=UTC), kind="chat",
        department_id="retail", project_id="checkout-web", user_id="alice", environment="production",
        unallocated_tags=(), key_id="k1", tier="pro", requested_model="gpt-4o", model="gpt-4o-mini",
        provider="openai", route_strategy="cheapest", price_version=CATALOG.version, status="ok", http_status=200,
        error_code=None, usage_source="provider", stream=False, budget_bypassed=False, latency_ms=42,
        input_tokens=1000, cached_input_tokens=400, output_tokens=250, cost_usd=Decimal("0.000255"),
        tax_usd=Decimal(0), counterfactual_usd=Decimal("0.0045"), reserved_usd=Decimal("0.01"))
    base.update(kw)
    return base


def by_column(values: list[str]) -> dict[str, str]:
    assert len(values) == len(schema.USAGE_COLUMNS)
    return {c.name: v for c, v in zip(schema.USAGE_COLUMNS, values, strict=True)}


def test_money_rounds_half_up_to_ten_places() -> None:
    assert money(Decimal("0.00000000005")) == Decimal("1E-10")
    assert money(Decimal("0.000000000049999")) == 0
    assert money(Decimal("1.23456789012345")) == Decimal("1.2345678901")
    assert money(Decimal("-0.00000000005")) == Decimal("-1E-10")
    assert money(Decimal("1E-15")).as_tuple().exponent == -10


def test_a_call_priced_by_the_catalog_splits_into_exactly_tokens_times_list_price() -> None:
    price = CATALOG.get("gpt-4o-mini")
    usage = Usage(prompt_tokens=1000, cached_tokens=400, completion_tokens=250)
    cost = price.cost(usage)
    values = by_column(usage_row(row(cost_usd=cost), PriceBook(CATALOG)))
    assert Decimal(values["input_cost_usd"]) == 600 * price.input / 1_000_000
    assert Decimal(values["cached_input_cost_usd"]) == 400 * price.cached_input / 1_000_000
    assert Decimal(values["output_cost_usd"]) == 250 * price.output / 1_000_000
    assert (Decimal(values["input_price_usd_per_mtok"]), Decimal(values["cached_input_price_usd_per_mtok"]),
            Decimal(values["output_price_usd_per_mtok"])) == (price.input, price.cached_input, price.output)
    assert Decimal(values["cost_usd"]) == cost


def test_prompt_cache_writes_get_their_own_direction_at_their_own_rate() -> None:
    price = next(p for p in CATALOG.models if p.cache_write_input and p.cache_write_input > p.input)
    usage = Usage(prompt_tokens=5000, cached_tokens=1000, cache_write_tokens=3000, completion_tokens=200)
    cost = price.cost(usage)
    values = by_column(usage_row(row(model=price.model, provider=price.provider, input_tokens=5000,
                                     cached_input_tokens=1000, cache_write_input_tokens=3000,
                                     output_tokens=200, cost_usd=cost), PriceBook(CATALOG)))
    assert values["cache_write_input_tokens"] == "3000"
    assert Decimal(values["input_cost_usd"]) == 1000 * price.input / 1_000_000
    assert Decimal(values["cached_input_cost_usd"]) == 1000 * price.cached_input / 1_000_000  # type: ignore[operator]
    assert Decimal(values["cache_write_input_cost_usd"]) == 3000 * price.cache_write_input / 1_000_000
    assert Decimal(values["cache_write_input_price_usd_per_mtok"]) == price.cache_write_input
    assert sum(Decimal(values[k]) for k in ("input_cost_usd", "cached_input_cost_usd", "cache_write_input_cost_usd",
                                            "output_cost_usd")) == Decimal(values["cost_usd"]) == money(cost)
    # a row from before the column existed reads as no cache writes
    old = row(model=price.model, input_tokens=5000, cached_input_tokens=1000, cost_usd=cost)
    assert by_column(usage_row(old, PriceBook(CATALOG)))["cache_write_input_tokens"] == "0"


def test_a_model_without_a_cached_rate_prices_cached_tokens_as_input() -> None:
    book = PriceBook(CATALOG)
    price = CATALOG.get("gpt-3.5-turbo")
    assert price.cached_input is None
    assert price.cache_write_input is None
    assert book.rates("gpt-3.5-turbo") == (price.input, price.input, price.input, price.output)
    assert book.rates("no-such-model") is None


@settings(max_examples=300, deadline=None)
@given(cost=st.decimals(min_value=0, max_value=Decimal("1e6"), places=10),
       weights=st.tuples(*[st.decimals(min_value=0, max_value=Decimal("1e9"), places=6)] * 4))
def test_split_adds_up_exactly_and_never_goes_negative(cost: Decimal, weights: tuple[Decimal, ...]) -> None:
    parts = split_cost(cost, weights)  # type: ignore[arg-type]
    assert sum(parts) == cost
    assert all(p >= 0 for p in parts)
    assert all(p.as_tuple().exponent >= -10 for p in parts if p)
    total = sum(weights)
    if total > 0:
        for part, weight in zip(parts, weights, strict=True):
            if weight == 0:
                assert part == 0
            else:  # proportional to within the remainder's rounding
                assert abs(part - cost * weight / total) <= len(weights) * QUANTUM  # the last absorbs n-1
    else:
        assert parts == (0, 0, 0, cost)


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from([p.model for p in CATALOG.models]),
       prompt=st.integers(0, 2_000_000), completion=st.integers(0, 200_000), cached=st.integers(0, 2_000_000),
       written=st.integers(0, 2_000_000))
def test_usage_rows_reconcile_per_row_for_any_catalog_priced_call(model: str, prompt: int, completion: int,
                                                                   cached: int, written: int) -> None:
    price = CATALOG.get(model)
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=min(cached, prompt),
                  cache_write_tokens=written)
    cost = price.cost(usage)
    totals = Totals()
    values = by_column(usage_row(row(model=model, provider=price.provider, cost_usd=cost, input_tokens=prompt,
                                     cached_input_tokens=min(cached, prompt), cache_write_input_tokens=written,
                                     output_tokens=completion), PriceBook(CATALOG), totals))
    parts = [Decimal(values[f"{d}_cost_usd"]) for d in schema.DIRECTIONS]
    assert sum(parts) == Decimal(values["cost_usd"]) == money(cost)
    assert totals.rows == 1 and totals.cost_usd == cost and totals.cost_rounded == money(cost)


def test_unknown_model_splits_by_tokens_and_reports_the_effective_rate() -> None:
    values = by_column(usage_row(row(model="retired-model", input_tokens=100, cached_input_tokens=0,
                                     output_tokens=100, cost_usd=Decimal("0.002")), PriceBook(CATALOG)))
    assert Decimal(values["input_cost_usd"]) == Decimal("0.001") == Decimal(values["output_cost_usd"])
    assert Decimal(values["input_price_usd_per_mtok"]) == Decimal(10)  # 0.001 USD / 100 tokens, per 1M


def test_values_are_text_with_explicit_nulls_and_utc_timestamps() -> None:
    moment = datetime(2026, 11, 30, 1, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))  # 2026-11-29 23:30 UTC
    values = by_column(usage_row(row(ts=moment, key_id=None, route_strategy=None, error_code=None,
                                     unallocated_tags=("X-Project-ID", "X-User-ID"), stream=True), PriceBook(CATALOG)))
    assert values["ts"] == "2026-11-29 23:30:00.000005"
    assert values["key_id"] == values["route_strategy"] == values["error_code"] == NULL
    assert values["unallocated_tags"] == "X-Project-ID,X-User-ID"
    assert values["stream"] == "true" and values["budget_bypassed"] == "false"
    assert all(isinstance(v, str) for v in values.values())
    assert all("E" not in values[c.name] for c in schema.USAGE_COLUMNS if c.type.startswith("decimal"))
    # the ledger item's own ISO string works too
    assert by_column(usage_row(row(ts="2026-11-29T23:30:00.000005Z"), PriceBook(CATALOG)))["ts"] == values["ts"]


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        usage_row(row(ts=datetime(2026, 11, 29, 12)), PriceBook(CATALOG))


def test_every_money_column_is_pinned_to_decimal_38_10() -> None:
    money_columns = [c for c in schema.USAGE_COLUMNS if c.name.endswith("_usd")]
    assert len(money_columns) == 8
    assert {c.type for c in money_columns} == {"decimal(38,10)"}
    assert {c.duckdb_type for c in money_columns} == {"DECIMAL(38,10)"}
    assert schema.duckdb_type("string") == "VARCHAR"
    with pytest.raises(ValueError):
        schema.duckdb_type("map<string,string>")


# --- periods and events --------------------------------------------------------------------------------------


def test_month_bounds_and_days() -> None:
    assert periods.month_bounds("2026-12") == ("2026-12-01", "2027-01-01")
    assert periods.month_bounds("2028-02") == ("2028-02-01", "2028-03-01")
    assert len(periods.days_of("2028-02")) == 29
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01", ""):
        with pytest.raises(InvalidRequest):
            periods.month_bounds(bad)
    for bad in ("2026-02-30", "2026-11", "2026/11/01"):
        with pytest.raises(InvalidRequest):
            periods.parse_day(bad)


def test_scheduled_events_export_the_previous_utc_day_and_month() -> None:
    assert ExportDayRequest.model_validate({"scheduled_time": "2026-12-01T00:45:00Z"}).day() == "2026-11-30"
    # a late retry still exports the day the schedule meant
    assert ExportDayRequest.model_validate({"scheduled_time": "2026-12-01T05:59:00+00:00"}).day() == "2026-11-30"
    assert ExportDayRequest.model_validate({"date": "2026-02-28"}).day() == "2026-02-28"
    now = datetime(2027, 1, 1, 0, 50, tzinfo=UTC)
    assert ExportDayRequest.model_validate({}).day(now) == "2026-12-31"
    assert FocusExportRequest.model_validate({"scheduled_time": "2027-01-01T03:00:00Z"}).month_to_export() == "2026-12"
    assert FocusExportRequest.model_validate({"month": "2026-11"}).month_to_export() == "2026-11"
    with pytest.raises(InvalidRequest):
        ExportDayRequest.model_validate({"date": "yesterday"})
    with pytest.raises(InvalidRequest):
        FocusExportRequest.model_validate({"month": "2026-11-01"})
