"""Independent expectations for the chargeback tests: what every named query must return, computed in Python
(Decimal) straight from ledger rows; the FOCUS 1.2 rules checked row by row; and the FinOps Foundation's
focus-validator run in its own virtualenv. Imported by name (the unit and integration chargeback tests)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from finops.chargeback import export
from finops.chargeback.transform import PriceBook
from finops.ledger.entry import LedgerEntry
from finops.pricing import Usage, load_catalog

ROOT = Path(__file__).resolve().parents[3]
Q = Decimal("1E-10")
ZERO = Decimal(0)
HALF_CENT = Decimal("0.005")


def money(value: Decimal) -> Decimal:
    return value.quantize(Q, rounding=ROUND_HALF_UP)


# --- synthetic ledger rows -----------------------------------------------------------------------------------


def synthetic_entries(month_days: Iterable[str] = ("2026-10-31", "2026-11-01", "2026-11-15", "2026-11-30",
                                                   "2026-12-01"), per_day: int = 12) -> list[LedgerEntry]:
    """Ledger entries priced with the shipped catalog: several departments, unallocated and untagged calls,
    cached input, prompt-cache writes (Anthropic), routed calls (counterfactual > cost), tax with many decimal
    places, a failed call, calls that were retried (a rate-limited first attempt: two rows, one call), rows
    without a parent id (written before attempts existed), and timestamps on both sides of every midnight."""
    catalog = load_catalog()
    models = ["gpt-4o-mini", "gpt-4o", "llama-3.3-70b-versatile", "gpt-3.5-turbo", "claude-sonnet-4-5"]
    projects = [("checkout-web", "retail"), ("search", "platform"), ("orphan", "unallocated"),
                ("unallocated", "unallocated")]
    entries = []
    n = 0
    for day in month_days:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        for i in range(per_day):
            n += 1
            model = models[i % len(models)]
            price = catalog.get(model)
            project, department = projects[i % len(projects)]
            usage = Usage(prompt_tokens=120 + 17 * i, completion_tokens=9 + 5 * i,
                          cached_tokens=(64 if i % 3 == 0 and price.cached_input is not None else 0),
                          cache_write_tokens=(50 + i if price.cache_write_input is not None else 0))
            failed = i == 5
            cost = ZERO if failed else price.cost(usage)
            routed = i % 4 in (0, 2)  # served by gpt-4o-mini or llama where gpt-4o was asked for
            # first and last call of the day sit on the midnight boundaries
            ts = start if i == 0 else (start + timedelta(days=1) - timedelta(microseconds=1) if i == per_day - 1
                                       else start + timedelta(minutes=37 * i))
            call_id = f"req-{day}-{i:03d}"
            retried = i % 6 in (1, 4)  # some of them routed calls
            tags = dict(project_id=project, user_id=f"user-{(n * 7) % 5}",
                        environment=["production", "staging", "development"][i % 3], department_id=department,
                        unallocated_tags=("X-Project-ID",) if project == "unallocated" else (),
                        requested_model="gpt-4o" if routed else model)
            if retried:  # the first try failed: a row of its own, nothing billed
                # rate limited and retried on the same model, or (i % 6 == 4) down and fallen back from another
                first = catalog.get(models[(i + 1) % len(models)]) if i % 6 == 4 else price
                status = "provider_error" if i % 6 == 4 else "provider_rate_limited"
                entries.append(LedgerEntry(
                    request_id=call_id, ts=ts, **tags, model=first.model, provider=first.provider, cost_usd=ZERO,
                    price_version=catalog.version, status=status, http_status=502 if i % 6 == 4 else 429,
                    error_code=status, key_id=f"key-{i % 2}", tier="enterprise",
                    reserved_usd=Decimal("0.01"), route_strategy="cheapest-adequate" if routed else None,
                    attempt=0, parent_request_id=call_id))
            entries.append(LedgerEntry(
                request_id=f"{call_id}.1" if retried else call_id, ts=ts,
                attempt=1 if retried else 0, parent_request_id=None if i % 6 == 3 else call_id,
                **tags, model=model, provider=price.provider,
                input_tokens=0 if failed else usage.prompt_tokens,
                cached_input_tokens=0 if failed else usage.cached_tokens,
                cache_write_input_tokens=0 if failed else usage.cache_write_tokens,
                output_tokens=0 if failed else usage.completion_tokens,
                cost_usd=cost, price_version=catalog.version,
                status="provider_error" if failed else "ok", http_status=502 if failed else 200,
                error_code="provider_error" if failed else None, latency_ms=100 + i,
                key_id=f"key-{i % 2}", tier="enterprise", reserved_usd=cost * 2 + Decimal("0.0001"),
                tax_usd=(cost / 3) if i % 4 == 2 else ZERO,  # 1/3: many decimal places, rounded at export
                counterfactual_usd=(catalog.get("gpt-4o").cost(usage) if routed and not failed else cost),
                route_strategy="cheapest-adequate" if routed else None))
    return entries


def export_entries(entries: list[LedgerEntry], store: Any, **kwargs: object) -> dict[str, export.DayExport]:
    by_day: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        by_day[entry.day].append(entry)
    prices = PriceBook(load_catalog())
    return {day: export.export_day([e.__dict__ for e in rows], day, store, prices=prices, **kwargs)  # type: ignore[arg-type]
            for day, rows in sorted(by_day.items())}



# --- what every named query must return ------------------------------------------------------------------------


def month_of(entry: LedgerEntry) -> str:
    return entry.ts.strftime("%Y-%m")


@dataclass
class Expected:
    keys: tuple[str, ...]  # group-by columns
    rows: dict[tuple[Any, ...], dict[str, Any]]  # key -> column -> value (money: raw Decimal sums)
    rounded: dict[tuple[Any, ...], dict[str, Decimal]]  # key -> money column -> sum of per-row rounded values
    order: Callable[[dict[str, Any]], Any] | None = None
    limit: int | None = None


MONEY_OF: dict[str, Callable[[LedgerEntry], Decimal]] = {
    "cost_usd": lambda e: e.cost_usd,
    "tax_usd": lambda e: e.tax_usd,
    "billed_usd": lambda e: e.cost_usd + e.tax_usd,
    "counterfactual_usd": lambda e: e.counterfactual_usd,
    "savings_usd": lambda e: e.counterfactual_usd - e.cost_usd,
    "taxed_cost_usd": lambda e: e.cost_usd,
}
ROUNDED_OF: dict[str, Callable[[LedgerEntry], Decimal]] = {
    "cost_usd": lambda e: money(e.cost_usd),
    "tax_usd": lambda e: money(e.tax_usd),
    "billed_usd": lambda e: money(e.cost_usd) + money(e.tax_usd),
    "counterfactual_usd": lambda e: money(e.counterfactual_usd),
    "savings_usd": lambda e: money(e.counterfactual_usd) - money(e.cost_usd),
    "taxed_cost_usd": lambda e: money(e.cost_usd),
}
def call_of(entry: LedgerEntry) -> str:
    """The client call a row belongs to: a call's attempts (retries, fallbacks) are one request."""
    return entry.parent_request_id or entry.request_id


CALLS_OF: dict[str, Callable[[LedgerEntry], str | None]] = {  # counted as distinct calls
    "requests": call_of,
    "taxed_requests": call_of,
    "routed_requests": lambda e: call_of(e) if e.route_strategy is not None else None,
}
# Queries whose groups count a call once, under the group of its last attempt (the model that answered).
BY_LAST_ATTEMPT = {"monthly_bill_by_model"}
COUNT_OF: dict[str, Callable[[LedgerEntry], int]] = {
    "attempts": lambda e: 1,
    "input_tokens": lambda e: e.input_tokens,
    "cached_input_tokens": lambda e: e.cached_input_tokens,
    "cache_write_input_tokens": lambda e: e.cache_write_input_tokens,
    "output_tokens": lambda e: e.output_tokens,
}

SPEC: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[LedgerEntry], bool] | None]] = {
    # name: (group keys, measured columns, row filter)
    "monthly_bill_by_dept": (("department_id",), ("requests", "input_tokens", "output_tokens", "cost_usd",
                                                  "tax_usd", "billed_usd"), None),
    "monthly_bill_by_project": (("department_id", "project_id"), ("requests", "input_tokens", "output_tokens",
                                                                  "cost_usd", "tax_usd", "billed_usd"), None),
    "monthly_bill_by_user": (("department_id", "user_id"), ("requests", "input_tokens", "output_tokens",
                                                            "cost_usd", "tax_usd", "billed_usd"), None),
    "monthly_bill_by_model": (("provider", "model"), ("requests", "attempts", "input_tokens",
                                                      "cached_input_tokens", "cache_write_input_tokens",
                                                      "output_tokens", "cost_usd", "tax_usd", "billed_usd"), None),
    "monthly_bill_by_environment": (("department_id", "environment"), ("requests", "cost_usd", "tax_usd",
                                                                       "billed_usd"), None),
    "unallocated_spend": (("project_id", "user_id", "environment", "missing_tags"),
                          ("requests", "cost_usd", "tax_usd", "billed_usd"),
                          lambda e: e.department_id == "unallocated" or bool(e.unallocated_tags)),
    "routing_savings": (("department_id",), ("requests", "routed_requests", "counterfactual_usd", "cost_usd",
                                             "savings_usd"), None),
    "tax_collected": (("department_id", "project_id"), ("taxed_requests", "taxed_cost_usd", "tax_usd"),
                      lambda e: money(e.tax_usd) != 0),
    "top_spenders": (("user_id", "department_id"), ("projects", "requests", "cost_usd", "tax_usd", "billed_usd"),
                     None),
    "daily_trend": (("day",), ("requests", "cost_usd", "tax_usd", "billed_usd", "savings_usd"), None),
}


def _key_value(entry: LedgerEntry, column: str) -> Any:
    if column == "missing_tags":
        return ",".join(entry.unallocated_tags)
    if column == "day":
        return entry.ts.date()
    return getattr(entry, column)


def expected(name: str, entries: Iterable[LedgerEntry], month: str) -> Expected:
    keys, measures, keep = SPEC[name]
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    rounded: dict[tuple[Any, ...], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    projects: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    calls: dict[tuple[tuple[Any, ...], str], set[str]] = defaultdict(set)
    last_try: dict[str, LedgerEntry] = {}  # call -> its last attempt, ordered as the SQL orders them
    for entry in entries:
        if month_of(entry) == month:
            known = last_try.get(call_of(entry))
            if known is None or (entry.attempt, entry.request_id) > (known.attempt, known.request_id):
                last_try[call_of(entry)] = entry
    for entry in entries:
        if month_of(entry) != month or (keep is not None and not keep(entry)):
            continue
        key = tuple(_key_value(entry, k) for k in keys)
        row = rows.setdefault(key, {m: (ZERO if m in MONEY_OF else 0) for m in measures})
        for m in measures:
            if m in MONEY_OF:
                row[m] += MONEY_OF[m](entry)
                rounded[key][m] += ROUNDED_OF[m](entry)
            elif m in COUNT_OF:
                row[m] += COUNT_OF[m](entry)
            elif (m in CALLS_OF and (call := CALLS_OF[m](entry)) is not None
                  and (name not in BY_LAST_ATTEMPT or last_try[call] is entry)):
                calls[key, m].add(call)
        projects[key].add(entry.project_id)
    for key, row in rows.items():
        for m in measures:
            if m in CALLS_OF:
                row[m] = len(calls[key, m])
        if "projects" in measures:
            row["projects"] = len(projects[key])
    result = Expected(keys, rows, {k: dict(v) for k, v in rounded.items()})
    if name == "top_spenders":
        ordered = sorted(rows, key=lambda k: (-rounded[k]["billed_usd"], k))[:20]
        result.rows = {k: rows[k] for k in ordered}
        result.rounded = {k: dict(rounded[k]) for k in ordered}
        result.limit = 20
    return result


def assert_matches(result: Any, want: Expected) -> None:
    """``result`` (engine.QueryResult) equals ``want``: the same groups; counts equal; every amount exactly the
    sum of the per-row rounded ledger amounts (what the Parquet holds) and within half a cent of the raw sum."""
    records = result.records()
    got = {}
    for record in records:
        key = tuple(record[k] for k in want.keys)
        assert key not in got, f"{result.name}: group {key} twice"
        got[key] = record
    assert set(got) == set(want.rows), f"{result.name}: groups {sorted(map(str, got))} != {sorted(map(str, want.rows))}"
    for key, row in want.rows.items():
        for column, value in row.items():
            actual = got[key][column]
            if column in MONEY_OF:
                assert isinstance(actual, Decimal), (result.name, column, type(actual))
                want_rounded = want.rounded[key][column]
                assert actual == want_rounded, (result.name, key, column, actual, want_rounded)
                assert abs(actual - value) < HALF_CENT, (result.name, key, column, actual, value)
            else:
                assert actual == value, (result.name, key, column, actual, value)


# --- FOCUS 1.2 ---------------------------------------------------------------------------------------------------

# Columns FOCUS 1.2 says MUST be present (CostAndUsage-D-*-M), plus the conditional ones that apply to a gateway
# that measures usage, publishes unit list prices and supports tags (ListUnitPrice, ConsumedQuantity/Unit, SkuId,
# SkuPriceId, SkuMeter, SkuPriceDetails, Tags), departments as sub accounts (SubAccountId/Name), and the ones
# the issue asks for by name.
FOCUS_12_REQUIRED = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodEnd",
    "ChargePeriodStart", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity",
    "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
    # conditional, applicable here
    "ListUnitPrice", "ConsumedQuantity", "ConsumedUnit", "SkuId", "SkuPriceId", "SkuMeter", "SkuPriceDetails",
    "Tags", "SubAccountId", "SubAccountName",
    # recommended, present
    "ChargeFrequency", "ServiceSubcategory",
)
FOCUS_DECIMALS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ListUnitPrice",
                  "ContractedUnitPrice", "PricingQuantity", "ConsumedQuantity")
FOCUS_DATETIMES = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
CHARGE_CATEGORIES = {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
PASCAL = re.compile(r"[A-Z][A-Za-z0-9]*")
CUSTOM = re.compile(r"x_[A-Z][A-Za-z0-9]*")
GRAIN = ("ChargePeriodStart", "SubAccountId", "x_ProjectId", "x_UserId", "x_Environment", "x_Model",
         "ChargeCategory", "x_TokenDirection", "x_PriceVersion")


def _kv_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict), text
    assert all(isinstance(v, str | int | float | bool) or v is None for v in value.values()), text
    return value


def check_focus_12(columns: list[str], types: dict[str, str], rows: list[dict[str, Any]]) -> None:
    """The FOCUS 1.2 rules that apply to this data set (column ids, presence, types, nullability, allowed
    values, cost/price/quantity relations, date/time bounds); raises AssertionError naming the rule."""
    missing = [c for c in FOCUS_12_REQUIRED if c not in columns]
    assert not missing, f"CostAndUsage-D: missing columns {missing}"
    focus_cols = [c for c in columns if not c.startswith("x_")]
    custom = [c for c in columns if c.startswith("x_")]
    assert all(PASCAL.fullmatch(c) for c in focus_cols), "ColumnHandling-A-001/003: PascalCase alphanumeric"
    assert all(CUSTOM.fullmatch(c) for c in custom), "ColumnHandling-A-010: x_ prefix"
    assert columns == focus_cols + custom, "ColumnHandling-A-013: custom columns after the FOCUS columns"
    for c in FOCUS_DECIMALS:
        assert types[c].startswith("DECIMAL"), f"{c}-C-001-M: Decimal, got {types[c]}"
    for c in FOCUS_DATETIMES:
        assert types[c].startswith("TIMESTAMP"), f"{c}-C-001-M: Date/Time, got {types[c]}"
    seen = set()
    for row in rows:
        grain = tuple(row[c] for c in GRAIN)
        assert grain not in seen, f"grain not unique: {grain}"
        seen.add(grain)
        for column, value in row.items():
            assert value != "" and (not isinstance(value, str) or value.strip()), \
                f"NullHandling-A-002 / StringHandling-A-007: empty {column}"
        for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingAccountId", "BillingCurrency",
                  "BillingPeriodStart", "BillingPeriodEnd", "ChargeCategory", "ChargePeriodStart", "ChargePeriodEnd",
                  "InvoiceIssuerName", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
                  "ChargeFrequency", "ServiceSubcategory", "ChargeDescription", "BillingAccountName"):
            assert row[c] is not None, f"{c}: MUST NOT be null"
        assert row["BillingCurrency"] == "USD", "BillingCurrency-C-003-M: ISO 4217"
        category = row["ChargeCategory"]
        assert category in CHARGE_CATEGORIES, "ChargeCategory-C-003-M"
        assert row["ChargeClass"] is None, "ChargeClass-C-003-C: null unless a correction"
        assert row["ChargeFrequency"] == "Usage-Based", "ChargeFrequency-C-003-M"
        assert row["ServiceCategory"] == "AI and Machine Learning", "ServiceCategory-C-003-M"
        assert row["ServiceSubcategory"] == "Generative AI", "ServiceSubcategory-C-003/004-M"
        assert row["ProviderName"] == row["InvoiceIssuerName"], \
            "BilledCost-C-005-C: a provider other than the invoice issuer bills 0"
        bps, bpe, cps, cpe = (row[c] for c in FOCUS_DATETIMES)
        for moment in (bps, bpe, cps, cpe):
            assert isinstance(moment, datetime) and moment.tzinfo is None, "DateTimeFormat: UTC, no offset stored"
        assert bps.day == 1 and bps.time() == datetime.min.time(), "BillingPeriodStart: first of the month"
        assert bpe == (bps.replace(month=bps.month % 12 + 1, year=bps.year + (bps.month == 12))), \
            "BillingPeriodEnd-C-004-M: exclusive end of the month"
        assert cpe - cps == timedelta(days=1) and cps.time() == datetime.min.time(), "ChargePeriod: a UTC day"
        assert bps <= cps < cpe <= bpe, "charge period inside the billing period"
        for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
            assert isinstance(row[c], Decimal), f"{c}: Decimal"
        assert row["EffectiveCost"] == row["BilledCost"], "no discounts: EffectiveCost == BilledCost"
        if row["Tags"] is not None:
            _kv_object(row["Tags"])  # Tags-C-001-M: KeyValueFormat
        if category == "Usage":
            for c in ("PricingQuantity", "PricingUnit", "ListUnitPrice", "ContractedUnitPrice", "ConsumedQuantity",
                      "ConsumedUnit", "SkuId", "SkuPriceId", "PricingCategory", "SkuMeter"):
                assert row[c] is not None, f"{c}: MUST NOT be null for Usage"
            assert row["ListUnitPrice"] >= 0, "ListUnitPrice-C-008-M: non-negative"
            assert money(row["ListUnitPrice"] * row["PricingQuantity"]) == row["ListCost"], \
                "ListCost-C-009-C: ListUnitPrice x PricingQuantity == ListCost"
            assert money(row["ContractedUnitPrice"] * row["PricingQuantity"]) == row["ContractedCost"], \
                "ContractedCost-C-009-C"
            assert row["ConsumedUnit"] == "Tokens" and row["PricingUnit"] == "1000000 Tokens"
            assert row["PricingQuantity"] * 1_000_000 == row["ConsumedQuantity"], "PricingUnit is 1M tokens"
            assert row["PricingCategory"] == "Standard", "PricingCategory-C-007-M"
            assert row["SkuPriceId"].startswith(row["SkuId"] + "@"), "SkuPriceId-C-008-M: one parent SkuId"
            details = _kv_object(row["SkuPriceDetails"])
            assert all(k.startswith("x_") for k in details), "SkuPriceDetails-C-017-C: x_ keys"
        else:
            assert category == "Tax"
            for c in ("PricingQuantity", "PricingUnit", "ListUnitPrice", "ContractedUnitPrice", "ConsumedQuantity",
                      "ConsumedUnit", "SkuId", "SkuPriceId", "SkuMeter", "SkuPriceDetails", "PricingCategory"):
                assert row[c] is None, f"{c}: MUST be null for Tax"
            assert row["ListCost"] == row["ContractedCost"] == row["BilledCost"], "Tax: costs from the charge"


def focus_expectations(entries: Iterable[LedgerEntry], month: str) -> dict[str, Any]:
    """Totals the FOCUS rows of ``month`` must add up to."""
    tokens: dict[str, int] = defaultdict(int)
    billed_raw, billed_rounded, tax_rounded = ZERO, ZERO, ZERO
    for e in entries:
        if month_of(e) != month:
            continue
        billed_raw += e.cost_usd + e.tax_usd
        billed_rounded += money(e.cost_usd) + money(e.tax_usd)
        tax_rounded += money(e.tax_usd)
        tokens["input"] += e.input_tokens - e.cached_input_tokens - e.cache_write_input_tokens
        tokens["cached_input"] += e.cached_input_tokens
        tokens["cache_write_input"] += e.cache_write_input_tokens
        tokens["output"] += e.output_tokens
    return {"billed_raw": billed_raw, "billed_rounded": billed_rounded, "tax_rounded": tax_rounded,
            "tokens": dict(tokens)}


# --- the FinOps Foundation's focus-validator (1.0.0, FOCUS 1.0 rules, own virtualenv) ------------------------

FOCUS_VALIDATOR = Path(os.environ.get("FOCUS_VALIDATOR", ROOT / ".venv-focus" / "bin" / "focus-validator"))
# Checks of focus-validator 1.0.0's "1.0" rule set that test something other than FOCUS 1.0 (its own bugs):
VALIDATOR_OVERRIDES = {
    "InvoiceIssuer_Required": "FOCUS 1.0 calls the column InvoiceIssuerName (present); the rule set uses a "
                              "pre-1.0 name",
    "Provider_Required": "FOCUS 1.0 column is ProviderName (present)",
    "Publisher_Required": "FOCUS 1.0 column is PublisherName (present)",
    "ResourceID_Required": "FOCUS 1.0 column is ResourceId (present, null: no provisioned resources)",
    "SkuPriceId_Nullable": "its SQL reads ChargeType, renamed ChargeCategory in 1.0; the 1.0/1.2 rule (SkuPriceId "
                           "not null for Usage) is checked by check_focus_12",
}


@dataclass
class ValidatorReport:
    tests: int
    failures: int
    errors: int
    skipped: int
    failed: list[str]
    output: str


def run_focus_validator(csv_path: Path, tmp: Path) -> ValidatorReport:
    if not FOCUS_VALIDATOR.exists():
        raise AssertionError(f"{FOCUS_VALIDATOR} is missing: run `make focus-validator` (make test does)")
    overrides = tmp / "focus-validator-overrides.yaml"
    lines = [f"  - {rule}  # {why}\n" for rule, why in VALIDATOR_OVERRIDES.items()]
    overrides.write_text("overrides:\n" + "".join(lines))
    report = tmp / "focus-validator.xml"
    python = FOCUS_VALIDATOR.parent / "python"
    # focus-validator 1.0.0 opens its ISO 4217 list by a path relative to the working directory
    site = subprocess.run([str(python), "-c", "import focus_validator, os; "
                           "print(os.path.dirname(os.path.dirname(focus_validator.__file__)))"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    proc = subprocess.run(
        [str(FOCUS_VALIDATOR), "--data-file", str(csv_path.resolve()), "--validate-version", "1.0",
         "--override-file", str(overrides), "--output-type", "unittest", "--output-destination", str(report)],
        capture_output=True, text=True, cwd=site, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FINOPS_"))})
    assert report.exists(), f"focus-validator wrote no report: {proc.stdout}\n{proc.stderr}"
    suites = ET.parse(report).getroot()  # noqa: S314  (the report this test just had written)
    failed = [case.get("name", "?") for case in suites.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return ValidatorReport(int(suites.get("tests", 0)), int(suites.get("failures", 0)), int(suites.get("errors", 0)),
                           int(suites.get("skipped", 0)), failed, proc.stdout + proc.stderr)


def read_focus(con: Any, path: Path) -> tuple[list[str], dict[str, str], list[dict[str, Any]]]:
    source = f"read_parquet('{path}', hive_partitioning = false)"  # the file's own columns, not the path's
    cursor = con.execute(f"SELECT * FROM {source}")  # noqa: S608  (a test's own temp file)
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    types = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}  # noqa: S608
    return columns, types, rows

