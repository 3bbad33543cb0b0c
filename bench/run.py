"""`make bench`: numbers for the gateway's own overhead. A benchmark, not a test: it prints, never asserts.

- warm handler overhead per request (p50/p99), with an instant upstream (httpx's MockTransport) and the
  AWS emulator in-process (moto); time spent inside DynamoDB calls (moto's, not ours: its transactions
  copy the table) is measured with botocore events and subtracted to give the gateway's own overhead;
- cold import time of the gateway handler module next to a bare Powertools handler (fresh interpreters);
- DynamoDB calls per admitted request, before and after the provider call (botocore events);
- admission-path overhead (reserve + settle) p50/p99;
- chargeback export throughput (``bench/export.py``) and the router's per-prompt cost (``bench/router.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/core/python"), str(ROOT)]
N_WARM = int(os.environ.get("BENCH_REQUESTS", "400"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cold_imports(repeat: int = 7) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/core/python'}:{ROOT / 'functions/gateway'}",
           "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    bare = textwrap.dedent("""
        from aws_lambda_powertools import Logger, Metrics, Tracer
        from aws_lambda_powertools.event_handler import APIGatewayRestResolver
        app = APIGatewayRestResolver(enable_validation=True)
        logger, tracer, metrics = Logger(), Tracer(), Metrics()
    """)
    programs = {"bare Powertools handler": bare, "gateway handler": "import handler"}
    results = {}
    for name, program in programs.items():
        code = f"import time; t=time.perf_counter()\n{program}\nprint(time.perf_counter()-t)"
        runs = [float(subprocess.check_output([sys.executable, "-c", code], env=env, cwd=ROOT).decode().split()[-1])
                for _ in range(repeat)]
        results[name] = statistics.median(runs) * 1000
    return results


def instant_upstream(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json={
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}})


def event(key: str, i: int, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "resource": "/{proxy+}", "path": "/v1/chat/completions", "httpMethod": "POST",
        "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                    "X-Project-ID": "bench", "X-User-ID": f"user-{i % 10}", "X-Environment": "test"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": "v1/chat/completions"}, "stageVariables": None,
        "requestContext": {"requestId": f"bench-{i}", "stage": "prod", "resourcePath": "/{proxy+}",
                           "httpMethod": "POST", "path": "/prod/v1/chat/completions", "accountId": "1",
                           "apiId": "bench", "identity": {"sourceIp": "127.0.0.1"}},
        "body": json.dumps({"model": model, "max_tokens": 64,
                            "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]}),
        "isBase64Encoded": False,
    }


def warm_path(model: str = "gpt-4o-mini") -> dict[str, Any]:
    from moto import mock_aws

    os.environ.update({
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "LOG_LEVEL": "ERROR",
        "OPENAI_API_KEY": "sk-bench", "GROQ_API_KEY": "sk-bench"})
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        from finops import aws
        from finops.gateway import factory
        from finops.keys.service import KeySpec
        from finops.local import stack
        from finops.local.lambda_runtime import invoke
        from finops.providers.groq import GroqProvider
        from finops.providers.openai import OpenAIProvider
        from finops.settings import get_settings

        factory.reset()
        stack.create_tables()
        key, _ = factory.keys(get_settings()).create(KeySpec(name="bench", tier="enterprise"))
        gw = factory.gateway()
        # Both providers a routed call may reach (gpt-4o*, and llama on Groq for the medium class) answer at once.
        for name, cls in (("openai", OpenAIProvider), ("groq", GroqProvider)):
            gw.providers._built[name] = cls(get_settings().providers[name],
                                            transport=httpx.MockTransport(instant_upstream))

        calls: list[str] = []
        phase = {"name": "before"}
        emulator = {"started": 0.0, "total": 0.0}

        def count(event_name: str, **_: Any) -> None:
            calls.append(f"{phase['name']}:{event_name.split('.')[-1]}")
            emulator["started"] = time.perf_counter()

        def done(**_: Any) -> None:
            emulator["total"] += time.perf_counter() - emulator["started"]

        clients = [aws.client("dynamodb")]
        from finops.keys.model import bind as bind_keys
        from finops.ledger.model import bind as bind_ledger

        clients.append(bind_keys(get_settings().keys_table)._get_connection().connection.client)
        clients.append(bind_ledger(get_settings().ledger_table)._get_connection().connection.client)
        for client in {id(c): c for c in clients}.values():
            client.meta.events.register("before-call.dynamodb.*", count)
            client.meta.events.register("after-call.dynamodb.*", done)

        def marked(original: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
            def complete(payload: dict[str, Any]) -> Any:
                phase["name"] = "after"
                return original(payload)
            return complete

        for name in ("openai", "groq"):
            provider = gw.providers.get(name)
            provider.complete = marked(provider.complete)  # type: ignore[method-assign]
        admit, settle = gw.governor.admit, gw.governor.settle
        admission_times: list[float] = []

        def timed_admit(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return admit(*a, **kw)
            finally:
                admission_times.append(time.perf_counter() - t)

        def timed_settle(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return settle(*a, **kw)
            finally:
                admission_times[-1] += time.perf_counter() - t

        gw.governor.admit, gw.governor.settle = timed_admit, timed_settle  # type: ignore[method-assign]

        # Powertools still prints its EMF lines when 100 metrics pile up (POWERTOOLS_METRICS_DISABLED or not):
        # written, as in Lambda, but not onto the report.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            for i in range(20):  # warm up: key cache, encodings, connections
                assert invoke("gateway", event(key, i, model))["statusCode"] == 200
            calls.clear()
            admission_times.clear()
            latencies, overheads, admission_overheads, per_request = [], [], [], []
            for i in range(20, 20 + N_WARM):
                phase["name"] = "before"
                before = len(calls)
                emulator["total"] = 0.0
                t = time.perf_counter()
                result = invoke("gateway", event(key, i, model))
                elapsed = time.perf_counter() - t
                assert result["statusCode"] == 200, result
                latencies.append(elapsed)
                overheads.append(elapsed - emulator["total"])
                admission_overheads.append(admission_times[-1] - emulator["total"])
                per_request.append(calls[before:])
        ms = 1000
        return {
            "handler_ms": (pct(latencies, 0.5) * ms, pct(latencies, 0.99) * ms),
            "overhead_ms": (pct(overheads, 0.5) * ms, pct(overheads, 0.99) * ms),
            "admission_ms": (pct(admission_overheads, 0.5) * ms, pct(admission_overheads, 0.99) * ms),
            "calls_before": statistics.mean(sum(c.startswith("before") for c in r) for r in per_request),
            "calls_after": statistics.mean(sum(c.startswith("after") for c in r) for r in per_request),
            "call_kinds": sorted({c for r in per_request for c in r}),
        }


def main() -> int:
    print("== cold import (median of 7 fresh interpreters) ==")
    for name, ms in cold_imports().items():
        print(f"  {name:<26} {ms:7.1f} ms")
    print(f"== warm path ({N_WARM} requests, instant upstream, moto in-process) ==")
    warm = warm_path()
    rows = (("handler, wall clock incl. emulator", "handler_ms"),
            ("gateway overhead (excl. DynamoDB emulator time)", "overhead_ms"),
            ("admission path: reserve + settle (excl. emulator)", "admission_ms"))
    for label, field in rows:
        p50, p99 = warm[field]
        print(f"  {label:<50} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    print(f"  DynamoDB calls per admitted request: {warm['calls_before']:.2f} before the provider call, "
          f"{warm['calls_after']:.2f} after  ({', '.join(warm['call_kinds'])})")
    auto = warm_path("auto")  # routed: the classifier scores each prompt; the fleet's score counts are shared
    p50, p99 = auto["overhead_ms"]
    print(f"  model \"auto\" (routed): gateway overhead p50 {p50:.2f} ms, p99 {p99:.2f} ms; DynamoDB calls per request "
          f"{auto['calls_before']:.2f} before the provider call, {auto['calls_after']:.2f} after "
          f"({', '.join(auto['call_kinds'])})")
    import export as chargeback_export  # bench/export.py: chargeback export throughput (BENCH_EXPORT_ROWS)

    chargeback_export.report()
    import router as router_bench  # bench/router.py: classifier and Router.route per prompt

    router_bench.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
