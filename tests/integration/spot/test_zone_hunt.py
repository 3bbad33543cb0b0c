"""The hunter's I/O: EC2 answers through botocore's Stubber (exact requests checked), preemptions in moto DynamoDB.

Rows are the real p3.2xlarge us-east-1 rows of the bundled 2022-05-31 price file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from finops.spot.hunter import Preemption
from finops.spot.market import LINUX, bundled_price_file, load_price_file
from finops.spot.preemptions import PreemptionStore
from finops.spot.workflow import HuntInput
from finops.spot.zone_hunt import hunt_zone

NAMES = {"use1-az6": "us-east-1a", "use1-az1": "us-east-1b", "use1-az2": "us-east-1c", "use1-az5": "us-east-1f"}
QUEUES = {az: f"arn:aws:batch:us-east-1:123456789012:job-queue/spot-{az}" for az in NAMES}
ON_DEMAND_QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/on-demand"
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
REQUEST = HuntInput(run_id="r", spec={
    "name": "ft", "image": "i", "instance_types": ["p3.2xlarge"], "total_steps": 10, "checkpoint_prefix": "p",
    "max_cost_usd": "5", "tags": {"project_id": "llm", "user_id": "bob", "environment": "dev"}})


def price_rows() -> list[dict[str, Any]]:
    rows = [r for r in load_price_file(bundled_price_file())
            if r.instance_type == "p3.2xlarge" and r.az_id in NAMES and r.product_description == "Linux/UNIX"]
    shift = NOW - timedelta(hours=1) - max(r.ts for r in rows)
    return [{"AvailabilityZone": NAMES[r.az_id], "InstanceType": r.instance_type, "ProductDescription": LINUX,
             "SpotPrice": f"{r.price_usd:f}", "Timestamp": r.ts + shift} for r in rows]


@pytest.fixture
def store(moto_aws: str) -> Iterator[PreemptionStore]:
    store = PreemptionStore(f"it-preemptions-{moto_aws}")
    store.model._connection = None
    store.model.create_table(wait=True)
    try:
        yield store
    finally:
        store.model.delete_table()
        store.model._connection = None


def stubbed_ec2(placement: dict[str, Any] | str) -> tuple[Any, Stubber]:
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(ec2)
    stub.add_response("describe_availability_zones", {"AvailabilityZones": [
        {"ZoneName": name, "ZoneId": az, "RegionName": "us-east-1"} for az, name in NAMES.items()]
        + [{"ZoneName": "us-east-1d", "ZoneId": "use1-az4", "RegionName": "us-east-1"}]},
        {"AllAvailabilityZones": False})
    rows = price_rows()
    expected = {"InstanceTypes": ["p3.2xlarge"], "ProductDescriptions": [LINUX],
                "StartTime": NOW - timedelta(hours=24), "EndTime": NOW}
    stub.add_response("describe_spot_price_history", {"SpotPriceHistory": rows[:2], "NextToken": "page-2"}, expected)
    stub.add_response("describe_spot_price_history", {"SpotPriceHistory": rows[2:]},
                      {**expected, "NextToken": "page-2"})
    placement_request = {"InstanceTypes": ["p3.2xlarge"], "TargetCapacity": 1, "TargetCapacityUnitType": "units",
                         "SingleAvailabilityZone": True, "RegionNames": ["us-east-1"]}
    if isinstance(placement, str):
        stub.add_client_error("get_spot_placement_scores", service_error_code=placement,
                              expected_params=placement_request)
    else:
        stub.add_response("get_spot_placement_scores", placement, placement_request)
    stub.activate()
    return ec2, stub


def hunt(ec2: Any, store: PreemptionStore) -> Any:
    return hunt_zone(REQUEST, ec2=ec2, store=store, region="us-east-1", spot_queues=QUEUES,
                     on_demand_queue=ON_DEMAND_QUEUE, now=NOW)


def test_every_page_is_read_and_the_quietest_cheap_zone_is_chosen(store: PreemptionStore) -> None:
    ec2, stub = stubbed_ec2({"SpotPlacementScores": [
        {"Region": "us-east-1", "AvailabilityZoneId": "use1-az2", "Score": 3},
        {"Region": "us-east-1", "AvailabilityZoneId": "use1-az5", "Score": 9},
        {"Region": "us-east-1", "AvailabilityZoneId": "use1-az6", "Score": 7}]})
    out = hunt(ec2, store)
    stub.assert_no_pending_responses()
    assert {s.az_id for s in out.scores} == {"use1-az1", "use1-az2", "use1-az5", "use1-az6"}  # both pages
    assert out.placement_scores == "used"
    assert out.chosen is not None and out.chosen.az_id == "use1-az5"  # best placement score among equal prices
    assert out.spot is not None
    assert (out.spot.job_queue, out.spot.price_usd, out.spot.availability_zone) == (
        QUEUES["use1-az5"], Decimal("0.918"), "us-east-1f")
    assert (out.on_demand.job_queue, out.on_demand.price_usd, out.on_demand.market) == (
        ON_DEMAND_QUEUE, Decimal("3.06"), "on-demand")
    az1 = next(s for s in out.scores if s.az_id == "use1-az1")
    assert not az1.eligible and "no spare capacity" in az1.reason


@pytest.mark.parametrize("code", ["UnauthorizedOperation", "AccessDenied"])
def test_placement_scores_not_permitted_means_none(store: PreemptionStore, code: str) -> None:
    ec2, stub = stubbed_ec2(code)
    out = hunt(ec2, store)
    stub.assert_no_pending_responses()
    assert out.placement_scores == "unavailable"
    assert all(s.placement_score is None for s in out.scores)
    assert out.chosen is not None and out.chosen.az_id == "use1-az2"  # ties go to the AZ ID


def test_own_recent_preemptions_cool_a_zone_down(store: PreemptionStore) -> None:
    store.record(Preemption(az_id="use1-az2", instance_type="p3.2xlarge", at=NOW - timedelta(minutes=5)),
                 run_id="r0", job_id="j0")
    store.record(Preemption(az_id="use1-az6", instance_type="p3.2xlarge", at=NOW - timedelta(hours=30)),
                 run_id="r0", job_id="j1")  # older than the window: forgotten
    ec2, _ = stubbed_ec2("UnauthorizedOperation")
    out = hunt(ec2, store)
    by_az = {s.az_id: s for s in out.scores}
    assert by_az["use1-az2"].recent_preemptions == 1 and not by_az["use1-az2"].eligible
    assert by_az["use1-az6"].recent_preemptions == 0
    assert out.chosen is not None and out.chosen.az_id == "use1-az5"


def test_preemption_rows_expire_by_ttl_and_repeat_writes_are_one_row(store: PreemptionStore) -> None:
    at = NOW - timedelta(minutes=1)
    for _ in range(2):
        store.record(Preemption(az_id="use1-az2", instance_type="p3.2xlarge", at=at), run_id="r", job_id="j")
    rows = list(store.model.query("use1-az2"))
    assert len(rows) == 1
    assert rows[0].expires_at == int((at + timedelta(days=2)).timestamp())
    assert store.recent(["use1-az2"], since=NOW - timedelta(hours=24)) == [
        Preemption(az_id="use1-az2", instance_type="p3.2xlarge", at=at)]
    assert store.recent(["use1-az2"], since=NOW) == []
