"""UTC days and billing months as the chargeback code passes them around: ``YYYY-MM-DD`` and ``YYYY-MM``."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from ..errors import InvalidRequest

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"\d{4}-\d{2}")


def parse_day(value: str) -> date:
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise InvalidRequest(f"expected a UTC day as YYYY-MM-DD, got {value!r}", param="date")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(f"not a calendar day: {value!r}", param="date") from exc


def parse_month(value: str) -> date:
    """``YYYY-MM`` -> the first day of that month."""
    if not isinstance(value, str) or not _MONTH.fullmatch(value):
        raise InvalidRequest(f"expected a billing month as YYYY-MM, got {value!r}", param="month")
    try:
        return date.fromisoformat(f"{value}-01")
    except ValueError as exc:
        raise InvalidRequest(f"not a calendar month: {value!r}", param="month") from exc


def next_month(first: date) -> date:
    return date(first.year + (first.month == 12), first.month % 12 + 1, 1)


def month_bounds(month: str) -> tuple[str, str]:
    """``2026-11`` -> ``("2026-11-01", "2026-12-01")``: the ``dt`` range [start, end) every query takes."""
    first = parse_month(month)
    return first.isoformat(), next_month(first).isoformat()


def days_of(month: str) -> list[str]:
    first = parse_month(month)
    end = next_month(first)
    return [(first + timedelta(days=i)).isoformat() for i in range((end - first).days)]


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InvalidRequest("timestamps must carry a UTC offset", param="scheduled_time")
    return moment.astimezone(UTC)


def previous_day(moment: datetime) -> str:
    """The UTC day before ``moment``'s: what the daily export run at 00:45 UTC exports."""
    return (as_utc(moment).date() - timedelta(days=1)).isoformat()


def previous_month(moment: datetime) -> str:
    """The billing month before ``moment``'s: what the monthly FOCUS run on the 1st exports."""
    first = as_utc(moment).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")
