"""Gateway configuration, read once per process from the environment (prefix ``FINOPS_``).

Nothing here is read at import time: call :func:`get_settings` (cached) from a handler or service.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ENVIRONMENTS = ("production", "staging", "development", "test")


class ProviderConfig(BaseModel):
    """Where a provider lives and where its API key is kept."""

    base_url: str
    secret_name: str
    timeout_seconds: float = Field(default=60.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)


def _default_providers() -> dict[str, ProviderConfig]:
    return {
        "openai": ProviderConfig(base_url="https://api.openai.com/v1", secret_name="finops/providers/openai"),
        "groq": ProviderConfig(base_url="https://api.groq.com/openai/v1", secret_name="finops/providers/groq"),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINOPS_", env_nested_delimiter="__", extra="ignore")

    enforcement_mode: Literal["enforce", "observe"] = "enforce"
    environments: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ENVIRONMENTS
    unallocated: str = "unallocated"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    # "keys": every call needs Authorization: Bearer <virtual key>. "none": calls are booked to an
    # anonymous key on ``anonymous_tier`` (still metered, still behind the breaker).
    auth_mode: Literal["keys", "none"] = "keys"
    anonymous_tier: str = "enterprise"
    key_cache_seconds: float = Field(default=30.0, ge=0)

    ledger_table: str = "finops-ledger"
    keys_table: str = "finops-keys"
    budgets_table: str = "finops-budgets"
    budget_policy_path: str | None = None
    alerts_topic_arn: str | None = None
    alerts_event_bus: str | None = None
    ledger_shards: int = Field(default=8, ge=1, le=256)

    # A price catalog file to use instead of the one shipped in finops/data/prices.json.
    price_catalog_path: str | None = None

    # project id -> department id; unknown projects are booked to ``unallocated``.
    project_departments: dict[str, str] = Field(default_factory=dict)

    providers: dict[str, ProviderConfig] = Field(default_factory=_default_providers)
    # Seconds a provider key fetched from Secrets Manager is cached in the warm function.
    secret_max_age_seconds: int = 300

    @field_validator("environments", mode="before")
    @classmethod
    def _split_environments(cls, value: object) -> object:
        """``production,staging`` or a JSON list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
