"""How fast the router is: artifact load, classifier score and ``Router.route`` per prompt.

Shared by ``make router-eval`` (its timings section) and ``make bench``. A measurement, never an assertion:
on a shared VM the numbers move with the neighbours, so a CPU reference (``sum(range(10_000))``) is printed
beside them, and each prompt's fastest of three runs is reported next to the pooled percentiles (the prompt's
own cost, without scheduler noise).
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .model import Classifier, artifact_dir
from .router import Router

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding ``finops``


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cold_start_ms(runs: int = 5) -> float:
    """Median wall time of a fresh interpreter importing the classifier, loading it and scoring one prompt."""
    code = (f"import time,sys; sys.path.insert(0, {str(_PACKAGE_ROOT)!r}); t=time.perf_counter(); "
            "from finops.routing.model import Classifier; c=Classifier.load(); c.score('warm'); "
            "print((time.perf_counter()-t)*1000)")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True,  # noqa: S603 (our own code)
                             text=True, check=True, env=env).stdout) for _ in range(runs))


def _percentiles(name: str, fn: Any, inputs: Sequence[Any], repeats: int) -> dict[str, float]:
    """``fn`` over every input ``repeats`` times: pooled p50 / p99 / max, and p50 / p99 of each input's fastest
    run, in microseconds."""
    runs = np.zeros((repeats, len(inputs)))
    # The benchmark's own inputs (thousands of prompts and message lists) are moved out of the garbage
    # collector's generations, so a collection scans what a gateway process would, not the benchmark's data.
    gc.collect()
    gc.freeze()
    try:
        for r in range(repeats):
            for i, x in enumerate(inputs):
                t = time.perf_counter_ns()
                fn(x)
                runs[r, i] = (time.perf_counter_ns() - t) / 1000
    finally:
        gc.unfreeze()
    pooled, best = runs.ravel().tolist(), runs.min(axis=0).tolist()
    return {f"{name}_us_p50": pct(pooled, 0.5), f"{name}_us_p99": pct(pooled, 0.99), f"{name}_us_max": max(pooled),
            f"{name}_us_best_p50": pct(best, 0.5), f"{name}_us_best_p99": pct(best, 0.99)}


def measure(prompts: Sequence[str], classifier: Classifier | None = None, router: Router | None = None,
            *, repeats: int = 3, cold_runs: int = 5) -> dict[str, Any]:
    classifier = classifier or Classifier.load()
    out: dict[str, Any] = {"prompts": len(prompts)}
    loads = []
    for _ in range(20):
        gc.collect()  # the previous iterations' classifiers: garbage a process loading once never has
        t = time.perf_counter()
        Classifier.load()
        loads.append((time.perf_counter() - t) * 1000)
    out["load_ms_p50"], out["load_ms_max"] = statistics.median(loads), max(loads)
    out["cold_import_load_ms_p50"] = cold_start_ms(cold_runs) if cold_runs else float("nan")
    for p in prompts[:200]:
        classifier.score(p)  # warm
    out.update(_percentiles("score", classifier.score, prompts, repeats))
    t = time.perf_counter()
    for _ in range(50):
        sum(range(10_000))
    out["cpu_ref_us"] = (time.perf_counter() - t) / 50 * 1e6
    router = router or Router.default()
    router.warm()
    chats = [[{"role": "system", "content": "You are helpful."}, {"role": "user", "content": p}] for p in prompts]
    out.update(_percentiles("route", lambda m: router.route(m, "auto", "pro"), chats, repeats))
    out["artifact_bytes"] = (artifact_dir() / "classifier.npz").stat().st_size
    return out


def measure_rounds(prompts: Sequence[str], classifier: Classifier | None = None, *, rounds: int = 3,
                   repeats: int = 3, cold_runs: int = 5) -> dict[str, Any]:
    """``measure`` ``rounds`` times (the cold start in the first only): each number is the median of the rounds,
    and ``<name>_rounds`` keeps every round's score and route p99s and CPU reference, so a report shows how much
    one measurement moves on this machine."""
    runs = [measure(prompts, classifier, repeats=repeats, cold_runs=cold_runs if r == 0 else 0)
            for r in range(rounds)]
    out: dict[str, Any] = {k: (statistics.median(run[k] for run in runs) if isinstance(v, float) else v)
                           for k, v in runs[0].items()}
    out["cold_import_load_ms_p50"] = runs[0]["cold_import_load_ms_p50"]
    for name in ("score_us_p99", "score_us_best_p99", "route_us_p99", "cpu_ref_us"):
        out[f"{name}_rounds"] = [run[name] for run in runs]
    return out
