"""Chargeback: the ledger as partitioned Parquet on S3, a Glue/Athena billing model, FOCUS 1.2 exports.

- ``export``: one UTC day of ledger rows -> ``usage/dt=YYYY-MM-DD/part-*.parquet`` (DuckDB writes the Parquet),
  reconciled with the ledger to the cent before anything is uploaded; a month -> ``focus/billing_period=YYYY-MM/``.
- ``sql/*.sql``: the named queries (Athena SQL), used by CDK, by Athena, and on DuckDB by ``finops bill``.
- ``engine``: DuckDB over exported files and the Athena runner; ``bill`` / ``report``: the CLI's outputs.
- ``service``: settings and wiring for the Lambda handlers (functions/exporter, functions/focus_export).
"""
