"""The four task Lambdas' services: each takes the task's pydantic input and returns its pydantic output.

Clients come from ``finops.aws`` (cached, created on first use), tables from the settings; nothing here runs
at import time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from .. import aws
from ..ledger.repository import LedgerRepository
from ..settings import get_settings
from .attempts import book_attempt
from .errors import InvalidJobSpec, NoQueueForZone
from .hunter import Preemption
from .job_definition import revision_for_image
from .preemptions import PreemptionStore
from .progress import read_progress as _read_progress
from .settings import get_spot_settings
from .workflow import (
    AttemptInput,
    HuntInput,
    HuntOutput,
    JobSpec,
    PrepareInput,
    PrepareOutput,
    Progress,
    ProgressInput,
    RunTotals,
)
from .zone_hunt import hunt_zone

logger = Logger(child=True)


def _now() -> datetime:
    return datetime.now(UTC)


def prepare(request: PrepareInput) -> PrepareOutput:
    """Validate the spec and make sure a job definition revision runs its image."""
    try:
        spec = JobSpec.model_validate(request.spec)
    except ValidationError as exc:
        raise InvalidJobSpec(f"invalid job spec: {exc.errors(include_url=False)}") from None
    settings = get_spot_settings()
    arn = revision_for_image(aws.client("batch"), settings.base_job_definition, spec.image)
    return PrepareOutput(job_definition_arn=arn, run_id=request.run_id,
                         checkpoint_uri=f"s3://{settings.checkpoint_bucket}/{spec.checkpoint_prefix}",
                         total_steps=str(spec.total_steps), checkpoint_every=str(spec.checkpoint_every))


def hunt(request: HuntInput) -> HuntOutput:
    settings = get_spot_settings()
    output = hunt_zone(request, ec2=aws.client("ec2"), store=PreemptionStore(settings.preemptions_table),
                       region=aws.region(), spot_queues=settings.spot_queues,
                       on_demand_queue=settings.on_demand_queue, now=_now(),
                       use_placement_scores=settings.use_placement_scores)
    if output.chosen is not None and output.spot is None:
        raise NoQueueForZone(f"no Spot job queue for {output.chosen.az_id}")
    return output


def record_attempt(request: AttemptInput) -> RunTotals:
    """Book one finished job: a ledger row (its cost), a preemption row when the host was taken back."""
    booked = book_attempt(request, now=_now())
    settings = get_settings()
    LedgerRepository(settings.ledger_table, settings.ledger_shards).append(booked.entry)
    plan = request.plan
    if booked.outcome == "preempted" and plan.az_id is not None:
        PreemptionStore(get_spot_settings().preemptions_table).record(
            Preemption(az_id=plan.az_id, instance_type=plan.instance_type, at=booked.run.stopped_at or _now()),
            run_id=request.run_id, job_id=booked.run.job_id or "unknown")
    logger.info("spot_attempt", extra={"outcome": booked.outcome, "reason": booked.reason,
                                       "cost_usd": str(booked.entry.cost_usd), "market": plan.market,
                                       "az_id": plan.az_id, "totals": booked.totals.model_dump(mode="json")})
    return booked.totals


def read_progress(request: ProgressInput) -> Progress:
    return _read_progress(aws.client("s3"), request.checkpoint_uri, request.total_steps)
