"""The named queries: one ``.sql`` file each in ``sql/``, written for Athena (Trino SQL).

The same text becomes a CDK ``CfnNamedQuery`` (infra/constructs/chargeback.py), runs on Athena for
``finops bill --athena``, and runs on DuckDB for ``finops bill``, the FOCUS export and the tests, transpiled
by sqlglot. Each file starts with ``-- <name>: <description>``; its ``?`` parameters are the ``dt`` range of
the billing period, ``[first day, first day of the next month)`` as ``YYYY-MM-DD`` strings, so Athena prunes
partitions through projection and DuckDB through the hive paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent / "sql"
_HEADER = re.compile(r"--\s*([a-z0-9_]+):\s*(.+)")
_SAFE_PARAMETER = re.compile(r"[0-9A-Za-z_.:-]{1,64}")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str  # Athena dialect, as in the file

    @property
    def parameters(self) -> int:
        from sqlglot import exp, parse_one

        return len(list(parse_one(self.sql, read="athena").find_all(exp.Placeholder)))

    def duckdb_sql(self) -> str:
        return to_duckdb(self.sql)


@cache
def queries() -> dict[str, NamedQuery]:
    found = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        text = path.read_text()
        match = _HEADER.match(text.splitlines()[0] if text else "")
        if match is None or match[1] != path.stem:
            raise ValueError(f"{path.name} must start with '-- {path.stem}: <description>'")
        found[path.stem] = NamedQuery(name=path.stem, description=match[2].strip(), sql=text)
    return found


def load(name: str) -> NamedQuery:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no named query {name!r} (have {sorted(queries())})") from None


@cache
def to_duckdb(sql: str) -> str:
    """Athena SQL -> DuckDB SQL (sqlglot). Placeholders stay ``?``."""
    import sqlglot

    statements = sqlglot.transpile(sql, read="athena", write="duckdb")
    if len(statements) != 1:
        raise ValueError(f"expected one statement, got {len(statements)}")
    return statements[0]


def athena_literal(value: str) -> str:
    """A parameter as Athena's ``ExecutionParameters`` wants it: a quoted SQL literal. Only plain values
    (days, months, ids) are accepted, so quoting cannot be broken out of."""
    if not _SAFE_PARAMETER.fullmatch(value):
        raise ValueError(f"unsafe query parameter {value!r}")
    return f"'{value}'"
