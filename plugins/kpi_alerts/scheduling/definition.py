"""A report schedule as data: one ``kpi_schedules`` row (checked and walked by
:mod:`kpi_alerts.scheduling.schedule`; its calendar by :mod:`kpi_alerts.scheduling.dates`, its words by
:mod:`kpi_alerts.scheduling.wording`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.cron import parse_cron


@dataclass(frozen=True)
class Schedule:
    """One ``kpi_schedules`` row; field names are the column names."""

    frequency_interval: str
    schedule_hour: int
    schedule_minute: int
    selected_days: tuple[int, ...]
    timezone: str
    cron_expression: str | None = None
    every_n_weeks: int | None = None
    start_date: date | None = None
    business_day: int | None = None
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    on_holiday: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        """Build from a DB row mapping without validating (call :meth:`validate`).

        :param row: mapping with the ``kpi_schedules`` column names; ``selected_days`` may be
            ``None`` or a list, ``schedule_hour`` may be ``None`` for hourly schedules; the calendar
            columns (``cron_expression``, ``every_n_weeks``, ...) may be absent.
        """
        missing = [k for k in ("frequency_interval", "schedule_minute", "timezone") if k not in row]
        if missing:
            raise AlertValidationError(f"Schedule is missing {', '.join(missing)}")
        days = row.get("selected_days")
        hour = row.get("schedule_hour")
        if hour is None and row["frequency_interval"] in ("hour", "cron"):
            hour = 0  # ignored by hourly and cron schedules
        return cls(
            frequency_interval=row["frequency_interval"],
            schedule_hour=hour,  # type: ignore[arg-type]  # checked by validate()
            schedule_minute=row["schedule_minute"] if row["schedule_minute"] is not None else 0,
            selected_days=() if days is None else tuple(days) if isinstance(days, list | tuple) else days,
            timezone=row["timezone"],
            cron_expression=row.get("cron_expression"),
            every_n_weeks=row.get("every_n_weeks"),
            start_date=row.get("start_date"),
            business_day=row.get("business_day"),
            holiday_country=row.get("holiday_country"),
            holiday_subdivision=row.get("holiday_subdivision"),
            on_holiday=row.get("on_holiday"),
        )

    @property
    def times_of_day(self) -> tuple[time, ...]:
        """The local wall times it fires at on each of its dates, in order."""
        if self.frequency_interval == "cron":
            assert self.cron_expression is not None
            return tuple(time(h, m) for h, m in parse_cron(self.cron_expression).times_of_day)
        if self.frequency_interval == "hour":
            return tuple(time(h, self.schedule_minute) for h in range(24))
        return (time(self.schedule_hour, self.schedule_minute),)
