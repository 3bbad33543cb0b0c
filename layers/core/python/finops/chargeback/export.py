"""The daily usage export and the monthly FOCUS export. Pure logic over an iterable of ledger rows and an
:class:`~.store.ObjectStore`; the handlers and the CLI wire in DynamoDB, S3 or a local directory.

Daily: one UTC day of ledger rows (``LedgerRepository.day``: the ``by_day`` index, shard by shard, no scan)
-> staging file (tab-separated Decimal text at the pinned scale) -> DuckDB casts every column explicitly and writes
``part-NNNNN.parquet`` (zstd, in ledger order) -> the files are read back and reconciled with the ledger rows
-> only then uploaded to ``usage/dt=YYYY-MM-DD/``, and any other object under that prefix is deleted. A
re-run therefore replaces the day; a failed reconciliation uploads nothing and raises.

Monthly: the month's usage files -> ``focus_export.sql`` on DuckDB -> ``focus/billing_period=YYYY-MM/``,
reconciled the same way (sum of BilledCost == cost + tax of the month's usage rows).
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import FinOpsError
from . import engine, periods
from .schema import (
    DIRECTIONS,
    FOCUS_COLUMNS,
    USAGE_COLUMNS,
    focus_key,
    focus_month_prefix,
    usage_day_prefix,
    usage_key,
)
from .store import ObjectStore, download_prefix
from .transform import NULL, PriceBook, Totals, money, usage_row

ZERO = Decimal(0)
HALF_CENT = Decimal("0.005")
_SEPARATORS = len(USAGE_COLUMNS) - 1
_TS = [c.name for c in USAGE_COLUMNS].index("ts")
ROWS_PER_FILE = 2_000_000  # ~50-100 MB of Parquet: "one or a few files per day" up to tens of millions of calls


class ReconciliationError(FinOpsError):
    """The written files do not add up to the ledger: nothing was uploaded."""

    code = "reconciliation_failed"


@dataclass
class Reconciliation:
    """Ledger side vs file side. ``exact``: the files sum to the per-row-rounded ledger amounts to the last
    of the 10 decimal places and hold every row; ``to_the_cent``: the raw ledger total and the file total
    differ by less than half a cent (per-row rounding moves a total by at most 0.5e-10 per row)."""

    rows_ledger: int
    rows_exported: int
    ledger: dict[str, Decimal]  # raw sums
    ledger_rounded: dict[str, Decimal]
    exported: dict[str, Decimal]
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    def delta(self, column: str) -> Decimal:
        return self.exported[column] - self.ledger[column]

    def as_dict(self) -> dict[str, Any]:
        return {"rows_ledger": self.rows_ledger, "rows_exported": self.rows_exported,
                "ledger": {k: str(v) for k, v in self.ledger.items()},
                "exported": {k: str(v) for k, v in self.exported.items()},
                "failed": sorted(k for k, v in self.checks.items() if not v)}


def reconcile(rows_ledger: int, rows_exported: int, ledger: Mapping[str, Decimal],
              ledger_rounded: Mapping[str, Decimal], exported: Mapping[str, Decimal]) -> Reconciliation:
    result = Reconciliation(rows_ledger, rows_exported, dict(ledger), dict(ledger_rounded), dict(exported))
    result.checks["rows"] = rows_ledger == rows_exported
    for column in ledger:
        result.checks[f"{column}:exact"] = exported[column] == ledger_rounded[column]
        result.checks[f"{column}:to_the_cent"] = abs(exported[column] - ledger[column]) < HALF_CENT
    return result


@dataclass
class DayExport:
    day: str
    rows: int
    keys: list[str]
    deleted: list[str]
    bytes: int
    reconciliation: Reconciliation

    @property
    def cost_usd(self) -> Decimal:
        return self.reconciliation.exported["cost_usd"]

    @property
    def tax_usd(self) -> Decimal:
        return self.reconciliation.exported["tax_usd"]

    def summary(self) -> dict[str, Any]:
        return {"day": self.day, "rows": self.rows, "keys": self.keys, "deleted": self.deleted, "bytes": self.bytes,
                "cost_usd": str(self.cost_usd), "tax_usd": str(self.tax_usd),
                "reconciled": self.reconciliation.ok}


# --- writing Parquet -----------------------------------------------------------------------------------------


class ParquetParts:
    """Buffers usage rows in a staging CSV and turns every ``rows_per_file`` of them into one Parquet file.

    DuckDB reads the staging file as text and casts each column to its pinned type; the CSV never holds a
    float, and a part is written even for an empty day (a zero-row file records that the day was exported).
    Rows keep the order they were read in (each by_day shard comes back sorted by ts); no sort, so DuckDB
    streams the staging file into Parquet in bounded memory.
    """

    def __init__(self, workdir: Path, con: Any, rows_per_file: int = ROWS_PER_FILE) -> None:
        self.workdir = workdir
        self.con = con
        self.rows_per_file = rows_per_file
        self.parts: list[Path] = []
        self._staging = workdir / "staging.csv"
        self._fh: Any = None
        self._writer: Any = None
        self._buffered = 0

    def add(self, values: list[str]) -> None:
        if self._fh is None:
            self._fh = self._staging.open("w", newline="", encoding="utf-8", buffering=1 << 20)
            self._writer = csv.writer(self._fh, delimiter="\t", lineterminator="\n")
        line = "\t".join(values)
        # Fast path: tab-separated, unquoted. A value holding a tab, a quote or a line break (no tag, model or
        # gateway id can, but the ledger does not promise it) is written quoted by the csv module instead.
        if line.count("\t") == _SEPARATORS and '"' not in line and "\n" not in line and "\r" not in line:
            self._fh.write(line + "\n")
        else:
            self._writer.writerow(values)
        self._buffered += 1
        if self._buffered >= self.rows_per_file:
            self._flush()

    def _flush(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = self._writer = None
        else:
            self._staging.write_text("")
        target = self.workdir / f"part-{len(self.parts):05d}.parquet"
        columns = ", ".join(f"'{c.name}': 'VARCHAR'" for c in USAGE_COLUMNS)
        casts = ", ".join(
            f'CAST("{c.name}" AS {c.duckdb_type}) AS "{c.name}"' for c in USAGE_COLUMNS)
        self.con.execute(  # identifiers and types from schema.py, paths as quoted literals
            f"COPY (SELECT {casts} FROM read_csv({engine.literal(self._staging)}, header = false, "  # noqa: S608
            f"delim = '\t', quote = '\"', escape = '\"', nullstr = {engine.literal(NULL)}, "
            f"columns = {{{columns}}}, auto_detect = false)) "
            f"TO {engine.literal(target)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
        self._staging.unlink(missing_ok=True)
        self.parts.append(target)
        self._buffered = 0

    def close(self) -> list[Path]:
        if self._buffered or not self.parts:
            self._flush()
        return self.parts


SUMMED = ("cost_usd", "tax_usd", "counterfactual_usd")


def _read_back(con: Any, parts: list[Path]) -> tuple[int, dict[str, Decimal], bool]:
    """Row count and sums of the written files, and whether every row's direction split adds up."""
    files = ", ".join(engine.literal(p) for p in parts)
    sums = ", ".join(f"CAST(COALESCE(SUM({c}), 0) AS DECIMAL(38, 10))" for c in SUMMED)
    row = con.execute(  # column names from SUMMED, paths as quoted literals
        f"SELECT COUNT(*), {sums}, "  # noqa: S608
        f"COUNT(*) FILTER (WHERE {' + '.join(f'{d}_cost_usd' for d in DIRECTIONS)} <> cost_usd) "
        f"FROM read_parquet([{files}])").fetchone()
    return int(row[0]), {c: Decimal(v) for c, v in zip(SUMMED, row[1:4], strict=True)}, int(row[4]) == 0


def export_day(rows: Iterable[Mapping[str, Any]], day: str, store: ObjectStore, *, prices: PriceBook,
               workdir: Path | None = None, rows_per_file: int = ROWS_PER_FILE) -> DayExport:
    """Export one UTC day of ledger rows to ``usage/dt=<day>/`` in ``store``, replacing what was there."""
    periods.parse_day(day)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"export-{day}-", dir=workdir))  # always removed at the end
    try:
        con = engine.connect(work / "duckdb")
        parts = ParquetParts(work, con, rows_per_file)
        totals = Totals()
        for row in rows:
            values = usage_row(row, prices, totals)
            if not values[_TS].startswith(day):  # UTC: the by_day index returned a row of another day
                raise ReconciliationError(f"ledger row {row['request_id']} is not from {day}",
                                          details={"request_id": row["request_id"]})
            parts.add(values)
        files = parts.close()
        rows_exported, sums, split_ok = _read_back(con, files)
        con.close()
        result = reconcile(
            totals.rows, rows_exported,
            ledger={"cost_usd": totals.cost_usd, "tax_usd": totals.tax_usd,
                    "counterfactual_usd": totals.counterfactual_usd},
            ledger_rounded={"cost_usd": totals.cost_rounded, "tax_usd": totals.tax_rounded,
                            "counterfactual_usd": totals.counterfactual_rounded},
            exported=sums)
        result.checks["direction_split"] = split_ok
        if not result.ok:
            raise ReconciliationError(
                f"usage export of {day} does not reconcile with the ledger; nothing was uploaded",
                details={"reconciliation": result.as_dict()})
        keys = [usage_key(day, i) for i in range(len(files))]
        for key, path in zip(keys, files, strict=True):
            store.put(key, path)
        listed = store.list(usage_day_prefix(day))
        sizes = {p.name: p.stat().st_size for p in files}
        for key in keys:
            if listed.get(key) != sizes[key.rsplit("/", 1)[1]]:
                raise ReconciliationError(f"{store.uri(key)} is not the file that was written",
                                          details={"key": key})
        stale = sorted(set(listed) - set(keys))
        store.delete(stale)
        return DayExport(day, rows_exported, keys, stale, sum(sizes.values()), result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- FOCUS ---------------------------------------------------------------------------------------------------


@dataclass
class FocusExport:
    month: str
    rows: int
    keys: list[str]
    deleted: list[str]
    usage_files: int
    reconciliation: Reconciliation

    @property
    def billed_cost(self) -> Decimal:
        return self.reconciliation.exported["billed"]

    def summary(self) -> dict[str, Any]:
        return {"month": self.month, "rows": self.rows, "keys": self.keys, "deleted": self.deleted,
                "usage_files": self.usage_files, "billed_cost": str(self.billed_cost),
                "reconciled": self.reconciliation.ok}


def focus_rows(con: Any, month: str) -> Any:
    """Run ``focus_export.sql`` for ``month`` into the DuckDB table ``focus`` (FOCUS_COLUMNS, pinned types)."""
    start, end = periods.month_bounds(month)
    con.execute("DROP TABLE IF EXISTS focus")
    engine.create_focus_table(con)
    names = ", ".join(f'"{c.name}"' for c in FOCUS_COLUMNS)
    con.execute(f"INSERT INTO focus ({names}) {engine.load('focus_export').duckdb_sql()}", [start, end])
    return con


def write_focus(con: Any, path: Path, fmt: str = "parquet") -> Path:
    """The ``focus`` table as Parquet, or as CSV with FOCUS date/times (``YYYY-MM-DDTHH:MM:SSZ``)."""
    target = engine.literal(path)
    if fmt == "parquet":
        con.execute(f"COPY focus TO {target} (FORMAT parquet, COMPRESSION zstd)")
    elif fmt == "csv":
        select = ", ".join(
            f"strftime(\"{c.name}\", '%Y-%m-%dT%H:%M:%SZ') AS \"{c.name}\"" if c.type == "timestamp"
            else f'"{c.name}"' for c in FOCUS_COLUMNS)
        con.execute(f"COPY (SELECT {select} FROM focus) TO {target} (FORMAT csv, HEADER true)")  # noqa: S608
    else:
        raise ValueError(f"unknown FOCUS format {fmt!r}")
    return path


def export_focus_month(store: ObjectStore, month: str, *, workdir: Path | None = None,
                       csv_copy: Path | None = None) -> FocusExport:
    """FOCUS 1.2 for ``month`` from the month's usage files in ``store`` to ``focus/billing_period=<month>/``."""
    start, end = periods.month_bounds(month)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"focus-{month}-", dir=workdir))  # always removed at the end
    try:
        local = work / "mirror"
        files = download_prefix(store, f"usage/dt={month}-", local)
        con = engine.connect(work / "duckdb")
        engine.create_usage_view(con, local)
        cost, tax = con.execute(
            "SELECT CAST(COALESCE(SUM(cost_usd), 0) AS DECIMAL(38, 10)), "
            "CAST(COALESCE(SUM(tax_usd), 0) AS DECIMAL(38, 10)) FROM usage WHERE dt >= ? AND dt < ?",
            [start, end]).fetchone()
        focus_rows(con, month)
        rows, billed, not_usd = con.execute(
            "SELECT COUNT(*), CAST(COALESCE(SUM(BilledCost), 0) AS DECIMAL(38, 10)), "
            "COUNT(*) FILTER (WHERE BillingCurrency <> 'USD') FROM focus").fetchone()
        expected = money(Decimal(cost) + Decimal(tax))
        result = reconcile(int(rows), int(rows), ledger={"billed": expected}, ledger_rounded={"billed": expected},
                           exported={"billed": Decimal(billed)})
        result.checks["currency"] = not_usd == 0
        if not result.ok:
            raise ReconciliationError(f"FOCUS export of {month} does not reconcile with its usage files",
                                      details={"reconciliation": result.as_dict()})
        path = write_focus(con, work / f"focus-{month}.parquet")
        if csv_copy is not None:
            write_focus(con, csv_copy, "csv")
        con.close()
        key = focus_key(month)
        store.put(key, path)
        stale = sorted(set(store.list(focus_month_prefix(month))) - {key})
        store.delete(stale)
        return FocusExport(month, int(rows), [key], stale, len(files), result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
