"""Baseline: the seed's rule. Under 50 characters -> LOW (cheap); a keyword (analyze, legal, medical,
strategy, audit) -> HIGH (strong); anything else -> MEDIUM."""

from __future__ import annotations

from .base import Cutoffs, Strategy

KEYWORDS = ("analyze", "legal", "medical", "strategy", "audit")
LOW, MEDIUM, HIGH = 0.0, 0.5, 1.0


class SeedHeuristic(Strategy):
    name = "seed_heuristic"
    default_cutoffs = Cutoffs(strong=HIGH, medium=MEDIUM)

    def score(self, text: str) -> float:
        if len(text) < 50:
            return LOW
        low = text.lower()
        if any(k in low for k in KEYWORDS):
            return HIGH
        return MEDIUM
