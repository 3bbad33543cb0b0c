"""Adaptive share control: the tier's recent scores set the cut-offs that hold its target shares."""

from __future__ import annotations

import random

import pytest
from finops.routing import Router, RoutingPolicy
from finops.routing.share_control import RecentScores
from finops.routing.strategies import Cutoffs, Strategy


class Fixed(Strategy):
    """Scores a prompt with the number written in it; validation cut-offs 0.7 (strong) and 0.4 (medium)."""

    name = "fixed"

    def score(self, text: str) -> float:
        return float(text)

    def cutoffs(self, strong_share: float | None = None, medium_share: float = 0.0,
                target_pgr: float | None = None) -> Cutoffs:
        return Cutoffs(strong=0.7, medium=0.4)


def make_router(share_control: str = "adaptive", **tier: object) -> Router:
    policy = RoutingPolicy.model_validate({
        "default_strategy": "fixed", "adaptive_window": 500, "adaptive_min_samples": 100,
        "default_tier": "pro",
        "tiers": {"pro": {"cheap": "gpt-4o-mini", "medium": "llama", "strong": "gpt-4o", "strong_share": 0.3,
                          "medium_share": 0.2, "share_control": share_control, **tier}}})
    return Router(policy, allows=lambda tier, model: True, strategies={"fixed": Fixed()})


def route_many(router: Router, scores: list[float]) -> list[str]:
    return [router.route([{"role": "user", "content": str(s)}], "auto", "pro").model_class or "" for s in scores]


def test_recent_scores_cut_for_a_share() -> None:
    recent = RecentScores(window=10)
    with pytest.raises(ValueError):
        recent.cut_for_share(0.5)
    for s in range(10):  # 0 .. 9
        recent.add(float(s))
    assert recent.cut_for_share(0.3) == 7.0  # 7, 8, 9 are >= 7: 30 %
    assert recent.cut_for_share(0.0) == float("inf") and recent.cut_for_share(1.0) == float("-inf")
    for s in (100.0, 101.0, 102.0):  # the window keeps the last 10: 3 .. 9, 100, 101, 102
        recent.add(s)
    assert len(recent) == 10
    assert recent.cut_for_share(0.3) == 100.0
    assert recent.cut_for_share(0.8) == 5.0


def test_traffic_unlike_the_validation_data_still_gets_its_target_shares() -> None:
    rng = random.Random(0)
    scores = [0.6 + 0.4 * rng.random() for _ in range(3000)]  # every score is above the 0.4 medium cut-off
    static = route_many(make_router("static"), scores)
    assert static.count("cheap") == 0  # the validation cut-offs never pick the cheap model on this traffic
    adaptive = route_many(make_router(), scores)
    later = adaptive[500:]
    assert later.count("strong") / len(later) == pytest.approx(0.3, abs=0.03)
    assert later.count("medium") / len(later) == pytest.approx(0.2, abs=0.03)
    assert later.count("cheap") / len(later) == pytest.approx(0.5, abs=0.03)
    assert adaptive[:100] == static[:100]  # until min_samples calls were seen, the validation cut-offs


def test_the_ranking_is_kept_only_the_operating_point_moves() -> None:
    router = make_router()
    route_many(router, [i / 1000 for i in range(1000)])
    low, high = router.route([{"role": "user", "content": "0.01"}], "auto", "pro"), \
        router.route([{"role": "user", "content": "0.99"}], "auto", "pro")
    assert (low.model_class, high.model_class) == ("cheap", "strong")
    assert "from recent calls" in high.reason


def test_a_quality_target_stays_static() -> None:
    router = make_router(target_pgr=0.8)
    classes = route_many(router, [0.75 + i / 1200 for i in range(300)])
    assert set(classes) == {"strong"}  # all above the validation cut-off; adaptive would send only 30 %
    assert router.adaptive_cutoffs(Fixed(), "pro", router.policy.tier("pro")) is None
