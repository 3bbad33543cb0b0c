"""The state machine's boundary models and the exception tree's mapping to Step Functions Retry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from finops.errors import FinOpsError, InvalidRequest, ServiceUnavailable
from finops.spot import sfn_errors
from finops.spot.errors import InvalidJobSpec, NoQueueForZone
from finops.spot.workflow import BatchFailure, ExecutionInput, JobSpec, PrepareOutput, RunTotals
from pydantic import ValidationError


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "llama-ft", "image": "trainer:1", "instance_types": ["p3.2xlarge", "g5.xlarge"],
        "total_steps": 1000, "checkpoint_prefix": "runs/llama-ft", "max_cost_usd": "50",
        "tags": {"project_id": "llm", "user_id": "alice", "environment": "development"},
    }
    base.update(overrides)
    return base


def test_job_spec_money_is_decimal_and_defaults_follow_the_container_contract() -> None:
    parsed = JobSpec.model_validate(spec())
    assert parsed.max_cost_usd == Decimal("50") and isinstance(parsed.max_cost_usd, Decimal)
    assert parsed.checkpoint_every == 50
    assert parsed.max_preemptions == 3
    assert parsed.checkpoint_prefix == "runs/llama-ft/"
    assert parsed.instance_types == ("p3.2xlarge", "g5.xlarge")
    assert parsed.tags.department_id == "unallocated"
    assert ExecutionInput.model_validate({"spec": spec()}).spec == parsed


@pytest.mark.parametrize("overrides", [
    {"total_steps": 0}, {"max_cost_usd": "0"}, {"instance_types": []}, {"name": "bad name"},
    {"checkpoint_prefix": "s3://bucket/x"}, {"checkpoint_prefix": "a/../b"}, {"checkpoint_prefix": "/"},
    {"tags": {"project_id": "llm"}}, {"unknown": 1},
])
def test_job_spec_rejects(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate(spec(**overrides))


def test_run_totals_start_at_zero_and_round_trip_through_json() -> None:
    zero = RunTotals()
    assert (zero.attempts, zero.preemptions, zero.cost_usd, zero.limit_reached) == (0, 0, Decimal(0), False)
    dumped = RunTotals(cost_usd=Decimal("1.234567"), attempts=2).model_dump(mode="json")
    assert dumped["cost_usd"] == "1.234567"  # money stays exact on the wire
    assert RunTotals.model_validate(dumped).cost_usd == Decimal("1.234567")


def test_prepare_output_carries_container_environment_as_strings() -> None:
    out = PrepareOutput(job_definition_arn="arn", checkpoint_uri="s3://b/p/", run_id="r", total_steps="10",
                        checkpoint_every="50")
    assert all(isinstance(v, str) for v in out.model_dump().values())


def test_batch_failure_reads_the_catch_result_keys() -> None:
    failure = BatchFailure.model_validate({"Error": "States.TaskFailed", "Cause": "{}"})
    assert (failure.error, failure.cause) == ("States.TaskFailed", "{}")


def test_retryable_errors_are_the_service_unavailable_tree_by_exact_name() -> None:
    class DependencyDown(ServiceUnavailable):  # a new transient error is retried without touching the workflow
        pass

    names = sfn_errors.retryable_errors()
    assert "ServiceUnavailable" in names and "DependencyDown" in names
    assert set(sfn_errors.LAMBDA_SERVICE_ERRORS) <= set(names)
    for fatal in (InvalidRequest, InvalidJobSpec, NoQueueForZone, FinOpsError):
        assert fatal.__name__ not in names
    assert len(names) == len(set(names))
