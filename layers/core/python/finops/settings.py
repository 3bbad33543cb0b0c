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
    """Where a provider lives and how the gateway authenticates to it.

    ``base_url`` is the API root for HTTP providers; for Bedrock it is an optional endpoint override (boto3's
    ``endpoint_url``). ``secret_name`` is the Secrets Manager secret holding the API key; Bedrock has none (IAM).
    """

    base_url: str | None = None
    secret_name: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # Bedrock: the AWS region of the runtime endpoint; None means AWS_REGION / AWS_DEFAULT_REGION at call time.
    region: str | None = None
    # Anthropic: the ``anthropic-version`` header.
    api_version: str | None = None
    # Anthropic: ``max_tokens`` to send when the request sets neither max_tokens nor
    # max_completion_tokens (Anthropic requires one).
    default_max_tokens: int = Field(default=4096, gt=0)


def _default_providers() -> dict[str, ProviderConfig]:
    return {
        "openai": ProviderConfig(base_url="https://api.openai.com/v1", secret_name="finops/providers/openai"),
        "groq": ProviderConfig(base_url="https://api.groq.com/openai/v1", secret_name="finops/providers/groq"),
        "anthropic": ProviderConfig(base_url="https://api.anthropic.com/v1",
                                    secret_name="finops/providers/anthropic"),
        "bedrock": ProviderConfig(),
    }


class RetryPolicy(BaseModel):
    """Bounded, jittered retries of one model before the next one in its fallback chain is tried."""

    attempts_per_model: int = Field(default=2, ge=1, le=5)
    max_attempts: int = Field(default=4, ge=1, le=10)  # over the whole chain
    base_delay_ms: int = Field(default=200, ge=0)
    max_delay_ms: int = Field(default=2000, ge=0)  # also the longest provider Retry-After honoured


class StreamPolicy(BaseModel):
    """How a streamed answer is held to its budget.

    A stream without ``max_tokens`` reserves the prompt plus ``reserve_tokens`` of output, and extends the
    reservation by another ``reserve_tokens`` whenever the answer gets close; ``on_budget_exhausted`` says
    what happens when an extension is refused: ``stop`` ends the stream there (finish_reason ``length``),
    ``allow`` lets it finish and charges the overrun at settlement.
    """

    reserve_tokens: int = Field(default=1024, ge=16)
    on_budget_exhausted: Literal["stop", "allow"] = "stop"


def _default_fallbacks() -> dict[str, tuple[str, ...]]:
    return {
        "gpt-4o": ("claude-sonnet-4-5", "llama-3.3-70b-versatile"),
        "claude-sonnet-4-5": ("gpt-4o", "llama-3.3-70b-versatile"),
        "gpt-4o-mini": ("claude-haiku-4-5", "llama-3.1-8b-instant"),
        "claude-haiku-4-5": ("gpt-4o-mini", "llama-3.1-8b-instant"),
        "llama-3.3-70b-versatile": ("gpt-4o-mini",),
        "llama-3.1-8b-instant": ("gpt-4o-mini",),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINOPS_", env_nested_delimiter="__", extra="ignore")

    enforcement_mode: Literal["enforce", "observe"] = "enforce"
    environments: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ENVIRONMENTS
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

    # Fallbacks: model -> the models to try next, in order, when it is rate-limited, overloaded, failing (5xx)
    # or too slow. Models the caller's tier may not use, or that no configured provider serves, are skipped.
    fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=_default_fallbacks)
    retry: RetryPolicy = Field(default_factory=lambda: RetryPolicy())
    stream: StreamPolicy = Field(default_factory=lambda: StreamPolicy())

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
