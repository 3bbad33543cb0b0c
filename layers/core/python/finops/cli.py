"""The ``finops`` command. Sub-commands are added by each capability."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path


def _local(args: argparse.Namespace) -> int:
    from .local import stack

    running = stack.start(port=args.port, aws_port=args.aws_port, latency_ms=args.latency_ms,
                          error_rate=args.error_rate, keys_file=Path(args.keys_file))
    free = running.keys.get("free", "<key>")
    print(f"AWS emulator (moto)   {running.aws_endpoint}   (export AWS_ENDPOINT_URL={running.aws_endpoint})")
    print(f"Simulated provider    {running.provider_url}")
    print(f"Gateway               {running.gateway_url}/v1")
    print(f"Virtual keys          {args.keys_file}  ({', '.join(running.keys)})")
    print("Try:")
    print(f"  curl -s {running.gateway_url}/v1/chat/completions -H 'Content-Type: application/json' \\")
    print(f"    -H 'Authorization: Bearer {free}' \\")
    print("    -H 'X-Project-ID: demo' -H 'X-User-ID: alice' -H 'X-Environment: development' \\")
    print('    -d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}\'')
    print("Chargeback (another shell, same AWS_ENDPOINT_URL; .local/chargeback stands in for the bucket):")
    print("  finops export --date $(date -u +%F) && finops bill --month $(date -u +%Y-%m) --by project")
    print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    running.stop()
    return 0


def _keys(args: argparse.Namespace) -> int:
    from .gateway.factory import keys
    from .keys.service import KeySpec
    from .settings import get_settings

    service = keys(get_settings())
    if args.keys_command == "create":
        key, record = service.create(KeySpec(name=args.name, tier=args.tier, projects=args.project or ["*"],
                                             environments=args.environment or ["*"], user_id=args.user))
        print(json.dumps({"key": key, **record.model_dump()}, indent=2))
        print("Store the key now: only its hash is kept.", file=sys.stderr)
    elif args.keys_command == "list":
        records = service.list(include_revoked=args.all)
        if args.json:
            print(json.dumps([r.model_dump() for r in records], indent=2))
        else:
            print(f"{'KEY ID':<16} {'TIER':<11} {'STATUS':<8} {'NAME':<24} {'PROJECTS':<24} ENVIRONMENTS")
            for r in records:
                print(f"{r.key_id:<16} {r.tier:<11} {r.status:<8} {r.name[:24]:<24} "
                      f"{','.join(r.projects)[:24]:<24} {','.join(r.environments)}")
    elif args.keys_command == "rotate":
        key, record = service.rotate(args.key_id)
        print(json.dumps({"key": key, **record.model_dump()}, indent=2))
    elif args.keys_command == "revoke":
        print(json.dumps(service.revoke(args.key_id).model_dump(), indent=2))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    import time

    from .gateway.factory import reconciler

    if args.spill is not None:  # log lines holding ledger_spill records (e.g. `aws logs filter-log-events`)
        from .ledger import spill

        with sys.stdin if args.spill == "-" else open(args.spill, encoding="utf-8") as fh:
            summary = reconciler().restore(spill.entries(fh))
    else:
        summary = reconciler().run(time.time())
    print(json.dumps(summary.__dict__))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finops", description="AI FinOps gateway tools")
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="run the gateway locally (moto + simulated provider)")
    local.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    local.add_argument("--aws-port", type=int, default=4566)
    local.add_argument("--latency-ms", type=int, default=int(os.environ.get("SIM_LATENCY_MS", "0")))
    local.add_argument("--error-rate", type=float, default=float(os.environ.get("SIM_ERROR_RATE", "0")))
    local.add_argument("--keys-file", default=".local/keys.json", help="where the seeded keys are written")
    local.set_defaults(func=_local)

    keys = sub.add_parser("keys", help="manage virtual keys (FINOPS_KEYS_TABLE; AWS_ENDPOINT_URL for local)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--tier", required=True)
    create.add_argument("--project", action="append", help="allowed project id (repeat; default any)")
    create.add_argument("--environment", action="append", help="allowed environment (repeat; default any)")
    create.add_argument("--user", help="bind the key to one user id")
    listing = keys_sub.add_parser("list", help="list keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    for name, text in (("rotate", "replace a key with a new one (same bindings)"), ("revoke", "revoke a key")):
        cmd = keys_sub.add_parser(name, help=text)
        cmd.add_argument("key_id")
    keys.set_defaults(func=_keys)

    reconcile = sub.add_parser("reconcile", help="book or release expired budget reservations once, or restore "
                                                 "spilled ledger rows")
    reconcile.add_argument("--spill", metavar="FILE", help="restore the ledger_spill records in these log lines "
                                                          "(- for stdin) instead")
    reconcile.set_defaults(func=_reconcile)

    from .chargeback.cli import add_commands as add_chargeback_commands
    from .spot.cli import register as add_spot_commands

    add_chargeback_commands(sub)  # export, bill, report
    add_spot_commands(sub)  # spot-backtest
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
