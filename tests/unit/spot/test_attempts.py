"""An attempt's cost (instance-hours x price), its ledger entry, the outcome read from Batch, the totals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from finops.spot.attempts import book_attempt, is_preemption, parse_cause, parse_job
from finops.spot.workflow import AttemptInput, BatchFailure, RunPlan, RunTotals

EVENTS = Path(__file__).resolve().parents[3] / "events"
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
T0 = int(datetime(2026, 11, 29, 9, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
SPOT = RunPlan(market="spot", job_queue="q", instance_type="p3.2xlarge", price_usd=Decimal("0.918"),
               az_id="use1-az2", availability_zone="us-east-1c")
ON_DEMAND = RunPlan(market="on-demand", job_queue="q", instance_type="p3.2xlarge", price_usd=Decimal("3.06"))
SPEC = {"name": "ft", "image": "i", "instance_types": ["p3.2xlarge"], "total_steps": 100, "checkpoint_prefix": "p",
        "max_cost_usd": "5", "max_preemptions": 1,
        "tags": {"project_id": "llm", "user_id": "bob", "environment": "production", "department_id": "r&d"}}


def job_pascal(status: str, reason: str | None, spans: list[tuple[int, int]], exit_code: int | None = None) -> dict:
    """A job description as Step Functions gives it (PascalCase)."""
    job: dict[str, Any] = {"JobId": "job-1", "Status": status,
                           "Attempts": [{"StartedAt": a, "StoppedAt": b} for a, b in spans],
                           "StartedAt": spans[0][0], "StoppedAt": spans[-1][1]}
    if reason:
        job["StatusReason"] = reason
    if exit_code is not None:
        job["Container"] = {"ExitCode": exit_code}
    return job


def attempt(plan: RunPlan, *, job: dict | None = None, failure: dict | None = None,
            totals: RunTotals | None = None) -> AttemptInput:
    return AttemptInput(spec=SPEC, run_id="run-1", plan=plan, totals=totals or RunTotals(), job=job,
                        failure=BatchFailure.model_validate(failure) if failure else None)


@pytest.mark.parametrize(("reason", "expected"), [
    ("Host EC2 (instance i-0abc) terminated.", True), ("Host EC2 (instance i-1) terminated", True),
    ("Essential container in task exited", False), ("", False), (None, False), ("host EC2 lost", False)])
def test_is_preemption_is_the_batch_host_ec2_pattern(reason: str | None, expected: bool) -> None:
    assert is_preemption(reason) is expected


def test_parse_job_sums_every_attempt_in_either_spelling() -> None:
    pascal = job_pascal("FAILED", "Host EC2 (instance i-1) terminated.",
                        [(T0, T0 + HOUR), (T0 + HOUR, T0 + 90 * 60_000)])
    camel = {"jobId": "job-1", "status": "FAILED", "statusReason": pascal["StatusReason"],
             "attempts": [{"startedAt": T0, "stoppedAt": T0 + HOUR}, {"startedAt": T0 + HOUR,
                                                                      "stoppedAt": T0 + 90 * 60_000}]}
    for job in (pascal, camel):
        run = parse_job(job)
        assert run.run_ms == 90 * 60_000 and run.hours == Decimal("1.5")
        assert run.stopped_at == datetime(2026, 11, 29, 10, 30, tzinfo=UTC)
        assert run.job_id == "job-1" and run.status == "FAILED"


def test_parse_cause_of_a_non_job_is_none() -> None:
    assert parse_cause("States.Timeout: the task timed out") is None
    assert parse_cause(json.dumps(["not", "a", "job"])) is None


def test_a_succeeded_spot_run_costs_hours_times_the_spot_price_under_the_spec_tags() -> None:
    booked = book_attempt(attempt(SPOT, job=job_pascal("SUCCEEDED", None, [(T0, T0 + 2 * HOUR)], 0)), now=NOW)
    assert booked.outcome == "succeeded"
    entry = booked.entry
    assert entry.cost_usd == Decimal("1.836000")  # 2 h x $0.918
    assert (entry.kind, entry.provider, entry.model, entry.status) == ("training", "aws-batch-spot", "p3.2xlarge", "ok")
    assert (entry.project_id, entry.user_id, entry.environment, entry.department_id) == (
        "llm", "bob", "production", "r&d")
    assert entry.request_id == "spot:run-1:1:job-1"
    assert entry.ts == datetime(2026, 11, 29, 11, tzinfo=UTC)
    assert entry.latency_ms == 2 * HOUR
    assert booked.totals.spot_seconds == 7200 and booked.totals.on_demand_seconds == 0
    assert booked.totals.cost_usd == Decimal("1.836000") and not booked.totals.limit_reached


def test_ten_on_demand_minutes_cost_a_sixth_of_the_hourly_price() -> None:
    booked = book_attempt(attempt(ON_DEMAND, job=job_pascal("SUCCEEDED", None, [(T0, T0 + 600_000)], 0)), now=NOW)
    assert booked.entry.cost_usd == Decimal("0.510000")
    assert booked.entry.provider == "aws-batch-on-demand"
    assert booked.totals.on_demand_seconds == 600


def test_a_preempted_run_is_booked_and_counted() -> None:
    cause = json.dumps(job_pascal("FAILED", "Host EC2 (instance i-1) terminated.", [(T0, T0 + HOUR)]))
    booked = book_attempt(attempt(SPOT, failure={"Error": "States.TaskFailed", "Cause": cause}), now=NOW)
    assert booked.outcome == "preempted"
    assert (booked.entry.status, booked.entry.error_code) == ("preempted", "spot_preempted")
    assert booked.entry.cost_usd == Decimal("0.918000")
    assert booked.totals.preemptions == 1 and booked.totals.last_outcome == "preempted"
    assert not booked.totals.limit_reached  # max_preemptions = 1 tolerates one


def test_a_failed_run_reports_its_reason_and_exit_code() -> None:
    cause = json.dumps(job_pascal("FAILED", "Essential container in task exited", [(T0, T0 + 60_000)], 1))
    booked = book_attempt(attempt(SPOT, failure={"Error": "States.TaskFailed", "Cause": cause}), now=NOW)
    assert booked.outcome == "failed"
    assert booked.totals.last_reason == "Essential container in task exited (exit code 1)"
    assert booked.entry.error_code == "training_failed" and booked.entry.cost_usd == Decimal("0.015300")


def test_a_timed_out_state_is_a_failure_that_costs_nothing_known() -> None:
    booked = book_attempt(attempt(ON_DEMAND, failure={"Error": "States.Timeout", "Cause": "timed out"}), now=NOW)
    assert booked.outcome == "failed" and booked.entry.cost_usd == 0 and booked.entry.ts == NOW
    assert booked.totals.last_reason == "States.Timeout: timed out"


def test_totals_accumulate_and_the_dollar_cap_and_preemption_limit_trip() -> None:
    before = RunTotals(attempts=2, preemptions=1, cost_usd=Decimal("4.5"), spot_seconds=100)
    cause = json.dumps(job_pascal("FAILED", "Host EC2 (instance i-2) terminated.", [(T0, T0 + HOUR)]))
    booked = book_attempt(attempt(SPOT, failure={"Error": "States.TaskFailed", "Cause": cause}, totals=before),
                          now=NOW)
    totals = booked.totals
    assert (totals.attempts, totals.preemptions) == (3, 2)
    assert totals.cost_usd == Decimal("5.418000") and totals.spot_seconds == 3700
    assert totals.limit_reached
    assert totals.limit_reason == "dollar cap reached: $5.418000 of $5; too many preemptions: 2 > 1"
    assert booked.entry.request_id == "spot:run-1:3:job-1"


def test_the_sample_preemption_event_books_both_lost_attempts() -> None:
    event = AttemptInput.model_validate_json((EVENTS / "spot_attempt_preempted.json").read_text())
    booked = book_attempt(event, now=NOW)
    assert booked.outcome == "preempted"
    assert booked.run.run_ms == 3_600_000 + 1_740_000  # Batch retried the lost host once in place
    assert booked.entry.cost_usd == Decimal("1.361700")  # 5340 s x $0.918/h
    assert booked.entry.project_id == "llm-finetune" and booked.entry.request_id.startswith("spot:run-0001:1:")
