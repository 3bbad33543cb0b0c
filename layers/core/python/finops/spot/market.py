"""The Spot market as data: price-history rows, the On-Demand catalog, and per-zone statistics.

``SpotPrice`` is one row of Spot price history (what ``DescribeSpotPriceHistory`` returns, one row each
time a zone's price changed; ``from_api`` converts boto3's items). ``load_price_file`` reads the shared
TSV(.gz) format (``az_id, instance_type, product_description, price, timestamp``, no header).
``on_demand_price`` reads ``data/on_demand_prices.json`` (public Linux On-Demand list prices, Decimal).
``zone_stats`` summarises one zone's price path over a window; the hunter and the backtest both use it, so
both see the same numbers.
"""

from __future__ import annotations

import csv
import gzip
import importlib.resources
import io
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_validator

from ..errors import NotFound

LINUX = "Linux/UNIX (Amazon VPC)"
LINUX_DESCRIPTIONS = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")
BUNDLED_PRICE_FILE = "spot-prices-2022-05-31.tsv.gz"

# AZ-ID prefix -> region (AZ IDs are the same for every account; AZ names are not).
REGION_BY_AZ_PREFIX = {
    "use1": "us-east-1", "use2": "us-east-2", "usw1": "us-west-1", "usw2": "us-west-2",
    "cac1": "ca-central-1", "sae1": "sa-east-1", "afs1": "af-south-1", "mes1": "me-south-1",
    "euw1": "eu-west-1", "euw2": "eu-west-2", "euw3": "eu-west-3", "euc1": "eu-central-1",
    "eun1": "eu-north-1", "eus1": "eu-south-1", "ape1": "ap-east-1", "aps1": "ap-south-1",
    "apse1": "ap-southeast-1", "apse2": "ap-southeast-2", "apse3": "ap-southeast-3",
    "apne1": "ap-northeast-1", "apne2": "ap-northeast-2", "apne3": "ap-northeast-3",
}


class OnDemandPriceNotFound(NotFound):
    """No On-Demand price in the catalog for this instance type and region."""

    code = "on_demand_price_not_found"


class SpotPrice(BaseModel, frozen=True):
    """One row of Spot price history."""

    az_id: str  # "use1-az1"
    availability_zone: str | None = None  # "us-east-1a" when known (the API gives names, the data file IDs)
    instance_type: str
    product_description: str = LINUX
    price_usd: Decimal  # per instance-hour
    ts: datetime  # UTC

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(UTC)


def from_api(item: Mapping[str, Any], zone_ids: Mapping[str, str] | None = None) -> SpotPrice:
    """A ``SpotPriceHistory`` item of boto3's ``describe_spot_price_history`` as a row.

    The AZ ID comes from ``AvailabilityZoneId`` when the API gives it, else from ``zone_ids`` (AZ name -> ID,
    from ``describe_availability_zones``); without either the row cannot be placed and a ValueError is raised.
    """
    name = item.get("AvailabilityZone")
    az_id = item.get("AvailabilityZoneId") or (zone_ids or {}).get(name or "")
    if not az_id:
        raise ValueError(f"no AZ ID for Spot price row in {name!r}: pass zone_ids (AZ name -> ID)")
    ts = item["Timestamp"]
    return SpotPrice(az_id=az_id, availability_zone=name, instance_type=item["InstanceType"],
                     product_description=item.get("ProductDescription", LINUX), price_usd=Decimal(item["SpotPrice"]),
                     ts=ts if isinstance(ts, datetime) else datetime.fromisoformat(ts))


def region_of(az_id: str | None = None, availability_zone: str | None = None) -> str | None:
    """The region of an AZ ID (``use1-az1``) or AZ name (``us-east-1a``); None when neither says."""
    if az_id and "-az" in az_id:
        region = REGION_BY_AZ_PREFIX.get(az_id.split("-az", 1)[0])
        if region:
            return region
    if availability_zone and availability_zone[-1:].isalpha() and availability_zone[-2:-1].isdigit():
        return availability_zone[:-1]
    return None


def bundled_price_file() -> Path:
    """The price history shipped with the package (see ``data/spot/README.md``)."""
    return Path(str(importlib.resources.files("finops") / "data" / "spot" / BUNDLED_PRICE_FILE))


def load_price_file(path: str | Path) -> list[SpotPrice]:
    """Rows of a TSV (optionally gzip) price file, in file order. Blank lines and ``#`` comments are skipped."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows: list[SpotPrice] = []
    for line_no, fields in enumerate(csv.reader(io.StringIO(raw.decode()), delimiter="\t"), start=1):
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 5:
            raise ValueError(f"{path}:{line_no}: expected 5 tab-separated fields, got {len(fields)}")
        az_id, instance_type, product, price, ts = fields
        rows.append(SpotPrice(az_id=az_id, instance_type=instance_type, product_description=product,
                              price_usd=Decimal(price), ts=datetime.fromisoformat(ts)))
    return rows


class OnDemandCatalog(BaseModel, frozen=True):
    currency: str
    unit: str
    source: str
    effective_date: str
    regions: dict[str, dict[str, Decimal]]

    def price(self, instance_type: str, region: str) -> Decimal:
        try:
            return self.regions[region][instance_type]
        except KeyError:
            raise OnDemandPriceNotFound(
                f"no On-Demand price for {instance_type} in {region} in data/on_demand_prices.json",
                details={"instance_type": instance_type, "region": region}) from None


@lru_cache(maxsize=1)
def on_demand_catalog() -> OnDemandCatalog:
    raw = (importlib.resources.files("finops") / "data" / "on_demand_prices.json").read_text()
    return OnDemandCatalog.model_validate(json.loads(raw, parse_float=Decimal))


def on_demand_price(instance_type: str, region: str) -> Decimal:
    """Public Linux On-Demand USD per instance-hour; ``OnDemandPriceNotFound`` when the catalog lacks it."""
    return on_demand_catalog().price(instance_type, region)


@dataclass(frozen=True)
class ZoneStats:
    """One zone's price path over ``[now - window, now]`` (rows after ``now`` are ignored).

    ``price`` is the price in effect at ``now`` (the latest row at or before it). ``in_window`` counts the rows
    inside the window; the price in effect when the window opened (the latest earlier row) starts the path.
    ``cv`` is the time-weighted coefficient of variation (std / mean) of the price over the part of the window
    the path covers; ``changes`` counts rows in the window whose price differs from the one before.
    """

    price: Decimal
    last_ts: datetime
    in_window: int
    changes: int
    cv: float


def zone_stats(rows: Sequence[SpotPrice], now: datetime, window: timedelta) -> ZoneStats | None:
    """Statistics of one zone's rows (any order); None when no row is at or before ``now``."""
    past = sorted((r for r in rows if r.ts <= now), key=lambda r: r.ts)
    if not past:
        return None
    start = now - window
    before = [r for r in past if r.ts < start]
    inside = [r for r in past if r.ts >= start]
    path = ([(start, before[-1].price_usd)] if before else []) + [(r.ts, r.price_usd) for r in inside]
    changes = sum(1 for prev, cur in itertools.pairwise(path) if cur[1] != prev[1])
    cv = _time_weighted_cv(path, now)
    return ZoneStats(price=past[-1].price_usd, last_ts=past[-1].ts, in_window=len(inside), changes=changes, cv=cv)


def _time_weighted_cv(path: Sequence[tuple[datetime, Decimal]], now: datetime) -> float:
    if len(path) < 2:
        return 0.0
    weights: list[float] = []
    values: list[float] = []
    for (ts, price), (nxt, _) in zip(path, [*path[1:], (now, path[-1][1])], strict=True):
        weights.append(max((nxt - ts).total_seconds(), 0.0))
        values.append(float(price))
    total = sum(weights)
    if total <= 0:  # every row at the same instant: an unweighted spread
        weights, total = [1.0] * len(values), float(len(values))
    mean = sum(w * v for w, v in zip(weights, values, strict=True)) / total
    if mean <= 0:
        return 0.0
    var = sum(w * (v - mean) ** 2 for w, v in zip(weights, values, strict=True)) / total
    return math.sqrt(var) / mean


def group_by_zone(history: Iterable[SpotPrice], *, instance_types: Sequence[str], region: str | None,
                  product_descriptions: Sequence[str] = LINUX_DESCRIPTIONS,
                  ) -> dict[tuple[str, str], list[SpotPrice]]:
    """Rows of the wanted types and products in ``region`` keyed by ``(az_id, instance_type)``.

    A row whose region cannot be told from its AZ ID or name is kept (the caller filtered it). Rows of the same
    zone at the same instant (the API repeats a row per product variant) are kept once, the last one winning.
    """
    wanted = set(instance_types)
    products = set(product_descriptions)
    zones: dict[tuple[str, str], dict[datetime, SpotPrice]] = {}
    for row in history:
        if row.instance_type not in wanted or row.product_description not in products:
            continue
        row_region = region_of(row.az_id, row.availability_zone)
        if region is not None and row_region is not None and row_region != region:
            continue
        zones.setdefault((row.az_id, row.instance_type), {})[row.ts] = row
    return {key: sorted(by_ts.values(), key=lambda r: r.ts) for key, by_ts in sorted(zones.items())}
