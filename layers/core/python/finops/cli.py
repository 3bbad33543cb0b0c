"""The ``finops`` command. Sub-commands are added by each capability."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def _local(args: argparse.Namespace) -> int:
    from .local import stack

    running = stack.start(port=args.port, aws_port=args.aws_port, latency_ms=args.latency_ms,
                          error_rate=args.error_rate)
    print(f"AWS emulator (moto)   {running.aws_endpoint}   (export AWS_ENDPOINT_URL={running.aws_endpoint})")
    print(f"Simulated provider    {running.provider_url}")
    print(f"Gateway               {running.gateway_url}/v1")
    print("Try:")
    print(f"  curl -s {running.gateway_url}/v1/chat/completions -H 'Content-Type: application/json' \\")
    print("    -H 'X-Project-ID: demo' -H 'X-User-ID: alice' -H 'X-Environment: development' \\")
    print("    -d '{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'")
    print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    running.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finops", description="AI FinOps gateway tools")
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="run the gateway locally (moto + simulated provider)")
    local.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    local.add_argument("--aws-port", type=int, default=4566)
    local.add_argument("--latency-ms", type=int, default=int(os.environ.get("SIM_LATENCY_MS", "0")))
    local.add_argument("--error-rate", type=float, default=float(os.environ.get("SIM_ERROR_RATE", "0")))
    local.set_defaults(func=_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
