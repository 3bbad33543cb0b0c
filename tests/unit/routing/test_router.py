"""Router.route: auto, concrete models honoured, tier downgrade / refusal, X-FinOps-Route, counterfactuals,
adaptive share control."""

from __future__ import annotations

import random

import pytest
from finops.routing import RouteDecision, Router, RoutingPolicy, load_routing_policy
from finops.routing.share_control import BINS, Cut, RecentScores
from written_scores import Fixed

ALLOWED = {
    "free": {"gpt-4o-mini", "gpt-3.5-turbo", "llama-3.1-8b-instant"},
    "pro": {"gpt-4o-mini", "claude-haiku-4-5", "gpt-4o"},
    "duo": {"gpt-4o-mini", "gpt-4o"},
    "strict": {"gpt-4o-mini"},
}
ALIASES = {"gpt-4o-2024-08-06": "gpt-4o"}


POLICY = RoutingPolicy.model_validate({
    "default_strategy": "fixed",
    "reference_model": "gpt-4o",
    "tiers": {
        "free": {"cheap": "gpt-4o-mini"},
        "pro": {"cheap": "gpt-4o-mini", "medium": "claude-haiku-4-5", "strong": "gpt-4o", "medium_share": 0.25},
        "duo": {"cheap": "gpt-4o-mini", "strong": "gpt-4o"},
        "strict": {"cheap": "gpt-4o-mini", "on_forbidden": "refuse"},
    },
})


@pytest.fixture
def router() -> Router:
    return Router(POLICY, allows=lambda tier, model: model in ALLOWED.get(tier, set()),
                  canonical=lambda m: ALIASES.get(m, m), strategies={"fixed": Fixed()})


def ask(router: Router, score: float | str, model: str = "auto", tier: str = "pro",
        header: str | None = None) -> RouteDecision:
    return router.route([{"role": "system", "content": "9"}, {"role": "user", "content": str(score)}], model, tier,
                        header)


@pytest.mark.parametrize(("score", "model", "cls"), [
    (0.9, "gpt-4o", "strong"), (0.7, "gpt-4o", "strong"), (0.5, "claude-haiku-4-5", "medium"),
    (0.4, "claude-haiku-4-5", "medium"), (0.1, "gpt-4o-mini", "cheap")])
def test_auto_picks_the_class_by_score(router: Router, score: float, model: str, cls: str) -> None:
    d = ask(router, score)
    assert (d.model, d.model_class, d.strategy, d.score) == (model, cls, "fixed", score)
    assert d.routed and not d.downgraded and not d.forbidden
    assert d.counterfactual_model == "gpt-4o"
    assert d.requested_model == "auto"


def test_auto_without_a_medium_model(router: Router) -> None:
    assert ask(router, 0.5, tier="duo").model == "gpt-4o-mini"  # no medium: below the strong cut-off -> cheap
    assert ask(router, 0.8, tier="duo").model == "gpt-4o"


def test_free_tier_reaches_only_cheap_and_skips_scoring(router: Router) -> None:
    d = ask(router, "not a number", tier="free")  # Fixed.score would raise: it is never called
    assert (d.model, d.score, d.strategy) == ("gpt-4o-mini", None, None)
    assert d.counterfactual_model == "gpt-4o"  # free has no strong model: the reference model


def test_auto_is_case_insensitive(router: Router) -> None:
    assert ask(router, 0.9, model=" AUTO ").model == "gpt-4o"


def test_concrete_model_is_honoured(router: Router) -> None:
    d = ask(router, "ignored", model="gpt-4o")
    assert (d.model, d.routed, d.strategy, d.counterfactual_model) == ("gpt-4o", False, None, "gpt-4o")
    d = ask(router, "ignored", model="gpt-4o-2024-08-06")
    assert (d.model, d.requested_model) == ("gpt-4o", "gpt-4o-2024-08-06")


def test_forbidden_model_is_downgraded(router: Router) -> None:
    d = ask(router, "ignored", model="gpt-4o", tier="free")
    assert (d.model, d.downgraded, d.forbidden) == ("gpt-4o-mini", True, False)
    assert d.counterfactual_model == "gpt-4o"  # what was asked for


def test_forbidden_model_is_refused_when_the_tier_says_so(router: Router) -> None:
    d = ask(router, "ignored", model="gpt-4o", tier="strict")
    assert (d.model, d.downgraded, d.forbidden) == ("gpt-4o", False, True)


def test_route_off(router: Router) -> None:
    d = ask(router, "not a number", header="off")
    assert (d.model, d.routed, d.strategy, d.score) == ("gpt-4o", False, None, None)
    assert ask(router, "x", header="OFF").model == "gpt-4o"
    assert ask(router, "x", model="gpt-4o-mini", header="off").model == "gpt-4o-mini"
    # no silent substitution when routing is off: a forbidden model is refused
    d = ask(router, "x", model="gpt-4o", tier="free", header="off")
    assert (d.forbidden, d.downgraded) == (True, False)


def test_route_header_picks_a_strategy(router: Router) -> None:
    d = ask(router, "x" * 2000, header="length")
    assert d.strategy == "length" and d.model_class in ("strong", "medium", "cheap")
    d = ask(router, 0.9, header="bogus")
    assert d.strategy == "fixed" and "ignored" in d.reason
    assert ask(router, 0.9, header="on").strategy == "fixed"


def test_unknown_tier_uses_the_default_tier(router: Router) -> None:
    assert ask(router, 0.9, tier="nobody").model == "gpt-4o-mini"


def test_misconfigured_ladder_is_rejected() -> None:
    with pytest.raises(ValueError, match="not allowed for the tier"):
        Router(POLICY, allows=lambda tier, model: model == "gpt-4o-mini", strategies={"fixed": Fixed()})
    with pytest.raises(ValueError):
        RoutingPolicy.model_validate({"tiers": {"free": {}}, "default_tier": "free"})
    with pytest.raises(ValueError):
        RoutingPolicy.model_validate({"tiers": {"free": {"cheap": "a"}}, "default_tier": "pro"})


def test_shipped_policy_matches_the_budget_tiers() -> None:
    router = Router.default()  # raises if a ladder model is not allowed for its tier
    policy = load_routing_policy()
    assert set(policy.tiers) == {"free", "pro", "enterprise"}
    assert policy.tiers["free"].classes == ("cheap",)
    msgs = [{"role": "user", "content": "Analyze the legal exposure in this contract clause, step by step. " * 10}]
    d = router.route(msgs, "auto", "pro")
    assert d.strategy == "classifier" and d.model_class == "strong" and d.model == "gpt-4o"
    d = router.route([{"role": "user", "content": "hi"}], "auto", "pro")
    assert d.model == "gpt-4o-mini"
    assert router.route(msgs, "auto", "free").model == "gpt-4o-mini"
    # The shipped tiers refuse a concrete model they may not use (403 model_not_allowed) rather than swap it.
    refused = router.route(msgs, "gpt-4o", "free")
    assert (refused.model, refused.forbidden, refused.downgraded) == ("gpt-4o", True, False)
    assert router.route(msgs, "gpt-4o-2024-08-06", "pro").model == "gpt-4o"


def test_shipped_ladders_are_priced_and_served() -> None:
    from finops.pricing import load_catalog
    from finops.providers.registry import PROVIDERS

    catalog = load_catalog()
    policy = load_routing_policy()
    for tier in policy.tiers.values():
        for cls in tier.classes:
            assert catalog.get(tier.model_of(cls)).provider in PROVIDERS  # type: ignore[arg-type]
    assert catalog.get(policy.reference_model).provider in PROVIDERS


# --- adaptive share control: the tier's recent scores set the cut-offs that hold its target shares ---

def adaptive_router(share_control: str = "adaptive", rng: random.Random | None = None, **tier: object) -> Router:
    policy = RoutingPolicy.model_validate({
        "default_strategy": "fixed", "adaptive_window": 500, "adaptive_min_samples": 100,
        "default_tier": "pro",
        "tiers": {"pro": {"cheap": "gpt-4o-mini", "medium": "llama", "strong": "gpt-4o", "strong_share": 0.3,
                          "medium_share": 0.2, "share_control": share_control, **tier}}})
    return Router(policy, allows=lambda tier, model: True, strategies={"fixed": Fixed()}, rng=rng)


def route_many(router: Router, scores: list[float]) -> list[str]:
    return [router.route([{"role": "user", "content": str(s)}], "auto", "pro").model_class or "" for s in scores]


def test_recent_scores_cut_for_a_share() -> None:
    recent = RecentScores(window=10)
    with pytest.raises(ValueError):
        recent.cut_for_share(0.5)
    for s in range(10):  # bins 0, 100, ..., 900
        recent.add(s / 10 + 0.0005)
    assert recent.cut_for_share(0.3) == Cut(700, 1.0)  # bins 700, 800, 900 reach it: 30 %
    assert recent.cut_for_share(0.0) == Cut(BINS) and recent.cut_for_share(1.0) == Cut(-1)
    for s in (0.95, 0.96, 0.97):  # the window keeps the last 10: bins 300 .. 900, 950, 960, 970
        recent.add(s)
    assert len(recent) == 10
    assert recent.cut_for_share(0.3) == Cut(950, 1.0)
    assert recent.cut_for_share(0.8) == Cut(500, 1.0)


def test_tied_scores_are_split_by_lot_in_the_share_owed() -> None:
    recent = RecentScores(window=10)
    for s in [0.1] * 5 + [0.5] * 5:
        recent.add(s)
    assert recent.cut_for_share(0.3) == Cut(500, 0.6)  # 3 of the 5 tied at 0.5
    assert recent.cut_for_share(0.7) == Cut(100, 0.4)  # the five at 0.5, and 2 of the 5 at 0.1
    cut = Cut(500, 0.6)
    assert cut.reaches(0.5004, 0.59) and not cut.reaches(0.5004, 0.61)  # in the cut's bin: by the draw
    assert cut.reaches(0.501, 0.99) and not cut.reaches(0.4999, 0.0)  # above / below it: never by lot


def test_one_repeated_prompt_template_still_gets_its_target_shares() -> None:
    """An agent loop or a batch job sends one template: every score alike. Its quantile is its own score, so
    without tie-breaking every call would reach the strong cut-off."""
    router = adaptive_router(rng=random.Random(7))
    classes = route_many(router, [0.65] * 3000)
    later = classes[100:]
    assert later.count("strong") / len(later) == pytest.approx(0.3, abs=0.03)
    assert later.count("medium") / len(later) == pytest.approx(0.2, abs=0.03)
    assert later.count("cheap") / len(later) == pytest.approx(0.5, abs=0.03)


def test_traffic_unlike_the_validation_data_still_gets_its_target_shares() -> None:
    rng = random.Random(0)
    scores = [0.6 + 0.4 * rng.random() for _ in range(3000)]  # every score is above the 0.4 medium cut-off
    static = route_many(adaptive_router("static"), scores)
    assert static.count("cheap") == 0  # the validation cut-offs never pick the cheap model on this traffic
    adaptive = route_many(adaptive_router(), scores)
    later = adaptive[500:]
    assert later.count("strong") / len(later) == pytest.approx(0.3, abs=0.03)
    assert later.count("medium") / len(later) == pytest.approx(0.2, abs=0.03)
    assert later.count("cheap") / len(later) == pytest.approx(0.5, abs=0.03)
    assert adaptive[:100] == static[:100]  # until min_samples calls were seen, the validation cut-offs


def test_the_ranking_is_kept_only_the_operating_point_moves() -> None:
    router = adaptive_router()
    route_many(router, [i / 1000 for i in range(1000)])
    low, high = router.route([{"role": "user", "content": "0.01"}], "auto", "pro"), \
        router.route([{"role": "user", "content": "0.99"}], "auto", "pro")
    assert (low.model_class, high.model_class) == ("cheap", "strong")
    assert "from recent calls" in high.reason


def test_a_quality_target_stays_static() -> None:
    router = adaptive_router(target_pgr=0.8)
    classes = route_many(router, [0.75 + i / 1200 for i in range(300)])
    assert set(classes) == {"strong"}  # all above the validation cut-off; adaptive would send only 30 %
    assert router.adaptive_cutoffs(Fixed(), "pro", router.policy.tier("pro")) is None
