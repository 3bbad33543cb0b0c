"""GCRA arithmetic: a token bucket kept as one number, its "theoretical arrival time" (TAT).

A bucket of ``capacity`` units refills continuously over ``period``. Time is integer microseconds. The
bucket is full when ``tat <= now``; its level (units in use) is ``(tat - now) * capacity / period``.
Admitting ``amount`` units moves ``tat`` to ``max(tat, now) + inc`` with ``inc = ceil(amount * period /
capacity)``, and is allowed only if the new level stays within capacity: ``max(tat, now) + inc - now <=
period``. A refund moves ``tat`` back by its ``inc``; any ``tat`` in the past means "full", so a refund can
never create credit beyond capacity.

DynamoDB cannot compute ``max`` in an update, so a write is one of two conditional cases:
``fresh`` (``tat <= now``: set ``tat = now + inc``) or ``debt`` (``tat > now``: add ``inc``). The caller
guesses the case; a wrong guess fails its condition and returns the item, which :func:`decide` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import Enum

MICROS = 1_000_000
DAY_US = 86_400 * MICROS


class Case(str, Enum):
    FRESH = "fresh"
    DEBT = "debt"


def increment(amount: Decimal | int, capacity: Decimal | int, period_us: int) -> int:
    """Time units that ``amount`` occupies in a bucket of ``capacity`` per ``period_us`` (rounded up)."""
    if amount < 0:
        raise ValueError("amount must be >= 0")
    if capacity <= 0:
        raise ValueError("capacity must be > 0")
    return int((Decimal(amount) * period_us / Decimal(capacity)).to_integral_value(rounding=ROUND_CEILING))


def level(tat: int | None, now: int, capacity: Decimal | int, period_us: int) -> Decimal:
    """Units in use at ``now`` (0 when full)."""
    backlog = max(0, (tat or 0) - now)
    return Decimal(backlog) * Decimal(capacity) / period_us


def remaining(tat: int | None, now: int, capacity: Decimal | int, period_us: int) -> Decimal:
    return max(Decimal(0), Decimal(capacity) - level(tat, now, capacity, period_us))


def seconds_until_full(tat: int | None, now: int) -> int:
    return math.ceil(max(0, (tat or 0) - now) / MICROS)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    case: Case
    new_tat: int | None  # the TAT after admission (None when refused)
    retry_after_us: int | None  # when refused: wait this long; None if it can never fit


def decide(tat: int | None, now: int, inc: int, period_us: int) -> Decision:
    """Admit ``inc`` into a bucket whose stored TAT is ``tat`` (None: never used)."""
    case = Case.DEBT if tat is not None and tat > now else Case.FRESH
    base = tat if case is Case.DEBT and tat is not None else now
    new_tat = base + inc
    if inc > period_us:
        return Decision(False, case, None, None)
    if new_tat - now <= period_us:
        return Decision(True, case, new_tat, None)
    return Decision(False, case, None, new_tat - period_us - now)


def debt_limit(now: int, inc: int, period_us: int) -> int:
    """Highest stored TAT for which a ``debt`` admission of ``inc`` still fits."""
    return now + period_us - inc
