"""Composition root for the chargeback functions and CLI: settings, the ledger, the store, the price book.

Settings come from the environment (prefix ``FINOPS_``), read when first asked for, never at import time:
``FINOPS_CHARGEBACK_BUCKET`` selects S3; without it the local directory ``FINOPS_CHARGEBACK_DIR``
(default ``.local/chargeback``) stands in for the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .. import aws
from ..ledger.repository import LedgerRepository
from ..pricing import load_catalog
from ..settings import get_settings
from .engine import AthenaQueries
from .export import ROWS_PER_FILE, DayExport, FocusExport, export_day, export_focus_month
from .store import LocalStore, ObjectStore, S3Store
from .transform import PriceBook

GLUE_DATABASE = "finops_chargeback"
ATHENA_WORKGROUP = "finops-chargeback"
USAGE_TABLE = "usage"
FOCUS_TABLE = "focus"


class ChargebackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINOPS_", extra="ignore")

    chargeback_bucket: str | None = None
    chargeback_dir: str = ".local/chargeback"
    athena_workgroup: str = ATHENA_WORKGROUP
    athena_database: str = GLUE_DATABASE
    export_rows_per_file: int = Field(default=ROWS_PER_FILE, ge=1)
    work_dir: str | None = None  # scratch space (Lambda: /tmp); default: the system temp dir
    # by_day shards read at once by the export (DynamoDB query pages are network-bound; 1 = one after another)
    export_readers: int = Field(default=8, ge=1, le=64)


@lru_cache(maxsize=1)
def get_chargeback_settings() -> ChargebackSettings:
    return ChargebackSettings()


def reset() -> None:
    get_chargeback_settings.cache_clear()


def store(settings: ChargebackSettings | None = None, *, bucket: str | None = None,
          directory: str | Path | None = None) -> ObjectStore:
    """An explicit ``directory`` or ``bucket`` wins; then FINOPS_CHARGEBACK_BUCKET; then the local directory."""
    settings = settings or get_chargeback_settings()
    if directory is not None:
        return LocalStore(directory)
    bucket = bucket or settings.chargeback_bucket
    if bucket:
        return S3Store(bucket, aws.client("s3"))
    return LocalStore(settings.chargeback_dir)


def ledger_rows(day: str) -> Iterator[dict[str, Any]]:
    """One UTC day of ledger rows through ``LedgerRepository.day`` (the by_day index, no scan)."""
    settings = get_settings()
    repository = LedgerRepository(settings.ledger_table, settings.ledger_shards)
    for entry in repository.day(day, readers=get_chargeback_settings().export_readers):
        yield entry.__dict__


def price_book() -> PriceBook:
    return PriceBook(load_catalog(get_settings().price_catalog_path))


def _workdir(settings: ChargebackSettings) -> Path | None:
    return None if settings.work_dir is None else Path(settings.work_dir)


def export_usage_day(day: str, target: ObjectStore | None = None) -> DayExport:
    settings = get_chargeback_settings()
    return export_day(ledger_rows(day), day, target or store(settings), prices=price_book(),
                      workdir=_workdir(settings), rows_per_file=settings.export_rows_per_file)


def export_focus(month: str, target: ObjectStore | None = None, *, csv_copy: Path | None = None) -> FocusExport:
    settings = get_chargeback_settings()
    return export_focus_month(target or store(settings), month, workdir=_workdir(settings), csv_copy=csv_copy)


def athena(settings: ChargebackSettings | None = None) -> AthenaQueries:
    settings = settings or get_chargeback_settings()
    return AthenaQueries(aws.client("athena"), workgroup=settings.athena_workgroup,
                         database=settings.athena_database)
