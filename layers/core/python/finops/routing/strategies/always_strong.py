"""Baseline: every call to the strong model (the APGR = 1 reference point)."""

from __future__ import annotations

from .base import Cutoffs, Strategy


class AlwaysStrong(Strategy):
    name = "always_strong"
    constant = True
    default_cutoffs = Cutoffs(strong=0.0, medium=0.0)

    def score(self, text: str) -> float:
        return 1.0
