"""The zone hunter's I/O around the pure ``finops.spot.hunter.hunt``.

- Spot price history of the last ``window`` (24 h) per instance type, ``Linux/UNIX (Amazon VPC)``, every page
  of DescribeSpotPriceHistory (the API answers with AZ *names*; they are mapped to AZ *IDs*, which are the same
  in every account, with DescribeAvailabilityZones).
- GetSpotPlacementScores for the region, one score per AZ ID, when the role may call it: AccessDenied or
  UnauthorizedOperation only means "no placement scores" (logged), so do throttling and other errors.
- This workflow's own recent preemptions from ``PreemptionStore``.

Only zones this deployment has a Spot job queue for are hunted (a zone without a compute environment cannot
be run in, however cheap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from .hunter import HunterConfig, HuntResult, hunt
from .market import LINUX, SpotPrice, on_demand_price
from .preemptions import PreemptionStore
from .workflow import HuntInput, HuntOutput, RunPlan

logger = Logger(child=True)

NOT_PERMITTED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def az_ids_by_name(ec2: Any) -> dict[str, str]:
    """``{"us-east-1a": "use1-az6", ...}`` for the client's region (the mapping differs per account)."""
    zones = ec2.describe_availability_zones(AllAvailabilityZones=False)["AvailabilityZones"]
    return {z["ZoneName"]: z["ZoneId"] for z in zones if z.get("ZoneId")}


def spot_price_history(ec2: Any, instance_types: Sequence[str], *, start: datetime, end: datetime,
                       az_ids: Mapping[str, str]) -> list[SpotPrice]:
    """Every row of DescribeSpotPriceHistory in ``[start, end]`` for the types (all pages), with AZ IDs."""
    rows: list[SpotPrice] = []
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=list(instance_types), ProductDescriptions=[LINUX], StartTime=start, EndTime=end)
    for page in pages:
        for item in page.get("SpotPriceHistory", []):
            name = item.get("AvailabilityZone")
            az_id = az_ids.get(name or "")
            if az_id is None:  # a zone not enabled for this account
                continue
            rows.append(SpotPrice(az_id=az_id, availability_zone=name, instance_type=item["InstanceType"],
                                  product_description=item.get("ProductDescription", LINUX),
                                  price_usd=Decimal(item["SpotPrice"]), ts=item["Timestamp"]))
    return rows


def placement_scores(ec2: Any, instance_types: Sequence[str], region: str) -> dict[str, int] | None:
    """AZ ID -> GetSpotPlacementScores' 1..10 for one instance of the types; None when not available."""
    try:
        pages = ec2.get_paginator("get_spot_placement_scores").paginate(
            InstanceTypes=list(instance_types), TargetCapacity=1, TargetCapacityUnitType="units",
            SingleAvailabilityZone=True, RegionNames=[region])
        scores: dict[str, int] = {}
        for page in pages:
            for item in page.get("SpotPlacementScores", []):
                if item.get("AvailabilityZoneId") and item.get("Score") is not None:
                    scores[item["AvailabilityZoneId"]] = int(item["Score"])
        return scores
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in NOT_PERMITTED:
            logger.info("placement_scores_not_permitted", extra={"code": code})
        else:
            logger.warning("placement_scores_unavailable", extra={"code": code, "error": str(exc)})
        return None


def spot_plan(result: HuntResult, queues: Mapping[str, str]) -> RunPlan | None:
    chosen = result.chosen
    if chosen is None or chosen.az_id not in queues:  # the latter: the service raises NoQueueForZone
        return None
    return RunPlan(market="spot", job_queue=queues[chosen.az_id], instance_type=chosen.instance_type,
                   price_usd=chosen.spot_price_usd, az_id=chosen.az_id, availability_zone=chosen.availability_zone)


def on_demand_plan(instance_types: Sequence[str], region: str, queue: str) -> RunPlan:
    """On-Demand runs the first (preferred) instance type, at its list price."""
    instance_type = instance_types[0]
    return RunPlan(market="on-demand", job_queue=queue, instance_type=instance_type,
                   price_usd=on_demand_price(instance_type, region))


def hunt_zone(request: HuntInput, *, ec2: Any, store: PreemptionStore, region: str, spot_queues: Mapping[str, str],
              on_demand_queue: str, now: datetime, config: HunterConfig | None = None,
              use_placement_scores: bool = True) -> HuntOutput:
    config = config or HunterConfig()
    types = request.spec.instance_types
    names = {name: az for name, az in az_ids_by_name(ec2).items() if az in spot_queues}
    history = spot_price_history(ec2, types, start=now - config.window, end=now, az_ids=names)
    placement = placement_scores(ec2, types, region) if use_placement_scores else None
    preemptions = store.recent(spot_queues.keys(), since=now - config.window)
    result = hunt(history, instance_types=types, region=region, now=now, preemptions=preemptions,
                  placement_scores=placement, config=config)
    logger.info("zone_hunt", extra={"reason": result.reason, "rows": len(history),
                                    "preemptions": len(preemptions), "placement": placement is not None})
    return HuntOutput(reason=result.reason, chosen=result.chosen, scores=result.scores,
                      spot=spot_plan(result, spot_queues),
                      on_demand=on_demand_plan(types, region, on_demand_queue),
                      placement_scores="used" if placement is not None else "unavailable")
