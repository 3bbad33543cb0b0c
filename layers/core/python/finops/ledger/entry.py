"""A ledger entry as the domain sees it (pydantic); ``repository`` turns it into a DynamoDB item."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, Field, NonNegativeInt, field_validator

from ..pricing import Usage


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def shard_of(request_id: str, shards: int) -> int:
    return zlib.crc32(request_id.encode()) % shards


class LedgerEntry(BaseModel, frozen=True):
    request_id: str = Field(min_length=1, max_length=128)
    ts: datetime
    kind: str = "chat"
    project_id: str
    user_id: str
    environment: str
    department_id: str
    unallocated_tags: tuple[str, ...] = ()
    requested_model: str
    model: str
    provider: str
    input_tokens: NonNegativeInt = 0
    cached_input_tokens: NonNegativeInt = 0
    cache_write_input_tokens: NonNegativeInt = 0  # prompt tokens written to the provider's prompt cache
    output_tokens: NonNegativeInt = 0
    usage_source: str = "provider"
    cost_usd: Decimal = Decimal(0)
    price_version: str
    status: str
    http_status: int
    error_code: str | None = None
    latency_ms: NonNegativeInt = 0
    stream: bool = False
    key_id: str | None = None
    tier: str | None = None
    reserved_usd: Decimal = Decimal(0)  # worst case reserved at admission
    tax_usd: Decimal = Decimal(0)  # tax-mode surcharge on top of cost_usd
    budget_bypassed: bool = False  # admitted without a reservation (budget store down, fail-open)
    # Routing: what the same usage would have cost on the reference (strong) model, for savings reports.
    counterfactual_usd: Decimal = Decimal(0)
    route_strategy: str | None = None  # None: the requested model was used as asked
    # Retries and fallbacks: every attempt of a call is its own row (request_id "<id>.<n>" for n > 0),
    # all sharing parent_request_id; the billed one has status "ok" (or a stream's interruption status).
    attempt: NonNegativeInt = 0
    parent_request_id: str | None = None

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    @property
    def usage(self) -> Usage:
        """The tokens this row was priced at."""
        return Usage(prompt_tokens=self.input_tokens, completion_tokens=self.output_tokens,
                     cached_tokens=self.cached_input_tokens, cache_write_tokens=self.cache_write_input_tokens)

    @property
    def day(self) -> str:
        return self.ts.strftime("%Y-%m-%d")

    def day_shard(self, shards: int) -> str:
        return f"{self.day}#{shard_of(self.request_id, shards):02d}"
