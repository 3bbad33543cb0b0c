"""Plumbing for the chargeback integration tests (imported by name).

Chargeback through the real gateway: calls on chosen UTC days through ``lambda_runtime.invoke("gateway", ...)``
under moto (the integration ``gateway_env``), then the exporter and FOCUS handlers against a moto S3 bucket.

The gateway's clock (``ChatGateway.now``, which stamps ledger rows) is set per call to place rows on both sides
of month boundaries; everything else (auth, tags, pricing, budgets and tax, settlement) is the real path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finops import aws
from finops.chargeback.store import S3Store, download_prefix
from finops.gateway import factory
from finops.ledger.entry import LedgerEntry
from finops.local import lambda_runtime

DEPARTMENTS = {"checkout-web": "retail", "search": "platform"}  # "orphan" maps to none
TAG_HEADERS = ("X-Project-ID", "X-User-ID", "X-Environment")
BIG = " ".join(["The quarterly spend review covers tokens, budgets and routing."] * 60)


@dataclass
class Traffic:
    moment: datetime
    project: str | None
    user: str
    environment: str = "production"
    model: str = "gpt-4o-mini"
    text: str = "What did we spend?"
    max_tokens: int = 32


@dataclass
class ChargebackEnv:
    gateway: Any  # tests/integration/conftest.py GatewayEnv
    bucket: str
    tmp: Path
    load_event: Any
    sent: list[tuple[Traffic, int]] = field(default_factory=list)

    @property
    def s3(self) -> Any:
        return aws.client("s3")

    @property
    def store(self) -> S3Store:
        return S3Store(self.bucket, self.s3)

    def call(self, traffic: Traffic) -> int:
        gw = factory.gateway()
        gw.now = lambda: traffic.moment  # the ledger row's ts
        headers = {"X-Project-ID": traffic.project, "X-User-ID": traffic.user, "X-Environment": traffic.environment}
        event = self.load_event("chat_completion", drop=TAG_HEADERS,
                                headers={k: v for k, v in headers.items() if v is not None},
                                body={"model": traffic.model, "max_tokens": traffic.max_tokens,
                                      "messages": [{"role": "user", "content": traffic.text}]})
        status = self.gateway.invoke(event).status
        self.sent.append((traffic, status))
        return status

    def entries(self) -> list[LedgerEntry]:
        """The ledger as DynamoDB holds it (a test-side scan): the independent source of truth."""
        return self.gateway.entries()

    def export(self, event: dict[str, Any]) -> dict[str, Any]:
        return lambda_runtime.invoke("exporter", event)

    def focus(self, event: dict[str, Any]) -> dict[str, Any]:
        return lambda_runtime.invoke("focus_export", event)

    def mirror(self, prefix: str = "") -> Path:
        """Download the bucket (or a prefix of it) into a fresh local directory; DuckDB reads that."""
        dest = Path(self.tmp / f"mirror-{len(list(self.tmp.glob('mirror-*')))}")
        download_prefix(self.store, prefix, dest)
        return dest

    def objects(self, prefix: str = "") -> dict[str, int]:
        return self.store.list(prefix)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
