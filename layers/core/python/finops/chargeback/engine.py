"""DuckDB over exported files, and the same named queries on Athena.

DuckDB reads the ``usage/dt=YYYY-MM-DD/*.parquet`` tree through a view named ``usage`` with every column
cast to its pinned type (:mod:`.schema`), ``dt`` kept a string (as the Glue partition key is). No network:
files from S3 are downloaded first (DuckDB's httpfs is not used).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import FinOpsError
from .schema import FOCUS_COLUMNS, PARTITION_KEY, USAGE_COLUMNS, USAGE_PREFIX
from .sql import athena_literal, load


@dataclass
class QueryResult:
    name: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    engine: str = "duckdb"
    stats: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def total(self, column: str) -> Decimal:
        index = self.columns.index(column)
        return sum((Decimal(row[index]) for row in self.rows), Decimal(0))


def connect(workdir: Path | None = None) -> Any:
    """An in-memory DuckDB that spills and keeps its home under ``workdir`` (Lambda: only /tmp is writable)."""
    import duckdb

    config: dict[str, Any] = {}
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = {"temp_directory": str(workdir / "duckdb-spill"), "home_directory": str(workdir)}
    return duckdb.connect(":memory:", config=config)


def literal(text: str | Path) -> str:
    """A SQL string literal (file paths in DuckDB statements; DDL takes no parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


def _select_list(columns: Sequence[Any]) -> str:
    return ", ".join(f'CAST("{c.name}" AS {c.duckdb_type}) AS "{c.name}"' for c in columns)


def _schema_list(columns: Sequence[Any]) -> str:
    return ", ".join(f'"{c.name}" {c.duckdb_type}' for c in columns)


def usage_files(root: Path) -> list[Path]:
    return sorted((root / USAGE_PREFIX).glob(f"{PARTITION_KEY}=*/*.parquet"))


def create_usage_view(con: Any, root: Path) -> int:
    """``usage`` over ``root``/usage/dt=*/*.parquet; an empty table of the same shape when there are none.
    Returns the number of files."""
    files = usage_files(root)
    con.execute("DROP VIEW IF EXISTS usage")
    con.execute("DROP TABLE IF EXISTS usage")
    if not files:
        con.execute(f"CREATE TABLE usage ({_schema_list(USAGE_COLUMNS)}, dt VARCHAR)")
        return 0
    pattern = literal(root / USAGE_PREFIX / f"{PARTITION_KEY}=*" / "*.parquet")
    con.execute(  # column names come from schema.py, the path is a quoted literal
        f"CREATE VIEW usage AS SELECT {_select_list(USAGE_COLUMNS)}, CAST(dt AS VARCHAR) AS dt "  # noqa: S608
        f"FROM read_parquet({pattern}, hive_partitioning = true, hive_types = {{'dt': VARCHAR}}, "
        "union_by_name = true)")  # a column added later reads as NULL in older days
    return len(files)


def create_focus_table(con: Any, name: str = "focus") -> None:
    con.execute(f"CREATE TABLE {name} ({_schema_list(FOCUS_COLUMNS)})")


def run_duckdb(con: Any, name: str, params: Sequence[str]) -> QueryResult:
    query = load(name)
    cursor = con.execute(query.duckdb_sql(), list(params))
    columns = [d[0] for d in cursor.description]
    return QueryResult(name, columns, cursor.fetchall())


# --- Athena ------------------------------------------------------------------------------------------------


class AthenaQueryFailed(FinOpsError):
    code = "athena_query_failed"


def _convert(value: str | None, athena_type: str) -> Any:
    if value is None:
        return None
    kind = athena_type.lower()
    if kind.startswith("decimal"):
        return Decimal(value)
    if kind in ("bigint", "integer", "int", "smallint", "tinyint"):
        return int(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "boolean":
        return value.lower() == "true"
    return value


class AthenaQueries:
    """Runs a named query's SQL on Athena in the chargeback workgroup (which enforces the encrypted result
    location and the bytes-scanned cutoff) with the billing period as ``ExecutionParameters``."""

    def __init__(self, client: Any, *, workgroup: str, database: str, poll_seconds: float = 1.0,
                 timeout_seconds: float = 300.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.workgroup = workgroup
        self.database = database
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.sleep = sleep

    def request(self, name: str, params: Sequence[str]) -> dict[str, Any]:
        """The ``StartQueryExecution`` arguments for ``name`` (no output location: the workgroup's is enforced)."""
        query = load(name)
        if query.parameters != len(params):
            raise ValueError(f"{name} takes {query.parameters} parameters, got {len(params)}")
        return {
            "QueryString": query.sql,
            "QueryExecutionContext": {"Catalog": "AwsDataCatalog", "Database": self.database},
            "WorkGroup": self.workgroup,
            "ExecutionParameters": [athena_literal(p) for p in params],
        }

    def run(self, name: str, params: Sequence[str]) -> QueryResult:
        execution_id = self.client.start_query_execution(**self.request(name, params))["QueryExecutionId"]
        waited = 0.0
        while True:
            execution = self.client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if state == "SUCCEEDED":
                break
            if state in ("FAILED", "CANCELLED"):
                reason = execution["Status"].get("StateChangeReason", state)
                raise AthenaQueryFailed(f"Athena query {name} ({execution_id}) {state}: {reason}")
            if waited >= self.timeout_seconds:
                self.client.stop_query_execution(QueryExecutionId=execution_id)
                raise AthenaQueryFailed(f"Athena query {name} ({execution_id}) timed out after {waited:.0f} s")
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds
        columns: list[str] = []
        types: list[str] = []
        rows: list[tuple[Any, ...]] = []
        header_skipped = False
        for page in self.client.get_paginator("get_query_results").paginate(QueryExecutionId=execution_id):
            result_set = page["ResultSet"]
            if not columns:
                info = result_set["ResultSetMetadata"]["ColumnInfo"]
                columns = [c["Name"] for c in info]
                types = [c["Type"] for c in info]
            for raw in result_set["Rows"]:
                values = [d.get("VarCharValue") for d in raw["Data"]]
                if not header_skipped:  # the first row of a SELECT's results repeats the column names
                    header_skipped = True
                    if values == columns:
                        continue
                rows.append(tuple(_convert(v, t) for v, t in zip(values, types, strict=True)))
        stats = execution.get("Statistics", {})
        return QueryResult(name, columns, rows, engine="athena",
                           stats={"execution_id": execution_id,
                                  "data_scanned_bytes": stats.get("DataScannedInBytes")})
