"""The container's environment contract."""

from __future__ import annotations

import pytest
from finops.training.checkpoint import S3Location
from finops.training.job import load_builder
from finops.training.settings import TrainingSettings
from pydantic import ValidationError


def test_contract_variables_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_CHECKPOINT_URI", "s3://bucket/jobs/j1/")
    monkeypatch.setenv("FINOPS_TOTAL_STEPS", "1000")
    monkeypatch.setenv("FINOPS_RUN_ID", "attempt-3")
    settings = TrainingSettings()

    assert settings.checkpoint_every == 50 and settings.time_box_seconds is None
    assert settings.run_id == "attempt-3" and settings.total_steps == 1000
    assert settings.imds_endpoint == "http://169.254.169.254"
    assert settings.training_job == "finops.training.tiny:build"


@pytest.mark.parametrize(("raw", "want"), [("600", 600.0), ("", None), ("  ", None)])
def test_time_box_empty_means_no_box(monkeypatch: pytest.MonkeyPatch, raw: str, want: float | None) -> None:
    monkeypatch.setenv("FINOPS_TIME_BOX_SECONDS", raw)
    assert TrainingSettings(checkpoint_uri="s3://b/p/", total_steps=1).time_box_seconds == want


@pytest.mark.parametrize("env", [{}, {"FINOPS_CHECKPOINT_URI": "s3://b/p/"}, {"FINOPS_CHECKPOINT_URI": "s3://b/p/",
                                                                            "FINOPS_TOTAL_STEPS": "0"}])
def test_missing_or_invalid_contract_is_an_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        TrainingSettings()


@pytest.mark.parametrize(("uri", "bucket", "prefix"), [
    ("s3://bkt/jobs/j1/", "bkt", "jobs/j1/"), ("s3://bkt/jobs/j1", "bkt", "jobs/j1/"), ("s3://bkt", "bkt", ""),
    ("s3://bkt/", "bkt", ""),
])
def test_s3_location_parse(uri: str, bucket: str, prefix: str) -> None:
    assert S3Location.parse(uri) == S3Location(bucket=bucket, prefix=prefix)


@pytest.mark.parametrize("uri", ["bkt/jobs", "s3:///jobs", "https://bkt.s3.amazonaws.com/x"])
def test_s3_location_rejects(uri: str) -> None:
    with pytest.raises(ValueError, match=r"s3://|bucket"):
        S3Location.parse(uri)


def test_job_hook_loads_a_builder_by_name() -> None:
    from finops.training import tiny

    assert load_builder("finops.training.tiny:build") is tiny.build
    for bad in ("finops.training.tiny", ":build", "finops.training.tiny:"):
        with pytest.raises(ValueError, match=r"package\.module:build"):
            load_builder(bad)
    with pytest.raises(TypeError):
        load_builder("finops.training.tiny:SAMPLES")


def test_empty_imds_endpoint_disables_the_poller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_IMDS_ENDPOINT", "")
    assert TrainingSettings(checkpoint_uri="s3://b/p/", total_steps=1).imds_endpoint == ""
