"""What a routing strategy is: ``score(text)`` in [0, 1] = predicted need for the strong model, plus the
score cut-offs that split calls into the cheap / medium / strong model classes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cutoffs:
    """``score >= strong`` -> strong model class; ``score >= medium`` -> medium; else cheap."""

    strong: float
    medium: float


class Strategy:
    name: str = "base"
    #: a constant strategy always picks the same class; evaluated as one operating point, not a curve
    constant: bool = False
    #: cut-offs used when the strategy has no calibration of its own (fixed rules)
    default_cutoffs: Cutoffs = Cutoffs(strong=0.5, medium=0.25)

    def score(self, text: str) -> float:
        raise NotImplementedError

    def cutoffs(self, strong_share: float | None = None, medium_share: float = 0.0,
                target_pgr: float | None = None) -> Cutoffs:
        """Cut-offs for a target share of strong (and medium) calls or a target quality; fixed-rule strategies
        ignore the targets."""
        return self.default_cutoffs
