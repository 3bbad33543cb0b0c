"""``finops spot-backtest``: the hunter, "cheapest zone now" and On-Demand only on real Spot prices.

Registered by ``finops.cli`` with ``register(sub)``; ``spot_backtest(args)`` is the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

from ..errors import FinOpsError


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "spot-backtest", help="replay a checkpointed training job on real Spot prices (hunter vs cheapest vs OD)",
        description="Simulate a Llama-3-8B fine-tune (sized to ~$400 On-Demand unless --steps is given) on the "
                    "Spot price history in finops/data/spot with a seeded preemption model; see docs/spot_backtest.md.")
    parser.add_argument("--instance-type", default="p3.2xlarge")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--steps", type=int, help="training steps (default: sized so On-Demand costs ~$400)")
    parser.add_argument("--seeds", type=int, default=200, help="number of seeded runs per policy (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; runs use seed .. seed+seeds-1")
    parser.add_argument("--hazard-scale", type=float, default=1.0, help="multiply every preemption hazard")
    parser.add_argument("--cluster-boost", type=float, default=9.0,
                        help="extra hazard right after a preemption in the same zone (0 = no clustering; default 9)")
    parser.add_argument("--no-zone-box-minutes", type=int, default=60,
                        help="On-Demand box when the hunter finds no eligible zone (default 60)")
    parser.add_argument("--prices", help="Spot price file (TSV or TSV.gz; default: the bundled 2022-05-31 file)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=spot_backtest)
    return parser


def spot_backtest(args: argparse.Namespace) -> int:
    from .backtest import reference_job, run_backtest
    from .market import bundled_price_file, load_price_file
    from .preemption_model import PreemptionModel

    if args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    try:
        job = reference_job(args.instance_type, args.region, steps=args.steps).model_copy(
            update={"no_zone_box": timedelta(minutes=args.no_zone_box_minutes)})
        history = load_price_file(Path(args.prices) if args.prices else bundled_price_file())
        report = run_backtest(history, job, seeds=range(args.seed, args.seed + args.seeds),
                              model=PreemptionModel(scale=args.hazard_scale, cluster_boost=args.cluster_boost))
    except (FinOpsError, ValueError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
        return 0
    print(f"{job.name}: {job.steps} steps on {job.instance_type} in {job.region} ({job.steps_per_hour} steps/h, "
          f"checkpoint every {job.checkpoint_every}, restart {job.restart_overhead.total_seconds() / 60:g} min)")
    print(f"On-Demand ${report.on_demand_usd_per_hour}/h x {float(job.hours):.1f} h = "
          f"${report.on_demand_cost_usd:.2f}; {len(report.seeds)} seeds "
          f"from {report.seeds[0]}, hazard scale {report.hazard_scale:g}; prices {report.data_start:%Y-%m-%d %H:%M}"
          f"-{report.data_end:%H:%M} UTC")
    print("zones (lowest Spot / On-Demand): " + ", ".join(f"{az} {r:.0%}" for az, r in report.zones.items()))
    header = (f"{'policy':<10} {'mean $':>9} {'p90 $':>9} {'saving':>7} {'lost steps':>11} {'p90':>5} "
              f"{'preempt.':>8} {'p90':>4} {'hours':>7} {'p90 h':>7} {'OD share':>8}")
    print(header)
    for s in report.summaries:
        print(f"{s.policy:<10} {s.mean_cost_usd:>9} {s.p90_cost_usd:>9} {s.saving_vs_on_demand:>7.1%} "
              f"{s.mean_lost_steps:>11.1f} {s.p90_lost_steps:>5} {s.mean_preemptions:>8.2f} {s.p90_preemptions:>4} "
              f"{s.mean_hours:>7.1f} {s.p90_hours:>7.1f} {s.mean_on_demand_share:>8.1%}")
    if report.verdict:
        print(report.verdict)
    return 0
