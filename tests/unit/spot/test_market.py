"""Spot market data: the price file, the On-Demand catalog, per-zone statistics."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from finops.errors import NotFound
from finops.spot.market import (
    OnDemandPriceNotFound,
    SpotPrice,
    bundled_price_file,
    from_api,
    group_by_zone,
    load_price_file,
    on_demand_catalog,
    on_demand_price,
    region_of,
    zone_stats,
)

T0 = datetime(2022, 5, 31, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def row(price: str, at: datetime, az_id: str = "use1-az1", instance_type: str = "p3.2xlarge",
        product: str = "Linux/UNIX") -> SpotPrice:
    return SpotPrice(az_id=az_id, instance_type=instance_type, product_description=product,
                     price_usd=Decimal(price), ts=at)


def test_bundled_file_is_the_shared_days_history() -> None:
    rows = load_price_file(bundled_price_file())
    assert len(rows) == 33362
    first = rows[0]
    assert (first.az_id, first.instance_type, first.product_description) == ("euw3-az2", "g4dn.4xlarge", "Linux/UNIX")
    assert first.price_usd == Decimal("0.466400") and isinstance(first.price_usd, Decimal)
    assert first.ts == datetime(2022, 5, 31, 18, 20, 41, tzinfo=UTC)
    assert min(r.ts for r in rows) >= datetime(2022, 5, 31, 18, tzinfo=UTC)
    assert max(r.ts for r in rows) < datetime(2022, 6, 1, tzinfo=UTC)


def test_plain_and_gzip_files_read_alike(tmp_path) -> None:
    text = ("# az_id\tinstance_type\tproduct\tprice\tts\n"
            "use1-az2\tg5.xlarge\tLinux/UNIX\t0.338700\t2022-05-31T21:09:56+00:00\n\n")
    plain, packed = tmp_path / "p.tsv", tmp_path / "p.tsv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    assert load_price_file(plain) == load_price_file(packed) == [
        SpotPrice(az_id="use1-az2", instance_type="g5.xlarge", product_description="Linux/UNIX",
                  price_usd=Decimal("0.3387"), ts=datetime(2022, 5, 31, 21, 9, 56, tzinfo=UTC))]


def test_malformed_line_names_the_line(tmp_path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("use1-az2\tg5.xlarge\t0.3387\n")
    with pytest.raises(ValueError, match=r"bad.tsv:1: expected 5"):
        load_price_file(bad)


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SpotPrice(az_id="use1-az1", instance_type="p3.2xlarge", price_usd=Decimal(1), ts=datetime(2022, 5, 31))


def test_on_demand_prices_are_decimal_with_provenance() -> None:
    catalog = on_demand_catalog()
    assert catalog.source.startswith("AWS EC2 On-Demand pricing") and catalog.effective_date
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(catalog.regions)
    price = on_demand_price("p3.2xlarge", "us-east-1")
    assert price == Decimal("3.06") and isinstance(price, Decimal)
    assert on_demand_price("g5.xlarge", "eu-west-1") == Decimal("1.123")


def test_unknown_on_demand_price_is_a_typed_error() -> None:
    with pytest.raises(OnDemandPriceNotFound) as caught:
        on_demand_price("p3.2xlarge", "mars-north-1")
    assert isinstance(caught.value, NotFound)
    assert caught.value.details == {"instance_type": "p3.2xlarge", "region": "mars-north-1"}
    with pytest.raises(OnDemandPriceNotFound):
        on_demand_price("x9.nano", "us-east-1")


def test_catalog_agrees_with_the_data() -> None:
    """The day's Spot floor is 30% of On-Demand, and the zone without spare capacity sits at On-Demand."""
    latest = {(r.az_id, r.instance_type): r.price_usd for r in load_price_file(bundled_price_file())
              if r.product_description == "Linux/UNIX"}
    assert latest[("use1-az1", "p3.2xlarge")] == on_demand_price("p3.2xlarge", "us-east-1")
    assert latest[("use1-az2", "p3.2xlarge")] == Decimal("0.3") * on_demand_price("p3.2xlarge", "us-east-1")
    assert latest[("use2-az2", "p4d.24xlarge")] == on_demand_price("p4d.24xlarge", "us-east-2")
    assert latest[("euw1-az1", "g4dn.xlarge")] == Decimal("0.3") * on_demand_price("g4dn.xlarge", "eu-west-1")


@pytest.mark.parametrize(("az_id", "name", "region"), [
    ("use1-az1", None, "us-east-1"), ("apne3-az2", None, "ap-northeast-3"), ("euw1-az3", None, "eu-west-1"),
    ("zzz9-az1", "eu-central-1b", "eu-central-1"), ("", "us-west-2a", "us-west-2"), ("weird", None, None)])
def test_region_of(az_id: str, name: str | None, region: str | None) -> None:
    assert region_of(az_id, name) == region


def test_zone_stats_time_weighted() -> None:
    # $1 for 3 h then $2 for 1 h: mean 1.25, std sqrt(0.1875), CV 0.3464; one change.
    rows = [row("1", T0), row("2", T0 + timedelta(hours=3))]
    stats = zone_stats(rows, T0 + timedelta(hours=4), DAY)
    assert stats is not None
    assert stats.price == Decimal(2) and stats.changes == 1 and stats.in_window == 2
    assert stats.cv == pytest.approx(0.1875 ** 0.5 / 1.25)


def test_zone_stats_carries_the_price_in_effect_at_the_window_start() -> None:
    rows = [row("1", T0 - timedelta(hours=30)), row("1", T0 + timedelta(hours=1)), row("3", T0 + timedelta(hours=2))]
    stats = zone_stats(rows, T0 + timedelta(hours=2), DAY)
    assert stats is not None
    assert stats.changes == 1  # 1 -> 1 is not a change, 1 -> 3 is
    assert stats.in_window == 2 and stats.last_ts == T0 + timedelta(hours=2)
    assert stats.cv == 0  # the $3 price has been in effect for no time yet


def test_zone_stats_ignores_the_future() -> None:
    rows = [row("1", T0), row("5", T0 + timedelta(hours=1))]
    assert zone_stats(rows, T0 - timedelta(seconds=1), DAY) is None
    stats = zone_stats(rows, T0 + timedelta(minutes=30), DAY)
    assert stats is not None and stats.price == Decimal(1) and stats.changes == 0 and stats.cv == 0


def test_group_by_zone_filters_and_dedupes() -> None:
    rows = [row("1", T0), row("1.5", T0, product="Linux/UNIX (Amazon VPC)"), row("9", T0, product="Windows"),
            row("2", T0, az_id="usw2-az1"), row("3", T0, instance_type="g5.xlarge"),
            SpotPrice(az_id="use1-az4", availability_zone="us-east-1c", instance_type="p3.2xlarge",
                      price_usd=Decimal(4), ts=T0)]
    zones = group_by_zone(rows, instance_types=["p3.2xlarge"], region="us-east-1")
    assert list(zones) == [("use1-az1", "p3.2xlarge"), ("use1-az4", "p3.2xlarge")]
    assert [r.price_usd for r in zones[("use1-az1", "p3.2xlarge")]] == [Decimal("1.5")]


def test_rows_from_the_api() -> None:
    item = {"AvailabilityZone": "us-east-1b", "InstanceType": "p3.2xlarge", "ProductDescription": "Linux/UNIX",
            "SpotPrice": "0.918000", "Timestamp": datetime(2022, 5, 31, 21, 18, tzinfo=UTC)}
    expected = SpotPrice(az_id="use1-az2", availability_zone="us-east-1b", instance_type="p3.2xlarge",
                         product_description="Linux/UNIX", price_usd=Decimal("0.918"), ts=item["Timestamp"])
    assert from_api({**item, "AvailabilityZoneId": "use1-az2"}) == expected
    assert from_api(item, {"us-east-1b": "use1-az2"}) == expected
    with pytest.raises(ValueError, match="no AZ ID"):
        from_api(item)
