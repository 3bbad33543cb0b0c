"""``finops export``, ``finops bill`` and ``finops report`` (registered by ``finops.cli``).

Where the files are: ``--dir DIR`` (a local directory standing in for the bucket), ``--bucket NAME`` (S3),
else ``FINOPS_CHARGEBACK_BUCKET``, else ``FINOPS_CHARGEBACK_DIR`` (default ``.local/chargeback``). The ledger
is read through ``AWS_ENDPOINT_URL`` like every other command, so against ``make run`` it is the emulator.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import FinOpsError


def _target(args: argparse.Namespace) -> Any:
    from . import service

    return service.store(bucket=args.bucket, directory=args.dir)


def _where(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dir", help="local directory standing in for the chargeback bucket")
    group.add_argument("--bucket", help="chargeback S3 bucket (default FINOPS_CHARGEBACK_BUCKET)")


def _export(args: argparse.Namespace) -> int:
    from . import periods, service

    target = _target(args)
    days = args.date or ([] if args.focus_month else [periods.previous_day(datetime.now(UTC))])
    try:
        for day in days:
            result = service.export_usage_day(day, target)
            print(json.dumps({**result.summary(), "destination": target.uri(f"usage/dt={day}/")}))
        if args.focus_month:
            csv_copy = Path(args.csv) if args.csv else None
            focus = service.export_focus(args.focus_month, target, csv_copy=csv_copy)
            print(json.dumps({**focus.summary(), "destination": target.uri(focus.keys[0]),
                              "csv": str(csv_copy) if csv_copy else None}))
    except FinOpsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2, default=str), file=sys.stderr)
        return 2
    return 0


def _bill(args: argparse.Namespace) -> int:
    from . import bill, service

    try:
        athena = service.athena() if args.athena else None
        result = bill.bill(args.month, args.by, store=None if athena else _target(args), athena=athena)
    except FinOpsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    title = f"AI bill {args.month} by {args.by} ({result.engine})" if args.format == "table" else ""
    sys.stdout.write(bill.render(result, args.format, decimals=args.decimals, title=title))
    return 0


def _report(args: argparse.Namespace) -> int:
    from . import report, service

    try:
        athena = service.athena() if args.athena else None
        document = report.build(args.month, store=None if athena else _target(args), athena=athena)
    except FinOpsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    out = Path(args.out or Path(service.get_chargeback_settings().chargeback_dir) / f"report-{args.month}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def add_commands(sub: Any) -> None:
    export = sub.add_parser("export", help="export ledger days to Parquet (usage/dt=...) and months to FOCUS")
    export.add_argument("--date", action="append", metavar="YYYY-MM-DD",
                        help="UTC day to export (repeat; default: yesterday); re-running a day replaces it")
    export.add_argument("--focus-month", metavar="YYYY-MM", help="also write the FOCUS 1.2 export of this month")
    export.add_argument("--csv", metavar="PATH", help="with --focus-month: also write the FOCUS rows as CSV here")
    _where(export)
    export.set_defaults(func=_export)

    bill_cmd = sub.add_parser("bill", help="the monthly bill (named-query SQL on DuckDB, or --athena)")
    bill_cmd.add_argument("--month", required=True, metavar="YYYY-MM")
    bill_cmd.add_argument("--by", choices=["department", "project", "user", "model", "environment"],
                          default="department")
    bill_cmd.add_argument("--format", choices=["table", "csv", "json"], default="table")
    bill_cmd.add_argument("--decimals", type=int, default=6, help="decimal places of money in the table")
    bill_cmd.add_argument("--athena", action="store_true", help="run on Athena (deployed stack) instead of DuckDB")
    _where(bill_cmd)
    bill_cmd.set_defaults(func=_bill)

    report_cmd = sub.add_parser("report", help="write an HTML chargeback report with charts")
    report_cmd.add_argument("--month", required=True, metavar="YYYY-MM")
    report_cmd.add_argument("--out", help="output file (default <chargeback dir>/report-YYYY-MM.html)")
    report_cmd.add_argument("--athena", action="store_true", help="run the queries on Athena")
    _where(report_cmd)
    report_cmd.set_defaults(func=_report)
