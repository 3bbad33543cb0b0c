"""``finops bill``: a named query for one billing month, on DuckDB over the exported files or on Athena."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from . import engine, periods
from .engine import AthenaQueries, QueryResult
from .schema import USAGE_PREFIX
from .store import LocalStore, ObjectStore, download_prefix

BY = {
    "department": "monthly_bill_by_dept",
    "project": "monthly_bill_by_project",
    "user": "monthly_bill_by_user",
    "model": "monthly_bill_by_model",
    "environment": "monthly_bill_by_environment",
}
FORMATS = ("table", "csv", "json")


@contextlib.contextmanager
def month_connection(store: ObjectStore, month: str) -> Iterator[Any]:
    """DuckDB with the ``usage`` view over ``month``'s files: read in place from a local directory, or
    downloaded from S3 into a temporary mirror first (one month's partitions only)."""
    periods.parse_month(month)
    scratch = Path(tempfile.mkdtemp(prefix=f"bill-{month}-"))
    try:
        if isinstance(store, LocalStore):
            root = store.root
        else:
            root = scratch / "mirror"
            download_prefix(store, f"{USAGE_PREFIX}/dt={month}-", root)
        con = engine.connect(scratch / "duckdb")
        try:
            engine.create_usage_view(con, root)
            yield con
        finally:
            con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(name: str, month: str, *, store: ObjectStore | None = None, athena: AthenaQueries | None = None) -> QueryResult:
    """Named query ``name`` for ``month``: on Athena when ``athena`` is given, else on DuckDB over ``store``."""
    params = list(periods.month_bounds(month))
    if athena is not None:
        return athena.run(name, params)
    if store is None:
        raise ValueError("a store or an Athena runner is needed")
    with month_connection(store, month) as con:
        return engine.run_duckdb(con, name, params)


def bill(month: str, by: str = "department", **kwargs: Any) -> QueryResult:
    if by not in BY:
        raise ValueError(f"--by must be one of {', '.join(BY)}")
    return run(BY[by], month, **kwargs)


# --- output --------------------------------------------------------------------------------------------------


def _is_money(column: str) -> bool:
    return column.endswith("_usd")


def _is_count(column: str, values: list[Any]) -> bool:
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None)


def totals(result: QueryResult) -> dict[str, Any]:
    """Sums of the money and count columns (what a TOTAL line shows)."""
    out: dict[str, Any] = {}
    for i, column in enumerate(result.columns):
        values = [row[i] for row in result.rows]
        if _is_money(column):
            out[column] = sum((Decimal(v) for v in values if v is not None), Decimal(0))
        elif _is_count(column, values) and column not in ("projects",):
            out[column] = sum(v for v in values if v is not None)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def render(result: QueryResult, fmt: str = "table", *, decimals: int = 6, title: str = "") -> str:
    if fmt == "json":
        return json.dumps({"query": result.name, "engine": result.engine, "title": title,
                           "columns": result.columns,
                           "rows": [{k: _plain(v) for k, v in r.items()} for r in result.records()],
                           "totals": {k: _plain(v) for k, v in totals(result).items()}}, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow(["" if v is None else _plain(v) for v in row])
        return buffer.getvalue()
    if fmt != "table":
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}")
    quantum = Decimal(1).scaleb(-decimals)

    def cell(column: str, value: Any) -> str:
        if value is None:
            return ""
        if _is_money(column):
            return f"{Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP):,.{decimals}f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(_plain(value))

    lines = [[cell(c, v) for c, v in zip(result.columns, row, strict=True)] for row in result.rows]
    sums = totals(result)
    footer = [cell(c, sums[c]) if c in sums else "" for c in result.columns]
    if footer:
        footer[0] = footer[0] or "TOTAL"
    widths = [max(len(c), *(len(line[i]) for line in [*lines, footer])) for i, c in enumerate(result.columns)]
    numeric = [_is_money(c) or c in sums for c in result.columns]

    def fmt_line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))

    out = [title] if title else []
    out += [fmt_line(result.columns), fmt_line(["-" * w for w in widths])]
    out += [fmt_line(line) for line in lines]
    out += [fmt_line(["=" * w for w in widths]), fmt_line(footer)]
    return "\n".join(line.rstrip() for line in out) + "\n"
