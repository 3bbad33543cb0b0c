"""Holding a tier's strong-call share across every execution environment, not each one alone.

``RecentScores`` (``share_control``) only sees the calls of one execution environment: a new one routes its
first ``adaptive_min_samples`` auto calls on the validation cut-off, which on traffic unlike the validation
subjects sends far more calls to the strong model than the target (80 % instead of 50 % on GSM8K). A fleet of
short-lived environments spends much of its traffic there. ``FleetScores`` shares the scores instead: every
environment adds its scores, as counts per score bin, to one item per (strategy, tier, UTC hour) in a
``ScoreStore``, and reads the last ``hours`` items back as one histogram whose quantiles are the cut-offs.

Both directions are batched, so the request path rarely waits on the store: an environment writes its pending
counts every ``flush_every`` scores or ``flush_seconds``, and re-reads the fleet's histogram every
``refresh_seconds``. A store that fails costs nothing but freshness: the error is logged, the pending counts
wait for the next write, the last histogram read stays in use (the router falls back to this environment's
own recent scores, then to the validation cut-off, while the fleet has too few). Single-threaded, as a Lambda
execution environment is.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .share_control import ScoreHistogram, bin_of

logger = Logger(child=True)
# What a store may raise: AWS errors, and a malformed item. Routing goes on without fresh fleet scores.
STORE_ERRORS = (BotoCoreError, ClientError, KeyError, TypeError, ValueError)

BINS_PER_WRITE = 100  # one write's bins: DynamoDB caps an update expression at 4 KB (~280 of these)


class ScoreStore(Protocol):
    """Where the fleet's score counts live (``score_store.DynamoScoreStore``)."""

    def add(self, key: str, hour: str, counts: Mapping[int, int]) -> None: ...

    def read(self, key: str, hours: list[str]) -> Counter[int]: ...


HOUR_FORMAT = "%Y-%m-%dT%H"  # the UTC hour an item counts


def hour_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(HOUR_FORMAT)


@dataclass
class _Shared:
    pending: Counter[int] = field(default_factory=Counter)  # counted here, not yet written
    since_flush: int = 0  # scores recorded since the last write was tried
    last_flush: float = 0.0
    histogram: ScoreHistogram | None = None  # until the store was first read
    read_at: float | None = None  # when a read was last tried


class FleetScores:
    def __init__(self, store: ScoreStore, *, hours: int = 2, flush_every: int = 50, flush_seconds: float = 30.0,
                 refresh_seconds: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if hours < 1 or flush_every < 1:
            raise ValueError("hours and flush_every must be >= 1")
        self.store = store
        self.hours, self.flush_every = hours, flush_every
        self.flush_seconds, self.refresh_seconds = flush_seconds, refresh_seconds
        self.clock = clock
        self._keys: dict[str, _Shared] = {}

    def _shared(self, key: str) -> _Shared:
        if key not in self._keys:
            self._keys[key] = _Shared(last_flush=self.clock())
        return self._keys[key]

    def histogram(self, key: str) -> ScoreHistogram | None:
        """The fleet's scores of the last ``hours`` UTC hours (the current one included), re-read from the store
        when older than ``refresh_seconds`` and counting this environment's own scores since; the last
        histogram read while the store fails, None if it never answered."""
        shared = self._shared(key)
        now = self.clock()
        if shared.read_at is None or now - shared.read_at >= self.refresh_seconds:
            shared.read_at = now
            hours = [hour_of(now - 3600 * h) for h in range(self.hours)]
            try:
                shared.histogram = ScoreHistogram(self.store.read(key, hours) + shared.pending)
            except STORE_ERRORS as exc:
                logger.warning("fleet routing scores unreadable; keeping the last ones", extra={
                    "key": key, "error": str(exc)})
        return shared.histogram

    def record(self, key: str, score: float) -> None:
        """Count one score; write the pending counts when ``flush_every`` are waiting or ``flush_seconds``
        passed since the last write."""
        shared = self._shared(key)
        b = bin_of(score)
        shared.pending[b] += 1
        if shared.histogram is not None:
            shared.histogram.add(b)  # the fleet includes this environment: its view moves between reads too
        shared.since_flush += 1
        now = self.clock()
        if shared.since_flush >= self.flush_every or now - shared.last_flush >= self.flush_seconds:
            self.flush(key, now)

    def flush(self, key: str, now: float | None = None) -> bool:
        """Write ``key``'s pending counts to the current hour's item, ``BINS_PER_WRITE`` bins a write; each
        written part leaves the pending counts. False (the rest kept) if the store failed."""
        shared = self._shared(key)
        now = self.clock() if now is None else now
        shared.last_flush, shared.since_flush = now, 0  # a failing store is tried again at the next flush only
        hour = hour_of(now)
        while shared.pending:
            part = dict(sorted(shared.pending.items())[:BINS_PER_WRITE])
            try:
                self.store.add(key, hour, part)
            except STORE_ERRORS as exc:
                logger.warning("fleet routing scores not written; kept for the next write", extra={
                    "key": key, "pending": sum(shared.pending.values()), "error": str(exc)})
                return False
            shared.pending.subtract(part)
            shared.pending = +shared.pending  # drop the written bins
        return True
