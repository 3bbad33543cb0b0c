"""Ledger rows -> usage rows (the Parquet schema in :mod:`.schema`), in Decimal, without AWS.

Two pieces of arithmetic live here:

- every amount is rounded once, half up, to the pinned scale (10 decimal places) before it is written, so
  DuckDB never rounds on its own and the export's totals can be compared with the ledger's exactly;
- ``cost_usd`` is split by token direction (uncached input, cached input, cache-write input, output) in
  proportion to the list price of each direction: the parts are rounded down and the last direction with a
  weight takes the remainder, so the four parts add up to the rounded ``cost_usd`` exactly. When the call was
  priced with the catalog the split uses (the normal case) the parts are exactly tokens x list price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from ..pricing import PriceCatalog
from .schema import MONEY_SCALE

QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)  # 1E-10
ZERO = Decimal(0)
ZERO_Q = ZERO.quantize(QUANTUM)
ZERO_TEXT = format(ZERO_Q, "f")  # 0.0000000000
PER_MTOK = Decimal(1_000_000)
NULL = "\\N"  # how the staging file spells SQL NULL (a value that is exactly backslash-N would read as NULL)


def money(value: Decimal) -> Decimal:
    """``value`` rounded half up to the pinned scale: what the Parquet file holds."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def split_cost(cost: Decimal, weights: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    """``cost`` (already at the pinned scale) split in proportion to ``weights``; the parts add up to ``cost``.

    Every part but the last weighted one is rounded toward zero, the last one takes the remainder, so no part
    has the opposite sign of ``cost``. Without any weight the whole cost goes to the last (output) direction.
    """
    total = sum(weights, ZERO)
    parts = [ZERO] * len(weights)
    if not cost or total <= 0:
        parts[-1] = cost
        return tuple(parts)
    last = max(i for i, w in enumerate(weights) if w > 0)
    rest = cost
    for i in range(last):
        if weights[i] > 0:
            part = (cost * weights[i] / total).quantize(QUANTUM, rounding=ROUND_DOWN)
            parts[i] = part
            rest -= part
    parts[last] = rest
    return tuple(parts)


@dataclass
class PriceBook:
    """List prices per token direction (USD per 1M tokens) by model, from the price catalog."""

    catalog: PriceCatalog | None
    _cache: dict[str, tuple[Decimal, Decimal, Decimal, Decimal] | None] = field(default_factory=dict)
    _text: dict[str, list[str]] = field(default_factory=dict)

    def rates(self, model: str) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """(uncached input, cached input, cache-write input, output), as ``ModelPrice.cost`` charges them."""
        if model not in self._cache:
            rates = None
            if self.catalog is not None and model in self.catalog:
                price = self.catalog.get(model)
                cached = price.cached_input if price.cached_input is not None else price.input
                written = price.cache_write_input if price.cache_write_input is not None else price.input
                rates = (price.input, cached, written, price.output)
            self._cache[model] = rates
            if rates is not None:
                self._text[model] = [format(r, "f") for r in rates]
        return self._cache[model]

    def rates_text(self, model: str) -> list[str]:
        """``rates(model)`` as the staging CSV spells them (computed once per model)."""
        return self._text[model]


def _ts_text(value: Any) -> str:
    """UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` (what DuckDB casts to TIMESTAMP)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    text = str(value)  # the ledger item's own ISO string, e.g. 2026-11-29T14:30:00.123456Z
    return _ts_text(datetime.fromisoformat(text.replace("Z", "+00:00")))


@dataclass
class Totals:
    """What went into an export: row count and sums, both raw (as the ledger holds them) and rounded."""

    rows: int = 0
    cost_usd: Decimal = ZERO  # raw
    tax_usd: Decimal = ZERO
    counterfactual_usd: Decimal = ZERO
    cost_rounded: Decimal = ZERO  # sum of the per-row rounded values = what the Parquet must sum to
    tax_rounded: Decimal = ZERO
    counterfactual_rounded: Decimal = ZERO


def usage_row(row: Mapping[str, Any], prices: PriceBook, totals: Totals | None = None) -> list[str]:
    """One ledger row (a ``LedgerEntry``'s fields, or a dict with the same keys) as staging-CSV values in
    :data:`~.schema.USAGE_COLUMNS` order. Hot path of the export: plain code, no per-column helpers."""
    cost_raw, tax_raw, cf_raw = row["cost_usd"], row["tax_usd"], row["counterfactual_usd"]
    cost = cost_raw.quantize(QUANTUM, rounding=ROUND_HALF_UP)
    tax = tax_raw.quantize(QUANTUM, rounding=ROUND_HALF_UP) if tax_raw else ZERO_Q
    counterfactual = cf_raw.quantize(QUANTUM, rounding=ROUND_HALF_UP) if cf_raw else ZERO_Q
    reserved = row["reserved_usd"]
    input_tokens = int(row["input_tokens"])
    cached = min(int(row["cached_input_tokens"]), input_tokens)
    written = min(int(row.get("cache_write_input_tokens") or 0), input_tokens - cached)  # as ModelPrice.cost
    output_tokens = int(row["output_tokens"])
    uncached = input_tokens - cached - written
    model = row["model"]
    rates = prices.rates(model)
    if rates is not None:
        parts = split_cost(cost, (uncached * rates[0], cached * rates[1], written * rates[2],
                                  output_tokens * rates[3]))
        rate_text = prices.rates_text(model)
    else:  # a model the catalog no longer prices: split by tokens, the effective rate stands in for the list price
        tokens = (uncached, cached, written, output_tokens)
        parts = split_cost(cost, tuple(Decimal(t) for t in tokens))
        rate_text = [format(money(p * PER_MTOK / t), "f") if t else ZERO_TEXT
                     for p, t in zip(parts, tokens, strict=True)]
    if totals is not None:
        totals.rows += 1
        totals.cost_usd += cost_raw
        totals.tax_usd += tax_raw
        totals.counterfactual_usd += cf_raw
        totals.cost_rounded += cost
        totals.tax_rounded += tax
        totals.counterfactual_rounded += counterfactual
    tags = row["unallocated_tags"]
    key_id, tier, route, error = row["key_id"], row["tier"], row["route_strategy"], row["error_code"]
    call_id = row.get("parent_request_id") or row["request_id"]  # rows written before attempts existed: own id
    return [
        row["request_id"],
        call_id,
        str(int(row.get("attempt") or 0)),
        _ts_text(row["ts"]),
        row["kind"],
        row["department_id"],
        row["project_id"],
        row["user_id"],
        row["environment"],
        ",".join(tags) if tags else "",
        NULL if key_id is None else key_id,
        NULL if tier is None else tier,
        row["requested_model"],
        model,
        row["provider"],
        NULL if route is None else route,
        row["price_version"],
        row["status"],
        str(int(row["http_status"])),
        NULL if error is None else error,
        row["usage_source"],
        "true" if row["stream"] else "false",
        "true" if row["budget_bypassed"] else "false",
        str(int(row["latency_ms"])),
        str(input_tokens),
        str(cached),
        str(written),
        str(output_tokens),
        format(cost, "f"),
        format(tax, "f") if tax else ZERO_TEXT,
        format(counterfactual, "f") if counterfactual else ZERO_TEXT,
        format(reserved.quantize(QUANTUM, rounding=ROUND_HALF_UP), "f") if reserved else ZERO_TEXT,
        format(parts[0], "f") if parts[0] else ZERO_TEXT,
        format(parts[1], "f") if parts[1] else ZERO_TEXT,
        format(parts[2], "f") if parts[2] else ZERO_TEXT,
        format(parts[3], "f") if parts[3] else ZERO_TEXT,
        *rate_text,
    ]
