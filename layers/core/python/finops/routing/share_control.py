"""Holding a tier's strong-call share on its own traffic.

The cut-offs calibrated on the validation subjects give the target share on prompts like those; real traffic
scores differently (on the acceptance data, the 50 % cut-off sends 65 % of held-out MMLU prompts and 80 % of
GSM8K prompts to the strong model). The share depends only on the distribution of scores, not on labels, so
the router can measure it: ``RecentScores`` keeps the scores of a tier's last ``window`` auto calls (in this
execution environment; ``fleet_scores`` shares them across environments as a ``ScoreHistogram``), and once
it holds ``min_samples`` of them the cut-off for a share is the matching quantile of those scores. Which
prompts go to the strong model is still decided by the classifier's ranking; only the operating point moves.

Scores are compared in ``BINS`` bins (width 0.001). Calls whose scores share the cut-off's bin are tied: the
classifier cannot tell them apart, so each goes up with the probability that holds the share (``Cut.tie``).
Without that, traffic of one repeated prompt template -- an agent loop, a batch job -- scores alike, its
quantile is its own score, and every call would go to the strong model whatever the target.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

BINS = 1000  # score bins of width 0.001


def bin_of(score: float) -> int:
    return min(BINS - 1, max(0, int(score * BINS)))


@dataclass(frozen=True)
class Cut:
    """Scores in a bin above ``bin`` reach the class; those in ``bin`` itself with probability ``tie``.
    ``bin = -1``: every score reaches it; ``bin = BINS``: none does."""

    bin: int
    tie: float = 1.0

    @property
    def value(self) -> float:
        """The lower edge of the cut-off's bin (for reasons and logs)."""
        return self.bin / BINS

    def reaches(self, score: float, draw: float) -> bool:
        """``draw``: uniform in [0, 1), one per call, shared by a call's cuts so nested shares stay exact."""
        b = bin_of(score)
        return b > self.bin or (b == self.bin and draw < self.tie)


def _edge(k: int, n: int) -> Cut | None:
    """The cut sending ``k`` of ``n`` calls up when that is none or all of them."""
    if k <= 0:
        return Cut(BINS)
    if k >= n:
        return Cut(-1)
    return None


@dataclass(frozen=True)
class AdaptiveCutoffs:
    strong: Cut
    medium: Cut
    source: str  # whose recent calls: "recent calls" (this environment's) or "the fleet's recent calls"

    def decide(self, score: float, draw: float) -> str:
        if self.strong.reaches(score, draw):
            return "strong"
        return "medium" if self.medium.reaches(score, draw) else "cheap"


class ScoreHistogram:
    """Counts of scores per bin: this environment's last calls (``RecentScores``) or the fleet's
    (``fleet_scores``)."""

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        """``counts``: bin -> count; bins outside 0 .. BINS-1 and negative counts (not what the store writes)
        are left out."""
        self.counts = np.zeros(BINS, dtype=np.int64)
        for b, c in (counts or {}).items():
            if 0 <= b < BINS:
                self.counts[b] += c
        np.maximum(self.counts, 0, out=self.counts)
        self.total = int(self.counts.sum())
        self._from_top: np.ndarray | None = None  # calls in the top 1, 2, ... bins; None after an add

    def __len__(self) -> int:
        return self.total

    def add(self, b: int) -> None:
        self.counts[b] += 1
        self.total += 1
        self._from_top = None

    def remove(self, b: int) -> None:
        """Uncount one score of bin ``b`` (one that was counted)."""
        self.counts[b] -= 1
        self.total -= 1
        self._from_top = None

    def cut_for_share(self, share: float) -> Cut:
        """The cut sending about ``share`` of the counted calls up. No scores, no opinion: ``ValueError``."""
        n = self.total
        if n == 0:
            raise ValueError("no scores")
        k = round(min(1.0, max(0.0, share)) * n)
        edge = _edge(k, n)
        if edge is not None:
            return edge
        if self._from_top is None:  # once for a call's strong and medium cut-offs
            self._from_top = np.cumsum(self.counts[::-1])
        from_top = self._from_top
        i = int(from_top.searchsorted(k))  # the first top-(i+1) bins holding >= k calls
        b = BINS - 1 - i
        at = int(self.counts[b])
        return Cut(b, (k - (int(from_top[i]) - at)) / at)


class RecentScores:
    """The scores of the last ``window`` calls (this execution environment's), as a ``ScoreHistogram``."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._order: deque[int] = deque()  # the bins in arrival order, for eviction
        self._histogram = ScoreHistogram()

    def __len__(self) -> int:
        return len(self._order)

    def add(self, score: float) -> None:
        if len(self._order) == self._window:
            self._histogram.remove(self._order.popleft())
        b = bin_of(score)
        self._order.append(b)
        self._histogram.add(b)

    def cut_for_share(self, share: float) -> Cut:
        return self._histogram.cut_for_share(share)
