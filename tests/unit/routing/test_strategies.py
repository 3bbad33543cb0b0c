"""Every strategy returns a score in [0, 1]; the baselines follow their rules."""

from __future__ import annotations

import pytest
from finops.routing.strategies import STRATEGIES, get_strategy
from finops.routing.strategies.random import RandomStrategy

TEXTS = ["", "hi", "x" * 49, "Please analyze this quarterly report in depth for me.", "y" * 5000]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_scores_in_unit_interval(name: str) -> None:
    strategy = get_strategy(name)
    assert strategy.name == name
    for text in TEXTS:
        score = strategy.score(text)
        assert 0.0 <= score <= 1.0
        assert strategy.score(text) == score
    cut = strategy.cutoffs(0.5, 0.25)
    assert cut.medium <= cut.strong


def test_registry_has_the_issue_strategies() -> None:
    assert {"classifier", "length", "seed_heuristic", "random", "always_weak", "always_strong"} <= set(STRATEGIES)
    with pytest.raises(KeyError, match="unknown routing strategy"):
        get_strategy("oracle")


def test_seed_heuristic_rules() -> None:
    s = get_strategy("seed_heuristic")
    assert s.score("analyze the legal memo") == 0.0  # under 50 characters -> LOW, keywords or not
    assert s.score("Please could you analyze the following paragraph for me?") == 1.0
    assert s.score("Please could you summarise the following paragraph for me?") == 0.5
    for word in ("Legal", "MEDICAL", "strategy", "audit"):
        assert s.score(f"A fairly long request that mentions the word {word} somewhere inside.") == 1.0


def test_length_is_monotone() -> None:
    s = get_strategy("length")
    scores = [s.score("a" * n) for n in (0, 10, 100, 500, 5000)]
    assert scores == sorted(scores)
    assert scores[3] == pytest.approx(0.5)


def test_random_is_seeded() -> None:
    a, b, c = RandomStrategy(0), RandomStrategy(0), RandomStrategy(1)
    texts = [f"prompt {i}" for i in range(200)]
    assert [a.score(t) for t in texts] == [b.score(t) for t in texts]
    assert [a.score(t) for t in texts] != [c.score(t) for t in texts]
    mean = sum(a.score(t) for t in texts) / len(texts)
    assert 0.4 < mean < 0.6


def test_constant_baselines() -> None:
    weak, strong = get_strategy("always_weak"), get_strategy("always_strong")
    assert weak.constant and strong.constant
    assert weak.score("anything") < weak.default_cutoffs.strong
    assert strong.score("anything") >= strong.default_cutoffs.strong


def test_classifier_cutoffs_from_calibration() -> None:
    s = get_strategy("classifier")
    half = s.cutoffs(0.5, 0.25)
    assert half.strong == pytest.approx(s.classifier.meta["calibration"]["threshold"])
    assert half.medium < half.strong
    assert s.cutoffs(0.2).strong > half.strong > s.cutoffs(0.8).strong
    assert s.cutoffs(0.0).strong > 1.0  # nothing to strong
    assert s.cutoffs(1.0).strong < 0.0  # everything to strong
    assert s.cutoffs(target_pgr=0.8).strong <= s.cutoffs(target_pgr=0.5).strong
