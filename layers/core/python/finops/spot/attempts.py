"""One Batch job of the workflow as money: instance-hours x price, a ledger entry, and the new running totals.

A job's description comes from Step Functions: after ``submitJob.sync`` succeeds it is the task's output;
when the job fails it is the Catch's ``Cause`` (a JSON string). Real Step Functions spells its keys in
PascalCase (``StartedAt``, ``StatusReason``, ``Attempts``), the Batch API (and moto) in camelCase; both are
read. A job that Batch retried in place (the job definition's ``Host EC2*`` retry) ran on several
instances: every attempt's running time is billed.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..ledger.entry import LedgerEntry
from .workflow import AttemptInput, Outcome, RunPlan, RunTotals

# The Batch status reason of a job whose instance went away (a Spot interruption, or a lost host):
# "Host EC2 (instance i-0123456789abcdef0) terminated." The job definition's retry strategy uses the same pattern.
PREEMPTION_REASON_PATTERN = "Host EC2*"
PROVIDERS = {"spot": "aws-batch-spot", "on-demand": "aws-batch-on-demand"}
PRICE_VERSIONS = {"spot": "ec2-spot-price-history", "on-demand": "ec2-on-demand-list-price"}
LEDGER_KIND = "training"
USD_PLACES = Decimal("0.000001")
MS_PER_HOUR = Decimal(3_600_000)


def is_preemption(status_reason: str | None) -> bool:
    return bool(status_reason) and fnmatch.fnmatchcase(status_reason, PREEMPTION_REASON_PATTERN)


def _lower_keys(value: Any) -> Any:
    """PascalCase keys (Step Functions) -> camelCase (the Batch API), recursively."""
    if isinstance(value, Mapping):
        return {(k[:1].lower() + k[1:] if isinstance(k, str) else k): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


@dataclass(frozen=True)
class JobRun:
    """What the ledger needs from a Batch job description."""

    job_id: str
    status: str
    status_reason: str
    run_ms: int  # summed over attempts
    started_at: datetime | None
    stopped_at: datetime | None
    exit_code: int | None

    @property
    def hours(self) -> Decimal:
        return Decimal(self.run_ms) / MS_PER_HOUR


def _ms_to_utc(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC) if ms is not None else None


def parse_job(job: Mapping[str, Any]) -> JobRun:
    """A Batch job description (either spelling) -> the job's id, outcome and billed running time."""
    job = _lower_keys(job)
    attempts = job.get("attempts") or []
    spans = [(a.get("startedAt"), a.get("stoppedAt")) for a in attempts if a.get("startedAt") is not None]
    if not spans and job.get("startedAt") is not None:
        spans = [(job.get("startedAt"), job.get("stoppedAt"))]
    run_ms = sum(max(int(stop) - int(start), 0) for start, stop in spans if stop is not None)
    reason = job.get("statusReason") or next(
        (a.get("statusReason") for a in reversed(attempts) if a.get("statusReason")), "")
    exit_code = (job.get("container") or {}).get("exitCode")
    return JobRun(
        job_id=str(job.get("jobId") or ""),
        status=str(job.get("status") or ""),
        status_reason=str(reason),
        run_ms=run_ms,
        started_at=_ms_to_utc(spans[0][0]) if spans else None,
        stopped_at=_ms_to_utc(job.get("stoppedAt") or (spans[-1][1] if spans else None)),
        exit_code=int(exit_code) if exit_code is not None else None,
    )


def parse_cause(cause: str) -> JobRun | None:
    """The Catch's Cause -> the job, or None when it is not a job description (e.g. States.Timeout text)."""
    try:
        job = json.loads(cause)
    except (TypeError, ValueError):
        return None
    return parse_job(job) if isinstance(job, dict) else None


def attempt_cost(plan: RunPlan, run: JobRun) -> Decimal:
    """Instance-hours x the plan's hourly price, rounded to a millionth of a dollar."""
    return (run.hours * plan.price_usd).quantize(USD_PLACES, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class BookedAttempt:
    outcome: Outcome
    reason: str
    run: JobRun
    entry: LedgerEntry
    totals: RunTotals


def _outcome(attempt: AttemptInput) -> tuple[Outcome, str, JobRun]:
    if attempt.job is not None and attempt.failure is None:
        run = parse_job(attempt.job)
        return "succeeded", run.status_reason or "job succeeded", run
    failure = attempt.failure
    run = parse_cause(failure.cause) if failure is not None else None
    if run is None:  # no job description: the task timed out or Step Functions failed it
        text = f"{failure.error}: {failure.cause}" if failure is not None else "no job result"
        return "failed", text.strip(": "), JobRun("", "FAILED", text, 0, None, None, None)
    if is_preemption(run.status_reason):
        return "preempted", run.status_reason, run
    reason = run.status_reason or "job failed"
    if run.exit_code is not None:
        reason = f"{reason} (exit code {run.exit_code})"
    return "failed", reason, run


def book_attempt(attempt: AttemptInput, *, now: datetime) -> BookedAttempt:
    """The ledger entry of one finished job and the execution's new totals (pure: no I/O)."""
    outcome, reason, run = _outcome(attempt)
    plan, spec, before = attempt.plan, attempt.spec, attempt.totals
    number = before.attempts + 1
    cost = attempt_cost(plan, run)
    seconds = run.run_ms // 1000
    entry = LedgerEntry(
        # one row per job: a retried Lambda books nothing twice
        request_id=f"spot:{attempt.run_id}:{number}:{run.job_id or 'none'}"[:128],
        ts=run.stopped_at or now,
        kind=LEDGER_KIND,
        project_id=spec.tags.project_id,
        user_id=spec.tags.user_id,
        environment=spec.tags.environment,
        department_id=spec.tags.department_id,
        requested_model=spec.instance_types[0],
        model=plan.instance_type,
        provider=PROVIDERS[plan.market],
        usage_source="aws-batch",
        cost_usd=cost,
        price_version=PRICE_VERSIONS[plan.market],
        status={"succeeded": "ok", "preempted": "preempted", "failed": "failed"}[outcome],
        http_status=0,  # not an HTTP call
        error_code=None if outcome == "succeeded" else ("spot_preempted" if outcome == "preempted"
                                                          else "training_failed"),
        latency_ms=run.run_ms,
        route_strategy=f"{plan.market}:{plan.az_id}" if plan.az_id else plan.market,
    )
    total_cost = before.cost_usd + cost
    preemptions = before.preemptions + (outcome == "preempted")
    limits = []
    if total_cost >= spec.max_cost_usd:
        limits.append(f"dollar cap reached: ${total_cost:f} of ${spec.max_cost_usd:f}")
    if preemptions > spec.max_preemptions:
        limits.append(f"too many preemptions: {preemptions} > {spec.max_preemptions}")
    totals = RunTotals(
        attempts=number,
        preemptions=preemptions,
        cost_usd=total_cost,
        spot_seconds=before.spot_seconds + (seconds if plan.market == "spot" else 0),
        on_demand_seconds=before.on_demand_seconds + (seconds if plan.market == "on-demand" else 0),
        last_outcome=outcome,
        last_reason=reason,
        limit_reached=bool(limits),
        limit_reason="; ".join(limits),
    )
    return BookedAttempt(outcome=outcome, reason=reason, run=run, entry=entry, totals=totals)
