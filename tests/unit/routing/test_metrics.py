"""APGR / CPT as RouteLLM's evals/evaluate.py, on hand-made curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from finops.routing import metrics
from hypothesis import given, settings
from hypothesis import strategies as st


def test_hand_made_curve_points_and_apgr() -> None:
    # Items in score order: gains +1, +1, 0, -1.
    weak, strong = np.array([0, 0, 1, 1.0]), np.array([1, 1, 1, 0.0])
    c = metrics.curve(np.array([4, 3, 2, 1.0]), weak, strong)
    assert c.strong_pct.tolist() == [0, 25, 50, 75, 100]
    assert c.quality.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]
    assert metrics.auc(c) == pytest.approx(0.84375)
    assert metrics.apgr(c) == pytest.approx((0.84375 - 0.5) / (0.75 - 0.5))  # 1.375: beats always-strong
    assert metrics.cpt(c, 0.5) == pytest.approx(12.5)  # quality 0.625 reached a quarter of the way to 25 %
    assert metrics.cpt(c, 0.8) == pytest.approx(20.0)


def test_uniform_gain_is_the_diagonal() -> None:
    c = metrics.curve(np.arange(10.0), np.zeros(10), np.ones(10))
    assert metrics.apgr(c) == pytest.approx(0.5)
    assert metrics.cpt(c, 0.5) == pytest.approx(50.0)
    assert metrics.cpt(c, 0.8) == pytest.approx(80.0)


def test_perfect_and_inverted_routers() -> None:
    weak, strong = np.array([0, 1, 1, 1.0]), np.array([1, 1, 1, 1.0])
    good = metrics.curve(np.array([1, 0, 0, 0.0]), weak, strong)
    bad = metrics.curve(np.array([0, 1, 1, 1.0]), weak, strong)
    # good: (0 %, 0.75) -> (25 %, 1.0) -> (100 %, 1.0): AUC 0.96875, weak 0.75, strong 1.0
    assert metrics.apgr(good) == pytest.approx(0.875)
    assert metrics.apgr(bad) == pytest.approx(0.125)
    assert metrics.apgr(good) + metrics.apgr(bad) == pytest.approx(1.0)


def test_ties_move_together() -> None:
    c = metrics.curve(np.array([1, 1, 0, 0.0]), np.zeros(4), np.array([1, 0, 1, 0.0]))
    assert c.strong_pct.tolist() == [0, 50, 100]
    assert c.quality.tolist() == [0.0, 0.25, 0.5]


def test_routellm_quantile_thresholds() -> None:
    # 10 bins -> 11 thresholds; the last uses '>' so the curve starts at 0 % strong calls.
    scores = np.arange(100.0)
    c = metrics.curve(scores, np.zeros(100), np.ones(100), num_results=10)
    assert len(c.strong_pct) == 11
    assert c.strong_pct[0] == 0.0 and c.strong_pct[-1] == 100.0
    assert metrics.apgr(c) == pytest.approx(0.5)


def _brute_force(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> tuple[list[float], list[float]]:
    """RouteLLM's loop with every distinct score as a threshold (``>=``, and ``>`` for the last)."""
    thresholds = np.unique(scores)
    points = []
    for i, t in enumerate(thresholds):
        sel = scores >= t
        points.append((sel.mean() * 100, np.where(sel, strong, weak).mean()))
        if i == len(thresholds) - 1:
            sel = scores > t
            points.append((sel.mean() * 100, np.where(sel, strong, weak).mean()))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), min_size=1, max_size=30))
def test_fast_curve_matches_routellm_loop(rows: list[tuple[int, bool, bool]]) -> None:
    scores = np.array([r[0] for r in rows], dtype=float)
    weak = np.array([r[1] for r in rows], dtype=float)
    strong = np.array([r[2] for r in rows], dtype=float)
    c = metrics.curve(scores, weak, strong)
    pct, qual = _brute_force(scores, weak, strong)
    assert c.strong_pct.tolist() == pytest.approx(pct)
    assert c.quality.tolist() == pytest.approx(qual)


def test_threshold_for_share_with_ties() -> None:
    discrete = np.array([0.5] * 97 + [1.0] * 3)
    assert metrics.threshold_for_share(discrete, 0.5) == 1.0  # 3 % is nearer 50 % than 100 %
    assert metrics.threshold_for_share(np.array([0.1, 0.2, 0.3, 0.4]), 0.5) == 0.3
    assert metrics.threshold_for_share(np.array([0.1, 0.2]), 0.0) == float("inf")
    assert metrics.realised(np.array([0.1, 0.2, 0.3, 0.4]), np.zeros(4), np.ones(4), 0.3) == (0.5, 0.5)


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(1)
    s, w, st_ = rng.random(50), rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    a = metrics.bootstrap(s, w, st_, 0.5, n_boot=20, seed=3)
    b = metrics.bootstrap(s, w, st_, 0.5, n_boot=20, seed=3)
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    lo, hi = metrics.interval(a["share"])
    assert 0 <= lo <= hi <= 1
