"""Report schedules: when does a ``kpi_schedules`` row fire next?

A schedule is a frequency (``hour``, ``day``, ``week``, ``month``), a local wall-clock time and an
IANA timezone. :func:`next_run_after` walks candidate *local dates* (never minutes), so one call
costs a handful of zone conversions whatever the schedule; results are UTC-aware datetimes.

DST rule -- the product promise is "a report arrives when asked, never skipped, never doubled":

* A wall time that does not exist (spring-forward gap) fires once, at the wall time shifted
  forward by the gap (``fold=0`` then normalise): 02:30 on 2026-03-08 in America/Los_Angeles
  fires at 03:30 PDT; 02:15 on 2026-10-04 in Australia/Lord_Howe (30-minute shift) at 02:45.
* A wall time that occurs twice (fall-back) fires once, at its first occurrence (``fold=0``).
* Hourly schedules fire at every wall time ``HH:mm`` by the same rule, and additionally at the
  second occurrence of a repeated wall time: the repeated fall-back hour is two different real
  hours, so it fires twice. In zones whose shifts are whole hours, hourly fires are therefore
  always exactly 60 minutes apart (a skipped 02:mm lands on 03:mm and fires once); with
  Lord_Howe's 30-minute shift one interval on a transition day is 30 or 90 minutes.
* A schedule is a *set* of instants: month days collapsing onto a short month's last day
  (30 and 31 in February) fire once, as does a gap time landing on another fire.

Weekdays follow cron: 0 = Sunday ... 6 = Saturday.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.timezones import zone

FREQUENCIES = ("hour", "day", "week", "month")
WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_FREQUENCY_ADJECTIVE = {"hour": "an hourly", "day": "a daily", "week": "a weekly", "month": "a monthly"}
# Larger than any change of UTC offset still in use (Antarctica/Troll: 2 h): a wall time more than
# this before another one is also an earlier instant, whatever DST does in between.
_MARGIN = timedelta(hours=3)
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Schedule:
    """One ``kpi_schedules`` row; field names are the column names."""

    frequency_interval: str
    schedule_hour: int
    schedule_minute: int
    selected_days: tuple[int, ...]
    timezone: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        """Build from a DB row mapping without validating (call :meth:`validate`).

        :param row: mapping with the ``kpi_schedules`` column names; ``selected_days`` may be
            ``None`` or a list, ``schedule_hour`` may be ``None`` for hourly schedules.
        """
        missing = [k for k in ("frequency_interval", "schedule_minute", "timezone") if k not in row]
        if missing:
            raise AlertValidationError(f"Schedule is missing {', '.join(missing)}")
        days = row.get("selected_days")
        hour = row.get("schedule_hour")
        if hour is None and row["frequency_interval"] == "hour":
            hour = 0  # ignored by hourly schedules
        return cls(
            frequency_interval=row["frequency_interval"],
            schedule_hour=hour,  # type: ignore[arg-type]  # checked by validate()
            schedule_minute=row["schedule_minute"],
            selected_days=() if days is None else tuple(days) if isinstance(days, list | tuple) else days,
            timezone=row["timezone"],
        )

    def validate(self) -> None:
        """Raise :class:`AlertValidationError` naming the first problem found."""
        freq = self.frequency_interval
        if freq not in FREQUENCIES:
            raise AlertValidationError(
                f"Unknown frequency_interval {freq!r} (expected hour, day, week or month)"
            )
        _check_int("schedule_hour", self.schedule_hour, 0, 23)
        _check_int("schedule_minute", self.schedule_minute, 0, 59)
        if not isinstance(self.timezone, str) or not self.timezone:
            raise AlertValidationError(f"timezone must be an IANA name, got {self.timezone!r}")
        zone(self.timezone)
        days = self.selected_days
        if not isinstance(days, tuple):
            raise AlertValidationError(f"selected_days must be a list of integers, got {days!r}")
        if not days and freq in ("week", "month"):
            raise AlertValidationError(
                f"{_FREQUENCY_ADJECTIVE[freq].capitalize()} schedule needs at least one selected day"
            )
        low, high, kind = (1, 31, "day of the month 1-31") if freq == "month" else (0, 6, "weekday 0-6")
        for day in days:
            if isinstance(day, bool) or not isinstance(day, int) or not low <= day <= high:
                raise AlertValidationError(
                    f"selected_days: {day!r} is not a {kind} for {_FREQUENCY_ADJECTIVE[freq]} schedule"
                    + (" (Sunday = 0)" if high == 6 else "")
                )


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AlertValidationError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def validate_schedule(schedule: Schedule | Mapping[str, Any]) -> Schedule:
    """Return a validated :class:`Schedule` from a Schedule or a DB row mapping."""
    result = schedule if isinstance(schedule, Schedule) else Schedule.from_row(schedule)
    result.validate()
    return result


def _require_aware(dt: datetime, name: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {dt.isoformat()}")


def next_run_after(schedule: Schedule | Mapping[str, Any], after: datetime) -> datetime:
    """First scheduled instant strictly after ``after``, UTC-aware (see the module's DST rule).

    :param schedule: a :class:`Schedule` or a ``kpi_schedules`` row mapping; validated here.
    :param after: aware datetime in any zone; naive raises ValueError.
    """
    checked = schedule if isinstance(schedule, Schedule) else Schedule.from_row(schedule)
    try:
        return _next_run(checked, after)
    except TypeError:  # an unhashable field: not a valid schedule, and validate() says why
        checked.validate()
        raise


@functools.lru_cache(maxsize=4096)  # a peak tick finishes thousands of alerts sharing a few schedules
def _next_run(schedule: Schedule, after: datetime) -> datetime:
    schedule.validate()
    _require_aware(after, "after")
    return _next_after(schedule, zone(schedule.timezone), after)


def _next_after(schedule: Schedule, tz: ZoneInfo, after: datetime) -> datetime:
    hourly = schedule.frequency_interval == "hour"
    after = after.astimezone(UTC)  # compare instants in one zone: fold-safe
    # Wall times earlier than this resolve to instants before `after`, so they need no look.
    start = after.astimezone(tz).replace(tzinfo=None) - _MARGIN
    best: datetime | None = None
    horizon = datetime.max
    for wall in _walls(schedule, start):
        if best is not None and wall > horizon:
            return best
        for instant in _instants(wall, tz, hourly):
            if instant > after and (best is None or instant < best):
                if best is None:  # DST shifts are smaller than _MARGIN: later walls, later instants
                    horizon = wall + _MARGIN
                best = instant
    raise AssertionError("unreachable: _walls never ends")


def _instants(wall: datetime, tz: ZoneInfo, hourly: bool) -> tuple[datetime, ...]:
    """The UTC instants at which a local wall time fires, per the DST rule."""
    first = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: gap -> shifted forward by the gap
    if hourly:
        second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if second > first:  # repeated wall time: two real hours
            return first, second
    return (first,)


def _walls(schedule: Schedule, start: datetime) -> Iterator[datetime]:
    """Candidate local wall times at or after ``start``, in increasing order, forever."""
    minute = schedule.schedule_minute
    hours = range(24) if schedule.frequency_interval == "hour" else (schedule.schedule_hour,)
    day = start.date()
    while True:
        day = _next_date(schedule, day)
        for hour in hours:
            wall = datetime.combine(day, time(hour, minute))
            if wall >= start:
                yield wall
        day += _ONE_DAY


def _next_date(schedule: Schedule, day: date) -> date:
    """The first local date on or after ``day`` on which the schedule fires, in O(1)."""
    days = schedule.selected_days
    if schedule.frequency_interval == "month":
        last = calendar.monthrange(day.year, day.month)[1]
        later = [min(d, last) for d in days if min(d, last) >= day.day]
        if later:
            return day.replace(day=min(later))
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        return date(year, month, min(min(days), calendar.monthrange(year, month)[1]))
    if not days:  # hour/day with no weekday limit (week always has days)
        return day
    today = day.isoweekday() % 7
    return day + timedelta(days=min((d - today) % 7 for d in days))


def scheduled_times(schedule: Schedule | Mapping[str, Any], after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fires strictly after ``after`` (UTC-aware), e.g. for a preview."""
    checked = validate_schedule(schedule)
    _require_aware(after, "after")
    tz = zone(checked.timezone)
    times: list[datetime] = []
    for _ in range(count):
        after = _next_after(checked, tz, after)
        times.append(after)
    return times


def describe(schedule: Schedule | Mapping[str, Any]) -> str:
    """Human text, e.g. ``Every Monday and Friday at 09:00 (Europe/London)``."""
    s = validate_schedule(schedule)
    at = f"{s.schedule_hour:02d}:{s.schedule_minute:02d}"
    days = sorted(set(s.selected_days))
    if s.frequency_interval == "month":
        late = " (or the month's last day)" if days[-1] > 28 else ""
        text = f"Every month on the {_join([_ordinal(d) for d in days])}{late} at {at}"
    else:
        every_day = len(days) in (0, 7)
        weekdays = _join([WEEKDAY_NAMES[d] for d in sorted(days, key=lambda d: (d + 6) % 7)])
        if s.frequency_interval == "hour":
            text = f"Every hour at :{s.schedule_minute:02d}" + ("" if every_day else f" on {weekdays}")
        else:
            text = f"Every {'day' if every_day else weekdays} at {at}"
    return f"{text} ({s.timezone})"


def _join(words: list[str]) -> str:
    return ", ".join(words) if len(words) < 2 else f"{', '.join(words[:-1])} and {words[-1]}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def floor_to_hour_utc(dt: datetime) -> datetime:
    """The UTC top of the hour at or before ``dt``: a threshold alert's evaluation slot."""
    _require_aware(dt, "dt")
    return dt.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def next_hour_slot_after(dt: datetime) -> datetime:
    """The UTC top of the hour strictly after ``dt``."""
    return floor_to_hour_utc(dt) + timedelta(hours=1)
