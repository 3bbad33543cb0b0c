"""The shipped complexity classifier (``finops/data/router/classifier.*``), with cut-offs calibrated on the
validation subjects of the training data (the grid in the artifact's metadata)."""

from __future__ import annotations

from ..model import Classifier, default_classifier
from .base import Cutoffs, Strategy


class ClassifierStrategy(Strategy):
    name = "classifier"

    def __init__(self, classifier: Classifier | None = None) -> None:
        self._classifier = classifier

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            self._classifier = default_classifier()
        return self._classifier

    def score(self, text: str) -> float:
        return self.classifier.score(text)

    def threshold_for_share(self, share: float) -> float:
        """The validation-calibrated score threshold that sends ``share`` of calls to a class or above."""
        grid = self.classifier.meta["calibration"]["grid"]
        share = min(1.0, max(0.0, share))
        best = min(grid, key=lambda row: abs(row["target_share"] - share))
        return float(best["threshold"])

    def share_for_pgr(self, pgr: float) -> float:
        """The smallest strong-call share that recovered ``pgr`` of the quality gap on the validation subjects."""
        grid = sorted(self.classifier.meta["calibration"]["grid"], key=lambda row: row["target_share"])
        return next((float(row["target_share"]) for row in grid if row["pgr"] >= pgr), 1.0)

    def cutoffs(self, strong_share: float | None = None, medium_share: float = 0.0,
                target_pgr: float | None = None) -> Cutoffs:
        if target_pgr is not None:
            share = self.share_for_pgr(target_pgr)
        elif strong_share is None:
            share = float(self.classifier.meta["calibration"]["target_strong_share"])
        else:
            share = strong_share
        strong = self.threshold_for_share(share)
        medium = self.threshold_for_share(share + medium_share) if medium_share > 0 else strong
        return Cutoffs(strong=strong, medium=min(medium, strong))
