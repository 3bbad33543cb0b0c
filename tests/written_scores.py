"""A routing strategy for tests: the score is the number the prompt holds, the validation cut-offs are given."""

from __future__ import annotations

from finops.routing.strategies import Cutoffs, Strategy


class Fixed(Strategy):
    """Scores every prompt with the number written in it (tests choose the class exactly)."""

    name = "fixed"

    def __init__(self, strong: float = 0.7, medium: float = 0.4) -> None:
        self._cutoffs = Cutoffs(strong=strong, medium=medium)

    def score(self, text: str) -> float:
        return float(text)

    def cutoffs(self, strong_share: float | None = None, medium_share: float = 0.0,
                target_pgr: float | None = None) -> Cutoffs:
        return self._cutoffs
