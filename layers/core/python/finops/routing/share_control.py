"""Holding a tier's strong-call share on its own traffic.

The cut-offs calibrated on the validation subjects give the target share on prompts like those; real traffic
scores differently (on the acceptance data, the 50 % cut-off sends 65 % of held-out MMLU prompts and 80 % of
GSM8K prompts to the strong model). The share depends only on the distribution of scores, not on labels, so
the router can measure it: ``RecentScores`` keeps the scores of a tier's last ``window`` auto calls (in this
execution environment), and once it holds ``min_samples`` of them the cut-off for a share is the matching
quantile of those scores. Which prompts go to the strong model is still decided by the classifier's ranking;
only the operating point moves.

This window is one execution environment's; ``fleet_scores`` shares the scores across environments when the
router has a score store (the gateway's does), and the router uses this window only while the fleet's has too
few. Single-threaded, as a Lambda execution environment is.
"""

from __future__ import annotations

import bisect
from collections import deque


class RecentScores:
    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._order: deque[float] = deque()  # arrival order, for eviction
        self._sorted: list[float] = []  # the same scores, ascending

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, score: float) -> None:
        if len(self._order) == self._window:
            old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._order.append(score)
        bisect.insort(self._sorted, score)

    def cut_for_share(self, share: float) -> float:
        """The cut-off ``c`` such that about ``share`` of the recent scores are ``>= c`` (``inf``: none,
        ``-inf``: all). Empty windows have no opinion: ``ValueError``."""
        n = len(self._sorted)
        if n == 0:
            raise ValueError("no recent scores")
        k = round(min(1.0, max(0.0, share)) * n)  # how many of the recent calls should have gone above
        if k <= 0:
            return float("inf")
        if k >= n:
            return float("-inf")
        return self._sorted[n - k]
