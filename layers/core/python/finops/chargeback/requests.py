"""The chargeback functions' input events (pydantic: every boundary is a model)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, model_validator

from . import periods


class ExportDayRequest(BaseModel):
    """``{"date": "YYYY-MM-DD"}`` exports that UTC day; ``{"scheduled_time": ISO-8601}`` (EventBridge
    Scheduler's ``<aws.scheduler.scheduled-time>``) exports the day before it; ``{}`` exports yesterday."""

    model_config = ConfigDict(extra="ignore")

    date: str | None = None
    scheduled_time: datetime | None = None

    @model_validator(mode="after")
    def _check(self) -> ExportDayRequest:
        if self.date is not None:
            periods.parse_day(self.date)
        if self.scheduled_time is not None:
            periods.as_utc(self.scheduled_time)
        return self

    def day(self, now: datetime | None = None) -> str:
        if self.date is not None:
            return self.date
        return periods.previous_day(self.scheduled_time or now or datetime.now(UTC))


class FocusExportRequest(BaseModel):
    """``{"month": "YYYY-MM"}``, or ``{"scheduled_time": ...}`` / ``{}``: the month before."""

    model_config = ConfigDict(extra="ignore")

    month: str | None = None
    scheduled_time: datetime | None = None

    @model_validator(mode="after")
    def _check(self) -> FocusExportRequest:
        if self.month is not None:
            periods.parse_month(self.month)
        if self.scheduled_time is not None:
            periods.as_utc(self.scheduled_time)
        return self

    def month_to_export(self, now: datetime | None = None) -> str:
        if self.month is not None:
            return self.month
        return periods.previous_month(self.scheduled_time or now or datetime.now(UTC))
