"""Routing strategies: one file each, one registry line each. A strategy scores a prompt in [0, 1]
(predicted need for the strong model)."""

from __future__ import annotations

from collections.abc import Callable

from .always_strong import AlwaysStrong
from .always_weak import AlwaysWeak
from .base import Cutoffs, Strategy
from .classifier import ClassifierStrategy
from .length import LengthStrategy
from .random import RandomStrategy
from .seed_heuristic import SeedHeuristic

STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "classifier": ClassifierStrategy,
    "length": LengthStrategy,
    "seed_heuristic": SeedHeuristic,
    "random": RandomStrategy,
    "always_weak": AlwaysWeak,
    "always_strong": AlwaysStrong,
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise KeyError(f"unknown routing strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


__all__ = ["STRATEGIES", "Cutoffs", "Strategy", "get_strategy"]
