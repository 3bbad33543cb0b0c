"""Baseline: every call to the cheap model (the APGR = 0 reference point)."""

from __future__ import annotations

from .base import Cutoffs, Strategy


class AlwaysWeak(Strategy):
    name = "always_weak"
    constant = True
    default_cutoffs = Cutoffs(strong=1.0, medium=1.0)

    def score(self, text: str) -> float:
        return 0.0
