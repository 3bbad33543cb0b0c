"""Spot-training task configuration, read once per process from the environment (prefix ``FINOPS_SPOT_``).

The CDK construct sets every variable; nothing is read at import time (call :func:`get_spot_settings`).
The ledger table and its shard count are the gateway's own settings (``FINOPS_LEDGER_TABLE``,
``FINOPS_LEDGER_SHARDS``), so training rows land in the same ledger.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SpotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINOPS_SPOT_", extra="ignore")

    preemptions_table: str = "finops-spot-preemptions"
    # AZ ID -> the ARN of the Spot job queue whose compute environment is pinned to that zone (JSON object)
    spot_queues: dict[str, str] = Field(default_factory=dict)
    on_demand_queue: str = ""
    checkpoint_bucket: str = ""
    base_job_definition: str = ""  # name of the job definition whose revisions run each spec's image
    use_placement_scores: bool = True


@lru_cache(maxsize=1)
def get_spot_settings() -> SpotSettings:
    return SpotSettings()
