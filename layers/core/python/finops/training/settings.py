"""The training container's environment contract (prefix ``FINOPS_``), read once by ``__main__``.

Set by the Batch job definition / containerOverrides: ``FINOPS_CHECKPOINT_URI`` (s3://bucket/prefix/),
``FINOPS_TOTAL_STEPS``, ``FINOPS_CHECKPOINT_EVERY`` (default 50), ``FINOPS_TIME_BOX_SECONDS`` (unset or empty:
no box), ``FINOPS_RUN_ID``. The rest have defaults that suit AWS.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from finops.training.interruption import DEFAULT_IMDS_ENDPOINT


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINOPS_", extra="ignore")

    checkpoint_uri: str
    total_steps: int = Field(gt=0)
    checkpoint_every: int = Field(default=50, gt=0)
    time_box_seconds: float | None = Field(default=None, gt=0)
    run_id: str = "local"
    seed: int = 0
    keep_checkpoints: int = Field(default=3, ge=1)
    # CPU threads for torch. Bit-exact resume needs the same value (and hardware) on every attempt.
    torch_threads: int = Field(default=1, ge=1)
    # "package.module:build" returning a finops.training.job.TrainingJob: how a real job swaps in its model.
    training_job: str = "finops.training.tiny:build"
    # IMDSv2 base URL polled for the Spot notice; empty disables the poller.
    imds_endpoint: str = DEFAULT_IMDS_ENDPOINT
    imds_poll_seconds: float = Field(default=5.0, gt=0)
    # After the notice and its checkpoint: how long to wait for the instance to be reclaimed (SIGTERM -> 143)
    # before giving up and exiting 0 with progress "not done" (the workflow then resumes it elsewhere).
    reclaim_wait_seconds: float = Field(default=150.0, ge=0)
    log_level: str = "INFO"

    @field_validator("time_box_seconds", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
