"""`make router-eval`: every routing strategy on the acceptance data, RouteLLM's metrics, timings.

    .venv/bin/python scripts/router_eval.py [--data ../shared/data/router] [--boot 1000] [--no-docs]

- Benchmarks: the held-out MMLU subjects, GSM8K and MT-Bench (decontaminated); never used for training,
  calibration or feature choice. The validation subjects (part of ``train_subjects``, recorded in the
  artifact) calibrate each strategy's threshold for the artifact's target strong-call share.
- Metrics (``finops.routing.metrics``, as RouteLLM's ``evals/evaluate.py``): APGR, CPT(50%), CPT(80%) on the
  full-resolution cost-quality curve (every distinct score a threshold), APGR also on RouteLLM's default
  10-quantile thresholds; realised strong-call share and quality at the calibrated threshold. 95% bootstrap
  intervals (prompts resampled, fixed seed).
- Always-weak / always-strong are single operating points: APGR 0 and 1 by the normalisation.
- Timings: classifier artifact load (in-process, and a cold interpreter), per-prompt scoring p50/p99 over the
  acceptance prompts, ``Router.route`` p99.

Writes ``docs/router.md`` (between the ``router-eval`` markers) and ``docs/router_curve.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers/core/python"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
from finops.routing import data as rdata  # noqa: E402
from finops.routing import latency, metrics  # noqa: E402
from finops.routing.model import Classifier  # noqa: E402
from finops.routing.policy import RoutingPolicy, load_routing_policy  # noqa: E402
from finops.routing.router import Router  # noqa: E402
from finops.routing.score_store import DynamoScoreStore  # noqa: E402
from finops.routing.strategies import STRATEGIES, Cutoffs, Strategy, get_strategy  # noqa: E402

ORDER = ("random", "always_weak", "always_strong", "length", "seed_heuristic", "classifier")
BENCHES = (("mmlu_heldout", "MMLU held-out subjects"), ("gsm8k", "GSM8K"), ("mt_bench", "MT-Bench"))
BEGIN, END = "<!-- router-eval:begin -->", "<!-- router-eval:end -->"


def load(root: Path, meta: dict) -> tuple[dict[str, list[rdata.Example]], list[rdata.Example]]:
    splits = rdata.load_splits(root)
    drop = rdata.contaminated_prompts(root)
    _, val_subjects = rdata.split_train_validation(splits, meta["training"]["seed"],
                                                   meta["training"]["config"]["validation_fraction"])
    if list(val_subjects) != meta["training"]["validation_subjects"]:
        raise SystemExit("the artifact's validation subjects differ from splits.json + seed: retrain the router")
    benches = {"mmlu_heldout": rdata.load_mmlu(root, splits.heldout_subjects, drop),
               "gsm8k": rdata.load_gsm8k(root, drop), "mt_bench": rdata.load_mt_bench(root, drop)}
    return benches, rdata.load_mmlu(root, val_subjects, drop)


def evaluate(benches: dict, validation: list, n_boot: int, seed: int, target_share: float,
             classifier: Classifier) -> tuple[dict, dict]:
    results: dict = {}
    curves: dict = {}
    for name in ORDER:
        strategy = get_strategy(name) if name != "classifier" else STRATEGIES[name](classifier)
        val_scores = np.array([strategy.score(e.prompt) for e in validation])
        threshold = (strategy.default_cutoffs.strong if strategy.constant
                     else metrics.threshold_for_share(val_scores, target_share))
        if name == "classifier":
            shipped = classifier.meta["calibration"]["threshold"]
            if abs(shipped - threshold) > 1e-9:
                raise SystemExit(f"classifier threshold {threshold} != the artifact's {shipped}: retrain the router")
        for bench, examples in benches.items():
            weak = np.array([e.weak for e in examples])
            strong = np.array([e.strong for e in examples])
            scores = np.array([strategy.score(e.prompt) for e in examples])
            row: dict = {"threshold": threshold, "n": len(examples),
                         "weak_quality": float(weak.mean()), "strong_quality": float(strong.mean())}
            share, quality = metrics.realised(scores, weak, strong, threshold)
            row.update(share=share, quality=quality)
            if strategy.constant:
                row.update(apgr=1.0 if share == 1.0 else 0.0, apgr10=1.0 if share == 1.0 else 0.0,
                           cpt50=100.0 if share == 1.0 else float("nan"), cpt80=100.0 if share == 1.0 else float("nan"))
                boot = metrics.bootstrap(scores, weak, strong, threshold, n_boot=n_boot, seed=seed)
                for k in ("apgr", "cpt50", "cpt80"):
                    boot[k] = np.full(n_boot, row[k])
                curves[(name, bench)] = ([share * 100], [quality])
            else:
                c = metrics.curve(scores, weak, strong)
                row.update(apgr=metrics.apgr(c), cpt50=metrics.cpt(c, 0.5), cpt80=metrics.cpt(c, 0.8),
                           apgr10=metrics.apgr(metrics.curve(scores, weak, strong, num_results=10)))
                boot = metrics.bootstrap(scores, weak, strong, threshold, n_boot=n_boot, seed=seed)
                curves[(name, bench)] = (c.strong_pct, c.quality)
            row["ci"] = {k: metrics.interval(v) for k, v in boot.items()}
            row["boot_apgr"] = boot["apgr"]  # same seed and size for every strategy: replicate b is paired
            results[(name, bench)] = row
            print(f"{bench:13s} {name:15s} APGR {row['apgr']:.3f} [{row['ci']['apgr'][0]:.3f}, "
                  f"{row['ci']['apgr'][1]:.3f}]  CPT50 {row['cpt50']:.1f}%  CPT80 {row['cpt80']:.1f}%  "
                  f"share@thr {share:.1%}  quality {quality:.3f}", flush=True)
    return results, curves


def fmt_ci(row: dict, key: str, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    v = row[key]
    if v != v:  # NaN
        return "n/a"
    lo, hi = row["ci"][key]
    if lo == hi == v or lo != lo:
        return f"{v * scale:.{digits}f}{unit}"
    return f"{v * scale:.{digits}f}{unit} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


ENVIRONMENTS = 10  # the simulated fleet: execution environments serving one tier's auto calls
CALLS_PER_SECOND = 10.0


class Precomputed(Strategy):
    """The classifier's scores, computed once per prompt, with its validation cut-off: the share-control
    simulation runs the real ``Router`` without scoring every prompt four times."""

    name = "classifier"

    def __init__(self, scores: dict[str, float], threshold: float) -> None:
        self._scores = scores
        self._cut = Cutoffs(strong=threshold, medium=threshold)

    def score(self, text: str) -> float:
        return self._scores[text]

    def cutoffs(self, strong_share: float | None = None, medium_share: float = 0.0,
                target_pgr: float | None = None) -> Cutoffs:
        return self._cut


class _Clock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def moto_score_store() -> Iterator[DynamoScoreStore]:
    """The gateway's score store on a fresh budgets-like table in moto (in-process): the fleet's shared scores."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="eval",
                              aws_secret_access_key="eval")
        client.create_table(TableName="eval", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        yield DynamoScoreStore(client, "eval")


def simulate(examples: list, strategy: Strategy, target: float, seed: int, environments: int,
              store: Any = None) -> np.ndarray:
    """Which prompts ``Router.route`` sends to the strong model when the benchmark's prompts arrive once, in a
    seeded random order, at ``CALLS_PER_SECOND``, each to one of ``environments`` routers picked at random
    (sharing ``store``'s fleet scores when given)."""
    shipped = load_routing_policy()
    policy = RoutingPolicy.model_validate({
        "default_strategy": "classifier", "default_tier": "eval", "adaptive_window": shipped.adaptive_window,
        "adaptive_min_samples": shipped.adaptive_min_samples, "fleet": shipped.fleet.model_dump(),
        "tiers": {"eval": {"cheap": "weak", "strong": "strong", "strong_share": target}}})
    clock = _Clock()
    routers = [Router(policy, allows=lambda tier, model: True, strategies={"classifier": strategy},
                      score_store=store, clock=clock, rng=random.Random(seed + e)) for e in range(environments)]
    rng = np.random.default_rng(seed)
    sent = np.zeros(len(examples), dtype=bool)
    for i in rng.permutation(len(examples)):
        clock.now += 1 / CALLS_PER_SECOND
        decision = routers[int(rng.integers(environments))].route(examples[i].prompt, "auto", "eval")
        sent[i] = decision.model_class == "strong"
    return sent


def share_control(benches: dict, classifier: Classifier, target: float, seed: int) -> dict:
    """The realised strong-call share and quality of the classifier: with the validation cut-off (static); with
    adaptive share control (``finops.routing.share_control``, the shipped policy's window) in one execution
    environment serving every call; in ``ENVIRONMENTS`` environments each alone; and in as many sharing their
    scores (``fleet_scores``, through the real ``DynamoScoreStore`` on moto in-process)."""
    policy = load_routing_policy()
    threshold = float(classifier.meta["calibration"]["threshold"])
    out: dict = {"window": policy.adaptive_window, "min_samples": policy.adaptive_min_samples,
                 "environments": ENVIRONMENTS, "rate": CALLS_PER_SECOND, "fleet": policy.fleet}
    for bench, examples in benches.items():
        scores = np.array([classifier.score(e.prompt) for e in examples])
        strategy = Precomputed({e.prompt: float(v) for e, v in zip(examples, scores, strict=True)}, threshold)
        weak = np.array([e.weak for e in examples])
        strong = np.array([e.strong for e in examples])
        with moto_score_store() as store:
            runs = {"one": simulate(examples, strategy, target, seed, 1),
                    "alone": simulate(examples, strategy, target, seed, ENVIRONMENTS),
                    "fleet": simulate(examples, strategy, target, seed, ENVIRONMENTS, store)}
        out[bench] = {"static": metrics.realised(scores, weak, strong, threshold)}
        out[bench].update({name: (float(sent.mean()), float(np.where(sent, strong, weak).mean()))
                           for name, sent in runs.items()})
        print(f"{bench:13s} share control: " + ", ".join(
            f"{name} {share:.1%} / {quality:.3f}" for name, (share, quality) in out[bench].items()), flush=True)
    return out


GOAL_MMLU_APGR = 0.68  # the goals; GSM8K and MT-Bench: no worse than length-only
MAX_SCORE_P99_US, MAX_LOAD_MS = 200, 50


def versus_length(results: dict) -> dict:
    """Classifier minus length-only APGR per benchmark: the point difference, and its 95% interval and the
    share of bootstrap replicates below zero, from the paired replicates (the same resampled prompts)."""
    out = {}
    for bench, _ in BENCHES:
        clf, length = results[("classifier", bench)], results[("length", bench)]
        diff = clf["boot_apgr"] - length["boot_apgr"]
        out[bench] = {"diff": clf["apgr"] - length["apgr"], "ci": metrics.interval(diff),
                      "p_below": float(np.mean(diff[np.isfinite(diff)] < 0))}
    return out


def goals(results: dict, versus: dict, times: dict) -> list[str]:
    """The issue's goals, each with its measured number and whether it is met."""
    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    mmlu = results[("classifier", "mmlu_heldout")]
    lines = ["### Goals", "",
             "| goal | measured | |", "|---|---|---|",
             f"| held-out MMLU APGR >= {GOAL_MMLU_APGR} | {fmt_ci(mmlu, 'apgr')} | "
             f"{met(mmlu['apgr'] >= GOAL_MMLU_APGR)} |"]
    for bench, title in BENCHES[1:]:
        v = versus[bench]
        lines.append(f"| {title}: no worse than length-only | classifier - length {v['diff']:+.3f} "
                     f"[{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}] (paired bootstrap; below zero in "
                     f"{v['p_below']:.0%} of replicates) | {met(v['diff'] >= 0)} |")
    rounds = len(times.get("score_us_p99_rounds", [None]))
    spread = ("" if rounds == 1 else " (rounds: " + ", ".join(f"{v:.0f}" for v in times["score_us_p99_rounds"])
              + f"; median of {rounds} measurements)")
    lines += [f"| score p99 <= {MAX_SCORE_P99_US} us | pooled {times['score_us_p99']:.0f} us{spread}; each prompt's "
              f"fastest of 3 runs {times['score_us_best_p99']:.0f} us | "
              f"{met(times['score_us_p99'] <= MAX_SCORE_P99_US)} (pooled) / "
              f"{met(times['score_us_best_p99'] <= MAX_SCORE_P99_US)} (fastest) |",
              f"| artifact load <= {MAX_LOAD_MS} ms | p50 {times['load_ms_p50']:.1f} ms, "
              f"max {times['load_ms_max']:.1f} ms | {met(times['load_ms_max'] <= MAX_LOAD_MS)} |", ""]
    return lines


def markdown(results: dict, control: dict, times: dict, meta: dict, n_boot: int, seed: int,
             target: float) -> str:
    lines = [BEGIN, "",
             f"Generated by `scripts/router_eval.py` (bootstrap: {n_boot} resamples, seed {seed}). Artifact sha256 "
             f"`{meta['sha256'][:16]}...`, {times['artifact_bytes'] / 1e6:.2f} MB. Threshold of every strategy "
             f"calibrated on the validation subjects (training data) for {target:.0%} strong calls.", "",
             *goals(results, versus_length(results), times)]
    for bench, title in BENCHES:
        any_row = results[(ORDER[0], bench)]
        lines += [f"### {title} (n = {any_row['n']}; weak {any_row['weak_quality']:.3f}, "
                  f"strong {any_row['strong_quality']:.3f})", "",
                  "| strategy | APGR [95% CI] | APGR (10 thr.) | CPT(50%) | CPT(80%) | strong share @thr | "
                  "quality @thr |", "|---|---|---|---|---|---|---|"]
        for name in ORDER:
            r = results[(name, bench)]
            qd = 2 if bench == "mt_bench" else 3
            lines.append(f"| {name} | {fmt_ci(r, 'apgr')} | {r['apgr10']:.3f} | {fmt_ci(r, 'cpt50', 1, 1, '%')} | "
                         f"{fmt_ci(r, 'cpt80', 1, 1, '%')} | {fmt_ci(r, 'share', 100, 1, '%')} | "
                         f"{fmt_ci(r, 'quality', 1, qd)} |")
        lines.append("")
    fleet = control["fleet"]
    lines += [f"### Share control (classifier, target {target:.0%} strong calls)", "",
              "The validation cut-off holds the target on prompts like the validation subjects' only. Adaptive "
              f"share control (the default) takes the cut-off from the last {control['window']} calls' scores once "
              f"{control['min_samples']} were seen. Each benchmark's prompts arrive once, in a seeded random order, "
              f"at {control['rate']:.0f} calls a second, through the real `Router`: in one execution environment; in "
              f"{control['environments']} environments (each call to one at random) each adapting alone; and in "
              f"{control['environments']} environments sharing their scores through the budgets table (moto; "
              f"writes every {fleet.flush_every} scores or {fleet.flush_seconds:.0f} s, re-reads every "
              f"{fleet.refresh_seconds:.0f} s).", "",
              "| benchmark | static | one environment | "
              f"{control['environments']} environments alone | {control['environments']} environments, fleet |",
              "|---|---|---|---|---|"]
    for bench, title in BENCHES:
        qd = 2 if bench == "mt_bench" else 3
        cells = [f"{share:.1%} strong, quality {quality:.{qd}f}"
                 for share, quality in (control[bench][k] for k in ("static", "one", "alone", "fleet"))]
        lines.append(f"| {title} (n = {results[(ORDER[0], bench)]['n']}) | " + " | ".join(cells) + " |")
    lines += ["", "### Timings (this machine)", "",
              f"- artifact load: p50 {times['load_ms_p50']:.1f} ms, max {times['load_ms_max']:.1f} ms in-process; "
              f"cold interpreter import + load + first score: p50 {times['cold_import_load_ms_p50']:.0f} ms",
              f"- classifier score per prompt ({times['prompts']} acceptance prompts x 3 runs): p50 "
              f"{times['score_us_p50']:.0f} us, p99 {times['score_us_p99']:.0f} us, "
              f"max {times['score_us_max']:.0f} us; "
              f"each prompt's fastest run: p50 {times['score_us_best_p50']:.0f} us, "
              f"p99 {times['score_us_best_p99']:.0f} us",
              f"- machine reference: `sum(range(10_000))` takes {times['cpu_ref_us']:.0f} us here (timings are noisy "
              "on a shared VM; compare with this number)",
              f"- every number above is the median of {len(times['score_us_p99_rounds'])} measurements; score p99 "
              "in each: " + ", ".join(f"{v:.0f}" for v in times["score_us_p99_rounds"]) + " us, CPU reference: "
              + ", ".join(f"{v:.0f}" for v in times["cpu_ref_us_rounds"]) + " us",
              f"- `Router.route` (auto, pro tier; x 3 runs): p50 {times['route_us_p50']:.0f} us, "
              f"p99 {times['route_us_p99']:.0f} us; each prompt's fastest run: p50 "
              f"{times['route_us_best_p50']:.0f} us, p99 {times['route_us_best_p99']:.0f} us",
              "", "![cost-quality curves](router_curve.png)", "", END]
    return "\n".join(lines)


def plot(curves: dict, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, (bench, title) in zip(axes, BENCHES, strict=True):
        for name in ORDER:
            x, y = curves[(name, bench)]
            if len(x) == 1:
                ax.plot(x, y, marker="o", linestyle="none", label=name)
            else:
                ax.plot(x, y, label=f"{name} (APGR {results[(name, bench)]['apgr']:.3f})", linewidth=1.2)
        r = results[(ORDER[0], bench)]
        ax.axhline(r["weak_quality"], color="grey", linestyle="--", linewidth=0.8)
        ax.axhline(r["strong_quality"], color="red", linestyle="--", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("strong model calls (%)")
        ax.set_ylabel("accuracy" if bench != "mt_bench" else "GPT-4 judge score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_doc(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else "# Model router\n\n## Results\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    classifier = Classifier.load()
    meta = classifier.meta
    target = float(meta["calibration"]["target_strong_share"])
    benches, validation = load(args.data or rdata.default_root(), meta)
    results, curves = evaluate(benches, validation, args.boot, args.seed, target, classifier)
    control = share_control(benches, classifier, target, args.seed)
    times = latency.measure_rounds([e.prompt for examples in benches.values() for e in examples], classifier)
    print({k: round(v, 2) if isinstance(v, float) else v for k, v in times.items()})
    if not args.no_docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        write_doc(args.docs / "router.md", markdown(results, control, times, meta, args.boot, args.seed, target))
        plot(curves, results, args.docs / "router_curve.png")
        print(f"wrote {args.docs / 'router.md'} and {args.docs / 'router_curve.png'}")
    print(f"router-eval took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
