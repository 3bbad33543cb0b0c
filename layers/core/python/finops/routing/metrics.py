"""Cost-quality curves and RouteLLM's router metrics (APGR, CPT(x%)), with bootstrap intervals.

Definitions follow RouteLLM's ``routellm/evals/evaluate.py`` (lm-sys/RouteLLM) and its benchmarks:

- a router gives each prompt a score (its estimate of the strong model's win rate); for a threshold ``t``,
  prompts with ``score >= t`` go to the strong model (``> t`` for the last, highest threshold, so the curve
  ends at 0 % strong calls), and a curve point is (strong-call %, mean quality of the routed answers);
- ``AUC = np.trapz(quality, strong_percentage / 100)`` over the points sorted by strong-call %;
- ``APGR = (AUC - weak_auc) / (strong_auc - weak_auc)`` where ``weak_auc`` / ``strong_auc`` integrate the
  constant always-weak / always-strong quality over the same strong-call range;
- ``CPT(x%) = np.interp(x * (strong_acc - weak_acc) + weak_acc, quality, strong_percentage)``: the strong-call
  % needed to recover x % of the quality gap (``np.interp`` over the curve as RouteLLM calls it).

RouteLLM picks thresholds with ``pd.qcut(scores, num_results)`` (10 bins by default); ``num_results=None``
here uses every distinct score as a threshold (the full-resolution curve, as the shared data's README
measures its baselines); ``num_results=k`` reproduces RouteLLM's k-quantile thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_trapz = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz -> trapezoid


@dataclass(frozen=True)
class Curve:
    strong_pct: np.ndarray  # strong-call percentage, ascending
    quality: np.ndarray  # mean quality of the routed answers at that point
    weak_quality: float
    strong_quality: float


def _thresholds(scores: np.ndarray, num_results: int | None) -> np.ndarray:
    if num_results is None:
        return np.unique(scores)
    # pd.qcut(..., retbins=True) bin edges = the (linear-interpolated) quantiles 0, 1/k, ..., 1
    return np.quantile(scores, np.linspace(0.0, 1.0, num_results + 1))


def curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, num_results: int | None = None) -> Curve:
    """Quality vs strong-call % as the threshold sweeps (``>=`` for all thresholds but the last, ``>`` for it)."""
    scores = np.asarray(scores, dtype=float)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    n = len(scores)
    if n == 0:
        raise ValueError("empty benchmark")
    weak_q, strong_q = float(weak.mean()), float(strong.mean())
    if num_results is None:
        # Every distinct score, via one sort: route the top-k (a whole tie group at a time) to strong.
        order = np.argsort(-scores, kind="stable")
        s = scores[order]
        gain = np.cumsum((strong - weak)[order])
        ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each tie group
        k = np.r_[0, ends + 1]
        gains = np.r_[0.0, gain[ends]]
        pct = k / n * 100.0
        qual = (weak.sum() + gains) / n
        return Curve(pct, qual, weak_q, strong_q)
    points = []
    thresholds = _thresholds(scores, num_results)
    for i, t in enumerate(thresholds):
        sel = scores >= t if i != len(thresholds) - 1 else scores > t
        points.append((sel.mean() * 100.0, np.where(sel, strong, weak).mean()))
    points.sort(key=lambda p: p[0])  # stable, like sort_values on unique-ish keys
    pct, qual = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    return Curve(pct, qual, weak_q, strong_q)


def auc(c: Curve) -> float:
    return float(_trapz(c.quality, c.strong_pct / 100.0))


def apgr(c: Curve) -> float:
    """Average performance gap recovered: 0 = always-weak quality everywhere, 1 = always-strong."""
    x = c.strong_pct / 100.0
    weak_auc = float(_trapz(np.full(len(x), c.weak_quality), x))
    strong_auc = float(_trapz(np.full(len(x), c.strong_quality), x))
    if strong_auc == weak_auc:
        return float("nan")
    return (auc(c) - weak_auc) / (strong_auc - weak_auc)


def cpt(c: Curve, pct: float) -> float:
    """Call-performance threshold: strong-call % needed to reach ``pct`` (0-1) of the quality gap, as RouteLLM."""
    target = pct * (c.strong_quality - c.weak_quality) + c.weak_quality
    return float(np.interp(target, c.quality, c.strong_pct))


def realised(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, threshold: float) -> tuple[float, float]:
    """(strong-call share, mean quality) when prompts with ``score >= threshold`` go to the strong model."""
    sel = np.asarray(scores) >= threshold
    return float(sel.mean()), float(np.where(sel, strong, weak).mean())


def threshold_for_share(scores: np.ndarray, share: float) -> float:
    """The threshold (one of the scores) whose strong-call share ``mean(score >= threshold)`` on these prompts
    is closest to ``share`` (the smaller share on a tie); with tied scores the share moves in steps."""
    if share <= 0:
        return float("inf")
    if share >= 1:
        return float("-inf")
    s = np.sort(np.asarray(scores, dtype=float))[::-1]
    values, first = np.unique(-s, return_index=True)  # distinct scores, descending, and where each group starts
    shares = (first + np.bincount(np.searchsorted(values, -s))) / len(s)  # share with score >= each value
    best = int(np.argmin(np.abs(shares - share) + 1e-12 * shares))
    return float(-values[best])


def bootstrap(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, threshold: float, *,
              n_boot: int = 1000, seed: int = 0, num_results: int | None = None) -> dict[str, np.ndarray]:
    """Resample prompts with replacement (fixed seed); per replicate: APGR, CPT(50%), CPT(80%), realised share
    and quality at ``threshold``. The router's scores are fixed (no retraining)."""
    rng = np.random.default_rng(seed)
    scores, weak, strong = (np.asarray(a, dtype=float) for a in (scores, weak, strong))
    n = len(scores)
    out = {k: np.empty(n_boot) for k in ("apgr", "cpt50", "cpt80", "share", "quality")}
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        c = curve(scores[idx], weak[idx], strong[idx], num_results)
        out["apgr"][b] = apgr(c)
        out["cpt50"][b] = cpt(c, 0.5)
        out["cpt80"][b] = cpt(c, 0.8)
        out["share"][b], out["quality"][b] = realised(scores[idx], weak[idx], strong[idx], threshold)
    return out


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
