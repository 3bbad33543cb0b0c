"""Chargeback unit fixtures: synthetic ledger entries (priced with the shipped catalog) exported to a local
directory standing in for the bucket."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from chargeback_checks import export_entries, synthetic_entries
from finops.chargeback import export
from finops.chargeback.store import LocalStore
from finops.ledger.entry import LedgerEntry


@dataclass
class Exported:
    store: LocalStore
    entries: list[LedgerEntry]
    results: dict[str, export.DayExport]

    @property
    def root(self) -> Path:
        return self.store.root


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    entries = synthetic_entries()
    store = LocalStore(tmp_path_factory.mktemp("bucket"))
    return Exported(store, entries, export_entries(entries, store))
