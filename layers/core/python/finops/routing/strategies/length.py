"""Baseline: the longer the prompt, the more it needs the strong model (``chars / (chars + 500)``)."""

from __future__ import annotations

from .base import Cutoffs, Strategy

HALF = 500  # characters at which the score is 0.5


class LengthStrategy(Strategy):
    name = "length"
    default_cutoffs = Cutoffs(strong=0.5, medium=0.2)  # >= 500 chars strong, >= 125 chars medium

    def score(self, text: str) -> float:
        n = len(text)
        return n / (n + HALF)
