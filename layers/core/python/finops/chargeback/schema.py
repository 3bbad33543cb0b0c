"""The column schemas of the chargeback data sets: one source for the Parquet writer, the Glue tables (infra/)
and DuckDB (``finops bill``, the tests).

Types are written in Athena/Glue (Hive DDL) spelling and mapped to DuckDB's. Money is pinned to
``decimal(38,10)`` everywhere (Parquet, Glue, every SQL ``SUM``): ten decimal places keep a per-token price
exact (USD 0.075 per 1M tokens is 7.5e-8 per token), 28 integer digits never overflow a sum. Timestamps are
UTC, stored as Parquet ``TIMESTAMP`` (microseconds) without a zone, because the Glue type ``timestamp`` has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONEY = "decimal(38,10)"
UNIT_PRICE = "decimal(18,10)"  # USD per 1M tokens
MONEY_SCALE = 10

USAGE_PREFIX = "usage"
FOCUS_PREFIX = "focus"
PARTITION_KEY = "dt"  # usage/dt=YYYY-MM-DD/
FOCUS_PARTITION_KEY = "billing_period"  # focus/billing_period=YYYY-MM/

# The four token directions of a call, in the order the cost is split (see transform.split_cost).
DIRECTIONS = ("input", "cached_input", "cache_write_input", "output")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Athena / Glue spelling
    comment: str = ""

    @property
    def duckdb_type(self) -> str:
        return duckdb_type(self.type)


def duckdb_type(athena_type: str) -> str:
    """``decimal(38,10)`` -> ``DECIMAL(38,10)``, ``string`` -> ``VARCHAR``, ..."""
    simple = {"string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "boolean": "BOOLEAN",
              "timestamp": "TIMESTAMP", "date": "DATE", "double": "DOUBLE"}
    if athena_type in simple:
        return simple[athena_type]
    match = re.fullmatch(r"decimal\((\d+),(\d+)\)", athena_type)
    if match is None:
        raise ValueError(f"no DuckDB type for {athena_type!r}")
    return f"DECIMAL({match[1]},{match[2]})"


# One row per ledger row (gateway call). ``input_tokens`` includes ``cached_input_tokens`` and
# ``cache_write_input_tokens`` (OpenAI usage semantics); the four ``*_cost_usd`` split ``cost_usd`` exactly by
# token direction (uncached input, cached input, cache-write input, output) and the four
# ``*_price_usd_per_mtok`` are the list prices they were split by.
USAGE_COLUMNS: tuple[Column, ...] = (
    Column("request_id", "string", "gateway request id (ledger hash key)"),
    Column("call_id", "string", "the client call the row belongs to: its retries and fallbacks (one row each) "
                                "share it; the bills count distinct calls as requests"),
    Column("attempt", "int", "attempt number within the call (0: the first try)"),
    Column("ts", "timestamp", "call start, UTC"),
    Column("kind", "string", "call kind, e.g. chat"),
    Column("department_id", "string", "department; 'unallocated' when the project maps to none"),
    Column("project_id", "string", "X-Project-ID ('unallocated' when missing in observe mode)"),
    Column("user_id", "string", "X-User-ID"),
    Column("environment", "string", "X-Environment"),
    Column("unallocated_tags", "string", "comma-separated cost-tag headers that were missing or invalid"),
    Column("key_id", "string", "virtual key id"),
    Column("tier", "string", "virtual key tier"),
    Column("requested_model", "string", "model the client asked for"),
    Column("model", "string", "model that served the call"),
    Column("provider", "string", "provider that served the call"),
    Column("route_strategy", "string", "routing strategy; null when the requested model was used"),
    Column("price_version", "string", "price catalog version the call was priced with"),
    Column("status", "string", "ok | provider_error | provider_timeout | ..."),
    Column("http_status", "int", "HTTP status returned to the client"),
    Column("error_code", "string", "error code, null on success"),
    Column("usage_source", "string", "provider | estimated"),
    Column("stream", "boolean", "streamed response"),
    Column("budget_bypassed", "boolean", "admitted without a reservation (budget store down, fail-open)"),
    Column("latency_ms", "int", "provider call latency"),
    Column("input_tokens", "bigint", "prompt tokens, cached ones included"),
    Column("cached_input_tokens", "bigint", "prompt tokens billed at the cached-input rate"),
    Column("cache_write_input_tokens", "bigint", "prompt tokens written to the prompt cache (cache-write rate)"),
    Column("output_tokens", "bigint", "completion tokens"),
    Column("cost_usd", MONEY, "cost of the call"),
    Column("tax_usd", MONEY, "tax-mode surcharge on top of cost_usd"),
    Column("counterfactual_usd", MONEY, "cost on the requested (reference) model; savings = this - cost_usd"),
    Column("reserved_usd", MONEY, "worst case reserved at admission"),
    Column("input_cost_usd", MONEY, "part of cost_usd for uncached input tokens"),
    Column("cached_input_cost_usd", MONEY, "part of cost_usd for cached input tokens"),
    Column("cache_write_input_cost_usd", MONEY, "part of cost_usd for input tokens written to the prompt cache"),
    Column("output_cost_usd", MONEY, "part of cost_usd for output tokens"),
    Column("input_price_usd_per_mtok", UNIT_PRICE, "list price, uncached input, USD per 1M tokens"),
    Column("cached_input_price_usd_per_mtok", UNIT_PRICE, "list price, cached input, USD per 1M tokens"),
    Column("cache_write_input_price_usd_per_mtok", UNIT_PRICE, "list price, cache-write input, USD per 1M tokens"),
    Column("output_price_usd_per_mtok", UNIT_PRICE, "list price, output, USD per 1M tokens"),
)
USAGE_PARTITION = Column(PARTITION_KEY, "string", "UTC day of ts, YYYY-MM-DD (partition projection)")

# FOCUS 1.2 cost and usage columns, FOCUS columns first, then the custom x_ ones (ColumnHandling).
FOCUS_COLUMNS: tuple[Column, ...] = (
    Column("BilledCost", MONEY),
    Column("BillingAccountId", "string"),
    Column("BillingAccountName", "string"),
    Column("BillingCurrency", "string"),
    Column("BillingPeriodEnd", "timestamp"),
    Column("BillingPeriodStart", "timestamp"),
    Column("ChargeCategory", "string"),
    Column("ChargeClass", "string"),
    Column("ChargeDescription", "string"),
    Column("ChargeFrequency", "string"),
    Column("ChargePeriodEnd", "timestamp"),
    Column("ChargePeriodStart", "timestamp"),
    Column("CommitmentDiscountCategory", "string"),
    Column("CommitmentDiscountId", "string"),
    Column("CommitmentDiscountName", "string"),
    Column("CommitmentDiscountStatus", "string"),
    Column("CommitmentDiscountType", "string"),
    Column("ConsumedQuantity", MONEY),
    Column("ConsumedUnit", "string"),
    Column("ContractedCost", MONEY),
    Column("ContractedUnitPrice", UNIT_PRICE),
    Column("EffectiveCost", MONEY),
    Column("InvoiceIssuerName", "string"),
    Column("ListCost", MONEY),
    Column("ListUnitPrice", UNIT_PRICE),
    Column("PricingCategory", "string"),
    Column("PricingQuantity", MONEY),
    Column("PricingUnit", "string"),
    Column("ProviderName", "string"),
    Column("PublisherName", "string"),
    Column("RegionId", "string"),
    Column("RegionName", "string"),
    Column("ResourceId", "string"),
    Column("ResourceName", "string"),
    Column("ResourceType", "string"),
    Column("ServiceCategory", "string"),
    Column("ServiceName", "string"),
    Column("ServiceSubcategory", "string"),
    Column("SkuId", "string"),
    Column("SkuMeter", "string"),
    Column("SkuPriceDetails", "string"),
    Column("SkuPriceId", "string"),
    Column("SubAccountId", "string"),
    Column("SubAccountName", "string"),
    Column("Tags", "string"),
    Column("x_DepartmentId", "string", "department the charge is billed to ('unallocated' if none)"),
    Column("x_ProjectId", "string", "X-Project-ID"),
    Column("x_UserId", "string", "X-User-ID"),
    Column("x_Environment", "string", "X-Environment"),
    Column("x_Model", "string", "model that served the calls"),
    Column("x_TokenDirection", "string", "input | cached_input | output; null on tax rows"),
    Column("x_PriceVersion", "string", "price catalog version"),
)
FOCUS_PARTITION = Column(FOCUS_PARTITION_KEY, "string", "billing period, YYYY-MM (partition projection)")


def usage_key(day: str, part: int) -> str:
    return f"{USAGE_PREFIX}/{PARTITION_KEY}={day}/part-{part:05d}.parquet"


def usage_day_prefix(day: str) -> str:
    return f"{USAGE_PREFIX}/{PARTITION_KEY}={day}/"


def focus_key(month: str) -> str:
    return f"{FOCUS_PREFIX}/{FOCUS_PARTITION_KEY}={month}/focus-{month}.parquet"


def focus_month_prefix(month: str) -> str:
    return f"{FOCUS_PREFIX}/{FOCUS_PARTITION_KEY}={month}/"
