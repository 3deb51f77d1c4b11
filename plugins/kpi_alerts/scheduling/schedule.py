"""Report schedules: when does a ``kpi_schedules`` row fire next?

A schedule is a frequency (``hour``, ``day``, ``week``, ``month``) with a local wall-clock time, or a
cron expression (``cron``, :mod:`kpi_alerts.scheduling.cron`); optional calendar rules (every N weeks
from a start date, the n-th business day of a month, public holidays skipped or moved:
:mod:`kpi_alerts.scheduling.dates`); and an IANA timezone. :func:`next_run_after` walks candidate
*local dates* (never minutes), so one call costs a handful of zone conversions whatever the schedule;
results are UTC-aware datetimes.

DST rule -- the product promise is "a report arrives when asked, never skipped, never doubled":

* A wall time that does not exist (spring-forward gap) fires once, at the wall time shifted
  forward by the gap (``fold=0`` then normalise): 02:30 on 2026-03-08 in America/Los_Angeles
  fires at 03:30 PDT; 02:15 on 2026-10-04 in Australia/Lord_Howe (30-minute shift) at 02:45.
* A wall time that occurs twice (fall-back) fires once, at its first occurrence (``fold=0``).
* Hourly schedules fire at every wall time ``HH:mm`` by the same rule, and additionally at the
  second occurrence of a repeated wall time: the repeated fall-back hour is two different real
  hours, so it fires twice. In zones whose shifts are whole hours, hourly fires are therefore
  always exactly 60 minutes apart (a skipped 02:mm lands on 03:mm and fires once); with
  Lord_Howe's 30-minute shift one interval on a transition day is 30 or 90 minutes. Cron
  schedules do not fire twice: each wall time they name fires once, at its first occurrence.
* A schedule is a *set* of instants: month days collapsing onto a short month's last day
  (30 and 31 in February) fire once, as does a gap time landing on another fire.

Weekdays follow cron: 0 = Sunday ... 6 = Saturday.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.business_days import check_holiday_region
from kpi_alerts.scheduling.cron import parse_cron
from kpi_alerts.scheduling.dates import next_fire_date
from kpi_alerts.scheduling.definition import Schedule as Schedule
from kpi_alerts.scheduling.timezones import zone
from kpi_alerts.scheduling.wording import describe_schedule

FREQUENCIES = ("hour", "day", "week", "month", "cron")
#: The optional ``kpi_schedules`` columns beyond the seed's (migration 0012): None when unused.
CALENDAR_FIELDS = (
    "cron_expression",
    "every_n_weeks",
    "start_date",
    "business_day",
    "holiday_country",
    "holiday_subdivision",
    "on_holiday",
)
HOLIDAY_RULES = ("skip", "next_business_day")
#: The alerts DAG ticks every 5 minutes and a tick runs one slot of an alert: closer slots would pile up.
MIN_GAP_MINUTES = 5
#: Every N weeks: N from 1 to a year's worth.
MAX_EVERY_N_WEEKS = 52
#: The n-th business day of a month, counted from its start (1..) or its end (-1..).
MAX_BUSINESS_DAY = 10
_FREQUENCY_ADJECTIVE = {"hour": "an hourly", "day": "a daily", "week": "a weekly", "month": "a monthly"}
# Larger than any change of UTC offset still in use (Antarctica/Troll: 2 h): a wall time more than
# this before another one is also an earlier instant, whatever DST does in between.
_MARGIN = timedelta(hours=3)
_ONE_DAY = timedelta(days=1)
#: Where "does this schedule ever fire?" is first asked when it has no start date.
_EPOCH = date(2000, 1, 1)


@functools.lru_cache(maxsize=4096)
def _validate(s: Schedule) -> None:
    freq = s.frequency_interval
    if freq not in FREQUENCIES:
        raise AlertValidationError(
            f"Unknown frequency_interval {freq!r} (expected hour, day, week, month or cron)"
        )
    _check_int("schedule_hour", s.schedule_hour, 0, 23)
    _check_int("schedule_minute", s.schedule_minute, 0, 59)
    if not isinstance(s.timezone, str) or not s.timezone:
        raise AlertValidationError(f"timezone must be an IANA name, got {s.timezone!r}")
    zone(s.timezone)
    if not isinstance(s.selected_days, tuple):
        raise AlertValidationError(f"selected_days must be a list of integers, got {s.selected_days!r}")
    if freq == "cron":
        _validate_cron(s)
    else:
        if s.cron_expression is not None:
            raise AlertValidationError("cron_expression is only for frequency_interval 'cron'")
        _validate_days(s)
    _validate_calendar(s)
    if next_fire_date(s, s.start_date or _EPOCH) is None:
        raise AlertValidationError(f"this schedule never fires: {describe_schedule(s)}")


def _validate_cron(s: Schedule) -> None:
    if s.schedule_hour or s.schedule_minute or s.selected_days:
        raise AlertValidationError(
            "a cron schedule takes its times and days from cron_expression: "
            "leave out schedule_hour, schedule_minute and selected_days"
        )
    if s.cron_expression is None:
        raise AlertValidationError("frequency_interval 'cron' needs a cron_expression, e.g. '0 9 * * 1-5'")
    minutes = [h * 60 + m for h, m in parse_cron(s.cron_expression).times_of_day]
    gaps = [b - a for a, b in zip(minutes, [*minutes[1:], minutes[0] + 24 * 60], strict=True)]
    if min(gaps) < MIN_GAP_MINUTES:
        raise AlertValidationError(
            f"cron_expression {s.cron_expression[:60]!r} fires {min(gaps)} minute(s) apart; alerts run at most "
            f"every {MIN_GAP_MINUTES} minutes (e.g. '*/{MIN_GAP_MINUTES} * * * *')"
        )


def _validate_days(s: Schedule) -> None:
    freq, days = s.frequency_interval, s.selected_days
    if freq == "month" and s.business_day is not None:
        if days:
            raise AlertValidationError(
                "a business-day schedule fires on the n-th business day: leave out selected_days"
            )
        return
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


def _validate_calendar(s: Schedule) -> None:
    """Every N weeks, business days, start date and holidays: each only where it means something."""
    if s.start_date is not None and not isinstance(s.start_date, date):
        raise AlertValidationError(f"start_date must be a date (YYYY-MM-DD), got {s.start_date!r}"[:200])
    if s.every_n_weeks is not None:
        if s.frequency_interval != "week":
            raise AlertValidationError("every_n_weeks is only for frequency_interval 'week'")
        _check_int("every_n_weeks", s.every_n_weeks, 1, MAX_EVERY_N_WEEKS)
        if s.every_n_weeks > 1 and s.start_date is None:
            raise AlertValidationError(
                f"every {s.every_n_weeks} weeks needs a start_date: the weeks are counted from its week"
            )
    if s.business_day is not None:
        if s.frequency_interval != "month":
            raise AlertValidationError("business_day is only for frequency_interval 'month'")
        _check_int("business_day", s.business_day, -MAX_BUSINESS_DAY, MAX_BUSINESS_DAY)
        if s.business_day == 0:
            raise AlertValidationError(
                "business_day 0 means nothing: 1 is the month's first business day, -1 its last"
            )
    if s.holiday_country is None:
        if s.holiday_subdivision is not None or s.on_holiday is not None:
            raise AlertValidationError("holiday_subdivision and on_holiday need a holiday_country")
        return
    check_holiday_region(s.holiday_country, s.holiday_subdivision)
    if s.on_holiday is not None:
        if s.business_day is not None:
            raise AlertValidationError(
                "on_holiday does not apply to a business-day schedule (business days are never holidays)"
            )
        if s.on_holiday not in HOLIDAY_RULES:
            raise AlertValidationError(
                f"on_holiday must be 'skip' or 'next_business_day', got {s.on_holiday!r}"[:200]
            )


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AlertValidationError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def validate_schedule(schedule: Schedule | Mapping[str, Any]) -> Schedule:
    """Return a validated :class:`Schedule` from a Schedule or a DB row mapping; raise
    :class:`AlertValidationError` naming the first problem found."""
    result = schedule if isinstance(schedule, Schedule) else Schedule.from_row(schedule)
    try:
        _validate(result)
    except TypeError:  # an unhashable field (a list from a row): the uncached check names it
        _validate.__wrapped__(result)
        raise
    return result


def _require_aware(dt: datetime, name: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {dt.isoformat()}")


def next_run_after(schedule: Schedule | Mapping[str, Any], after: datetime) -> datetime:
    """First scheduled instant strictly after ``after``, UTC-aware (see the module's DST rule).

    :param schedule: a :class:`Schedule` or a ``kpi_schedules`` row mapping; validated here.
    :param after: aware datetime in any zone; naive raises ValueError.
    :raises AlertValidationError: for an invalid schedule, or one that never fires again.
    """
    checked = schedule if isinstance(schedule, Schedule) else Schedule.from_row(schedule)
    try:
        return _next_run(checked, after)
    except TypeError:  # an unhashable field: not a valid schedule, and validate_schedule() says why
        validate_schedule(checked)
        raise


@functools.lru_cache(maxsize=4096)  # a peak tick finishes thousands of alerts sharing a few schedules
def _next_run(schedule: Schedule, after: datetime) -> datetime:
    validate_schedule(schedule)
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
    if best is not None:
        return best
    raise AlertValidationError(
        f"this schedule never fires after {after:%Y-%m-%d}: {describe_schedule(schedule)}"
    )


def _instants(wall: datetime, tz: ZoneInfo, hourly: bool) -> tuple[datetime, ...]:
    """The UTC instants at which a local wall time fires, per the DST rule."""
    first = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: gap -> shifted forward by the gap
    if hourly:
        second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if second > first:  # repeated wall time: two real hours
            return first, second
    return (first,)


def _walls(schedule: Schedule, start: datetime) -> Iterator[datetime]:
    """Candidate local wall times at or after ``start``, in increasing order, until the calendar ends."""
    times = schedule.times_of_day
    day: date | None = start.date()
    skip = bisect.bisect_left(times, start.time())  # only the first day has times before `start`
    while (day := next_fire_date(schedule, day)) is not None:  # type: ignore[arg-type]
        for at in times[skip if day == start.date() else 0 :]:
            yield datetime.combine(day, at)
        day += _ONE_DAY


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
    return describe_schedule(validate_schedule(schedule))


def floor_to_hour_utc(dt: datetime) -> datetime:
    """The UTC top of the hour at or before ``dt``: a threshold alert's evaluation slot."""
    _require_aware(dt, "dt")
    return dt.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def next_hour_slot_after(dt: datetime) -> datetime:
    """The UTC top of the hour strictly after ``dt``."""
    return floor_to_hour_utc(dt) + timedelta(hours=1)
