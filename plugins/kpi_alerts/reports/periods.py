"""A query's date range as calendar dates in the alert's timezone, and the previous range of the same length.

Cube resolves relative ranges (``last 7 days``, ``this month``...) against its own clock in the query's
timezone; this module resolves them the same way (Cube's ``dateParser``: ``last N <unit>`` runs from the
start of the unit N units ago to the end of the previous unit, ``this/last <unit>`` is one calendar unit,
weeks start on Monday) so a report can name the dates it covers and ask Cube for the period before it
with an explicit ``[start, end]`` range. Date-level only: a range finer than a day (hours, minutes) or
a phrase Cube knows but this module does not is left unresolved, and the report makes no comparison.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

Unit = Literal["day", "week", "month", "quarter", "year"]
_UNITS: tuple[str, ...] = ("day", "week", "month", "quarter", "year")
_LAST_N = re.compile(r"^\s*last\s+(\d{1,4})\s+(day|week|month|quarter|year)s?\s*$", re.IGNORECASE)
_THIS_LAST = re.compile(r"^\s*(this|last)\s+(day|week|month|quarter|year)\s*$", re.IGNORECASE)
_ISO_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class DateRange:
    """Whole calendar days ``start`` .. ``end`` (both included) in the alert's timezone.

    :param unit: the calendar unit the range is made of; ``count`` of them (``last 7 days``: day, 7).
        The previous range is the same number of the same units just before.
    """

    start: date
    end: date
    unit: Unit = "day"
    count: int = 1

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def as_cube(self) -> list[str]:
        """``["2026-11-23", "2026-11-29"]``: Cube reads the end date as the whole day."""
        return [self.start.isoformat(), self.end.isoformat()]

    def text(self) -> str:
        """``2026-11-23 to 2026-11-29``, or the single date."""
        if self.start == self.end:
            return self.start.isoformat()
        return f"{self.start.isoformat()} to {self.end.isoformat()}"

    def previous(self) -> DateRange:
        """The range of the same length just before: 7 days before 7 days, the month before a month."""
        if self.unit in ("day", "week"):
            shift = timedelta(days=self.days)
            return DateRange(self.start - shift, self.end - shift, self.unit, self.count)
        months = {"month": 1, "quarter": 3, "year": 12}[self.unit] * self.count
        start = _add_months(self.start, -months)
        end = self.start - timedelta(days=1)
        return DateRange(start, end, self.unit, self.count)

    def length_text(self) -> str:
        """How a person names the length: ``week`` (7 days), ``day``, ``month``, ``3 months``, ``10 days``."""
        if self.unit == "day" and self.count == 7:
            return "week"
        if self.count == 1:
            return self.unit
        return f"{self.count} {self.unit}s"


def resolve_date_range(value: object, timezone: str, now: datetime) -> DateRange | None:
    """The dates a Cube ``dateRange`` covers when run at ``now`` in ``timezone``; None when unknown."""
    today = (now if now.tzinfo else now.replace(tzinfo=ZoneInfo("UTC"))).astimezone(ZoneInfo(timezone)).date()
    if isinstance(value, list | tuple) and len(value) == 2:
        start, end = (_as_date(v) for v in value)
        if start is None or end is None or end < start:
            return None
        return DateRange(start, end, "day", (end - start).days + 1)
    if not isinstance(value, str):
        return None
    phrase = value.strip().lower()
    if phrase == "today":
        return DateRange(today, today, "day", 1)
    if phrase == "yesterday":
        day = today - timedelta(days=1)
        return DateRange(day, day, "day", 1)
    if match := _THIS_LAST.match(phrase):
        which, unit = match.group(1), match.group(2)
        start = _unit_start(today, unit)
        if which == "last":
            start = _shift(start, unit, -1)
        return DateRange(start, _shift(start, unit, 1) - timedelta(days=1), unit, 1)  # type: ignore[arg-type]
    if match := _LAST_N.match(phrase):
        count, unit = int(match.group(1)), match.group(2)
        if count < 1:
            return None
        current = _unit_start(today, unit)
        return DateRange(_shift(current, unit, -count), current - timedelta(days=1), unit, count)  # type: ignore[arg-type]
    return None


def query_date_range(query: Mapping[str, Any]) -> object:
    """The ``dateRange`` of the query's first time dimension that has one, else None."""
    for td in query.get("timeDimensions") or ():
        if isinstance(td, Mapping) and td.get("dateRange") is not None:
            return td["dateRange"]
    return None


def with_date_range(
    query: Mapping[str, Any], date_range: DateRange, *, granularity: bool = True
) -> dict[str, Any]:
    """``query`` over ``date_range`` (explicit dates); without granularity when ``granularity`` is False."""
    out = dict(query)
    tds = []
    done = False
    for td in query.get("timeDimensions") or ():
        td = dict(td)
        if not done and td.get("dateRange") is not None:
            td["dateRange"] = date_range.as_cube()
            done = True
        if not granularity:
            td.pop("granularity", None)
        tds.append(td)
    out["timeDimensions"] = tds
    return out


def _as_date(value: object) -> date | None:
    match = _ISO_DATE.match(str(value))
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def _unit_start(day: date, unit: str) -> date:
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def _shift(start: date, unit: str, n: int) -> date:
    if unit == "day":
        return start + timedelta(days=n)
    if unit == "week":
        return start + timedelta(weeks=n)
    return _add_months(start, n * {"month": 1, "quarter": 3, "year": 12}[unit])


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))
