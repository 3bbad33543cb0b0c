"""`make bench` (router part): classifier load, score and ``Router.route`` per prompt.

Prompts: every prompt of the shared router data (all MMLU subjects, GSM8K, MT-Bench first turns), their text
only. Prints, never asserts. ``make router-eval`` prints the same numbers for the acceptance prompts.

Usage: python bench/router.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/core/python")]

from finops.routing import data as rdata  # noqa: E402
from finops.routing.latency import measure  # noqa: E402


def prompts(root: Path) -> list[str]:
    splits = rdata.load_splits(root)
    examples = (rdata.load_mmlu(root, splits.train_subjects + splits.heldout_subjects) + rdata.load_gsm8k(root)
                + rdata.load_mt_bench(root))
    return [e.prompt for e in examples]


def report() -> None:
    root = rdata.default_root()
    if not (root / "splits.json").exists():
        print(f"== router: skipped, no router data at {root} ==")
        return
    m = measure(prompts(root))
    print(f"== router ({m['prompts']} prompts x 3 runs; CPU reference sum(range(10_000)) = "
          f"{m['cpu_ref_us']:.0f} us) ==")
    print(f"  artifact ({m['artifact_bytes'] / 1e6:.2f} MB) load              p50 {m['load_ms_p50']:7.2f} ms   "
          f"max {m['load_ms_max']:7.2f} ms   cold interpreter + load + score p50 {m['cold_import_load_ms_p50']:.0f} ms")
    print(f"  classifier score                       p50 {m['score_us_p50']:7.1f} us   p99 {m['score_us_p99']:7.1f} us"
          f"   (each prompt's fastest run: p50 {m['score_us_best_p50']:.1f}, p99 {m['score_us_best_p99']:.1f} us)")
    print(f"  Router.route (auto, pro tier)          p50 {m['route_us_p50']:7.1f} us   p99 {m['route_us_p99']:7.1f} us"
          f"   (each prompt's fastest run: p50 {m['route_us_best_p50']:.1f}, p99 {m['route_us_best_p99']:.1f} us)")


if __name__ == "__main__":
    report()
