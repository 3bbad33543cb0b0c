"""The spot-training state machine's boundary: its input (``JobSpec``) and every task's input and output.

The execution's state (what the Lambda tasks read with JSONPath) is laid out as::

    $.spec     JobSpec, the execution input's ``spec``
    $.job      PrepareOutput  (ValidateJobSpec: job definition revision, checkpoint URI, run id)
    $.totals   RunTotals      (Pass InitTotals, then every Record* state)
    $.hunt     HuntOutput     (HuntZone: the chosen Spot plan, the On-Demand plan, every zone's score)
    $.current  RunPlan        (which queue/zone/instance type the next Batch job uses, and its hourly price)
    $.run      the Batch job's description after a successful ``submitJob.sync``
    $.failure  {"Error", "Cause"} of a failed run (Cause: the job's description as JSON)
    $.progress Progress       (ReadProgress: progress.json of the checkpoint prefix)

Money is Decimal (a JSON string on the wire), times are timezone-aware UTC.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator

from ..tags import UNALLOCATED
from .hunter import ZoneScore

Market = Literal["spot", "on-demand"]
Outcome = Literal["none", "succeeded", "preempted", "failed"]

JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"


class ProjectTags(BaseModel, frozen=True):
    """Who pays: the same cost tags the gateway books chat calls under, so training lands in chargeback."""

    project_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    environment: str = Field(min_length=1, max_length=64)
    department_id: str = Field(default=UNALLOCATED, min_length=1, max_length=128)


class JobSpec(BaseModel, frozen=True):
    """One training job: what to run, on which instance types, how far, and how much it may cost."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=JOB_NAME_PATTERN)
    image: str = Field(min_length=1, max_length=1024)  # container image URI (the training entrypoint)
    instance_types: tuple[str, ...] = Field(min_length=1)  # interchangeable for the job, preferred first
    total_steps: PositiveInt
    checkpoint_every: PositiveInt = 50
    checkpoint_prefix: str = Field(min_length=1, max_length=512)  # key prefix in the checkpoint bucket
    max_cost_usd: Decimal = Field(gt=0)  # the job's dollar cap: stop and alert once reached
    max_preemptions: NonNegativeInt = 3  # preemptions tolerated: one more stops the job and alerts
    tags: ProjectTags

    @field_validator("checkpoint_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or value.startswith("s3:") or ".." in value.split("/"):
            raise ValueError("checkpoint_prefix is a key prefix inside the checkpoint bucket, e.g. 'llama-ft/run-1'")
        return value + "/"


class ExecutionInput(BaseModel, frozen=True):
    """``StartExecution`` input: ``{"spec": {...}}``."""

    spec: JobSpec


class PrepareInput(BaseModel, frozen=True):
    spec: dict[str, Any]  # validated here (a bad spec fails the execution with InvalidJobSpec)
    run_id: str = Field(min_length=1, max_length=80)


class PrepareOutput(BaseModel, frozen=True):
    """What the Batch tasks need; the container's environment values are strings, as Batch requires."""

    job_definition_arn: str  # a revision of the base job definition running ``spec.image``
    checkpoint_uri: str  # s3://bucket/prefix/ (FINOPS_CHECKPOINT_URI)
    run_id: str  # FINOPS_RUN_ID: the execution's name
    total_steps: str  # FINOPS_TOTAL_STEPS
    checkpoint_every: str  # FINOPS_CHECKPOINT_EVERY


class RunPlan(BaseModel, frozen=True):
    """Where the next Batch job runs and what an hour of it costs."""

    market: Market
    job_queue: str
    instance_type: str
    price_usd: Decimal  # per instance-hour: the Spot price the hunter saw, or the On-Demand list price
    az_id: str | None = None  # the zone a Spot plan is pinned to (On-Demand: any zone of the region)
    availability_zone: str | None = None


class HuntInput(BaseModel, frozen=True):
    spec: JobSpec
    run_id: str


class HuntOutput(BaseModel, frozen=True):
    """What the console shows for HuntZone: the choice, the reason, and every zone's score and reason."""

    reason: str
    chosen: ZoneScore | None
    scores: list[ZoneScore]
    spot: RunPlan | None  # None: no eligible zone, run On-Demand
    on_demand: RunPlan
    placement_scores: Literal["used", "unavailable"]


class RunTotals(BaseModel, frozen=True):
    """The running totals of one execution, returned by every Record* state; the Choice states read them."""

    attempts: NonNegativeInt = 0
    preemptions: NonNegativeInt = 0
    cost_usd: Decimal = Decimal(0)
    spot_seconds: NonNegativeInt = 0
    on_demand_seconds: NonNegativeInt = 0
    last_outcome: Outcome = "none"
    last_reason: str = ""
    limit_reached: bool = False
    limit_reason: str = ""


class BatchFailure(BaseModel, frozen=True):
    """A Catch's ``$.failure``: ``Error`` (States.TaskFailed, States.Timeout) and ``Cause`` (job JSON or text)."""

    model_config = ConfigDict(populate_by_name=True)

    error: str = Field(default="", alias="Error")
    cause: str = Field(default="", alias="Cause")


class AttemptInput(BaseModel, frozen=True):
    """One finished Batch job to book: its plan, and either the job (success) or the Catch's failure."""

    spec: JobSpec
    run_id: str
    plan: RunPlan
    totals: RunTotals
    job: dict[str, Any] | None = None
    failure: BatchFailure | None = None


class ProgressInput(BaseModel, frozen=True):
    checkpoint_uri: str
    total_steps: PositiveInt


class Progress(BaseModel, frozen=True):
    """``progress.json`` the training container writes next to its checkpoints."""

    step: NonNegativeInt = 0
    total_steps: PositiveInt
    done: bool = False
