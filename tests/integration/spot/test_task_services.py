"""ValidateJobSpec's job definition revision and ReadProgress's progress.json, against moto (Batch, S3)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from finops.spot.errors import InvalidJobSpec, SpotTrainingError
from finops.spot.job_definition import revision_for_image
from finops.spot.progress import read_progress
from finops.spot.service import prepare
from finops.spot.settings import get_spot_settings
from finops.spot.workflow import PrepareInput

RETRY = {"attempts": 2, "evaluateOnExit": [{"onStatusReason": "Host EC2*", "action": "RETRY"},
                                           {"onReason": "*", "action": "EXIT"}]}


def register_base(batch: Any, name: str) -> str:
    return batch.register_job_definition(
        jobDefinitionName=name, type="container", retryStrategy=RETRY, propagateTags=True,
        containerProperties={"image": "base:latest", "resourceRequirements": [{"type": "VCPU", "value": "8"},
                                                                              {"type": "MEMORY", "value": "59000"}],
                             "environment": [{"name": "FINOPS_CHECKPOINT_EVERY", "value": "50"}]},
    )["jobDefinitionArn"]


def test_a_new_image_gets_one_revision_that_keeps_the_retry_strategy(moto_aws: str) -> None:
    batch = boto3.client("batch", region_name="us-east-1")
    name = f"it-training-{moto_aws}"
    base = register_base(batch, name)
    arn = revision_for_image(batch, name, "trainer:2")
    assert arn != base and arn.endswith(":2")
    (described,) = batch.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
    assert described["containerProperties"]["image"] == "trainer:2"
    assert [{**e, "action": e["action"].upper()} for e in described["retryStrategy"]["evaluateOnExit"]] == \
        RETRY["evaluateOnExit"]  # Batch answers the actions in lower case
    assert described["containerProperties"]["environment"] == [{"name": "FINOPS_CHECKPOINT_EVERY", "value": "50"}]
    assert revision_for_image(batch, name, "trainer:2") == arn  # the same image: no new revision


def test_a_missing_base_job_definition_is_a_typed_error(moto_aws: str) -> None:
    with pytest.raises(SpotTrainingError, match="no ACTIVE revision"):
        revision_for_image(boto3.client("batch", region_name="us-east-1"), f"absent-{moto_aws}", "x")


def test_progress_json_is_read_and_a_missing_one_means_step_zero(moto_aws: str) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = f"it-checkpoints-{moto_aws}"
    s3.create_bucket(Bucket=bucket)
    assert read_progress(s3, f"s3://{bucket}/runs/a/", 1000).model_dump() == {
        "step": 0, "total_steps": 1000, "done": False}
    s3.put_object(Bucket=bucket, Key="runs/a/progress.json",
                  Body=json.dumps({"step": 1000, "total_steps": 1000, "done": True}).encode())
    assert read_progress(s3, f"s3://{bucket}/runs/a/", 1000).done is True


def test_prepare_rejects_an_invalid_spec_before_touching_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_SPOT_BASE_JOB_DEFINITION", "never-read")
    get_spot_settings.cache_clear()
    with pytest.raises(InvalidJobSpec, match="total_steps"):
        prepare(PrepareInput(spec={"name": "x", "total_steps": 0}, run_id="r"))
    get_spot_settings.cache_clear()
