"""Mandatory cost tags: ``X-Project-ID``, ``X-User-ID``, ``X-Environment``.

A tag value is 1-64 characters of ``[A-Za-z0-9._:-]``: safe in an S3 key, a DynamoDB key and a SQL
literal. Anything else is refused before it is stored or echoed (error messages never repeat the value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import MissingCostTags
from .settings import Settings

TAG_VALUE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

PROJECT_HEADER = "X-Project-ID"
USER_HEADER = "X-User-ID"
ENVIRONMENT_HEADER = "X-Environment"
TAG_HEADERS = (PROJECT_HEADER, USER_HEADER, ENVIRONMENT_HEADER)
# The label untagged or unmapped spend is booked to. Fixed, not configurable: the chargeback query
# ``unallocated_spend.sql`` and the reports select on this very value.
UNALLOCATED = "unallocated"


@dataclass(frozen=True)
class CostTags:
    project_id: str
    user_id: str
    environment: str
    department_id: str
    # Headers that were missing or invalid and booked to ``unallocated`` (observe mode only).
    unallocated: tuple[str, ...] = field(default=())


def is_valid_tag(value: str) -> bool:
    return TAG_VALUE.fullmatch(value) is not None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name (API Gateway passes names as the client sent them)."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _problem(name: str, value: str | None, settings: Settings) -> str | None:
    if value is None or value == "":
        return f"{name} is missing"
    if not is_valid_tag(value):
        return f"{name} must be 1-64 characters of A-Z a-z 0-9 . _ : -"
    if name == ENVIRONMENT_HEADER and value not in settings.environments:
        return f"{name} must be one of: {', '.join(settings.environments)}"
    return None


def resolve_tags(headers: Mapping[str, str], settings: Settings) -> CostTags:
    """Validate the three tags; raise :class:`MissingCostTags` naming every bad header at once.

    In ``observe`` mode bad tags are booked to ``UNALLOCATED`` instead of being refused.
    """
    values = {name: header(headers, name) for name in TAG_HEADERS}
    problems = {name: p for name in TAG_HEADERS if (p := _problem(name, values[name], settings))}
    if problems and settings.enforcement_mode == "enforce":
        raise MissingCostTags(
            "Cost tags are required: " + "; ".join(problems.values()) + ".",
            param=", ".join(problems),
            details={"invalid_headers": list(problems)},
        )
    clean = {name: (UNALLOCATED if name in problems else values[name]) for name in TAG_HEADERS}
    project = clean[PROJECT_HEADER]
    assert project is not None
    department = settings.project_departments.get(project, UNALLOCATED)
    return CostTags(
        project_id=project,
        user_id=clean[USER_HEADER] or UNALLOCATED,
        environment=clean[ENVIRONMENT_HEADER] or UNALLOCATED,
        department_id=department,
        unallocated=tuple(problems),
    )
