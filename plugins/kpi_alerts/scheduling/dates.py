"""Which local dates a schedule fires on: the calendar half of a schedule (the clock half is in ``schedule``).

Each kind of schedule finds its next date without walking minutes: weekdays and month days in O(1),
every N weeks by week arithmetic from the start date's week (weeks run Monday to Sunday), the n-th
business day per month, a cron expression by skipping the months it excludes. Public holidays then
apply (:func:`next_fire_date`):

* ``on_holiday = 'skip'`` (the default once a country is given): a date that is a holiday does not fire;
* ``on_holiday = 'next_business_day'``: it fires on the next business day instead (at the same wall
  times); a date that fires anyway fires once.

A search looks at most :data:`HORIZON` ahead (eight years and a month: long enough for the 29th of
February in any century) and answers None when nothing fires in it.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import TYPE_CHECKING

from kpi_alerts.scheduling.business_days import MAX_HOLIDAY_RUN, BusinessCalendar
from kpi_alerts.scheduling.cron import parse_cron

if TYPE_CHECKING:
    from kpi_alerts.scheduling.definition import Schedule

HORIZON = timedelta(days=8 * 366 + 31)
_ONE_DAY = timedelta(days=1)
_ONE_WEEK = timedelta(days=7)


def business_calendar(schedule: Schedule) -> BusinessCalendar:
    return BusinessCalendar(schedule.holiday_country, schedule.holiday_subdivision)


def next_fire_date(schedule: Schedule, day: date) -> date | None:
    """The first local date on or after ``day`` on which ``schedule`` fires, or None within the horizon."""
    start = max(day, schedule.start_date) if schedule.start_date is not None else day
    end = start + HORIZON
    calendar_ = business_calendar(schedule)
    if schedule.holiday_country is None or schedule.business_day is not None:
        return _next_base_date(schedule, start, end, calendar_)  # business days already avoid holidays
    if schedule.on_holiday == "next_business_day":
        return _next_moved_date(schedule, start, end, calendar_)
    candidate: date | None = start
    while candidate is not None:
        candidate = _next_base_date(schedule, candidate, end, calendar_)
        if candidate is None or calendar_.holiday(candidate) is None:
            return candidate
        candidate += _ONE_DAY
    return None


def _next_moved_date(schedule: Schedule, start: date, end: date, calendar_: BusinessCalendar) -> date | None:
    # A holiday's fire moves forward, so one from shortly before `start` may land on or after it.
    lowest = start - MAX_HOLIDAY_RUN
    if schedule.start_date is not None:
        lowest = max(lowest, schedule.start_date)
    best: date | None = None
    candidate: date | None = lowest
    while candidate is not None and (best is None or candidate < best):
        candidate = _next_base_date(schedule, candidate, end, calendar_)
        if candidate is None:
            break
        effective = (
            candidate if calendar_.holiday(candidate) is None else calendar_.next_business_day(candidate)
        )
        if effective >= start and (best is None or effective < best):
            best = effective
        candidate += _ONE_DAY
    return best


def _next_base_date(schedule: Schedule, day: date, end: date, calendar_: BusinessCalendar) -> date | None:
    """The first date in ``[day, end]`` of the schedule's own calendar (before any holiday rule)."""
    kind = schedule.frequency_interval
    if kind == "cron":
        found = _next_cron_date(schedule, day, end)
    elif kind == "month" and schedule.business_day is not None:
        found = _next_business_day_of_month(schedule.business_day, day, end, calendar_)
    elif kind == "month":
        found = _next_month_day(schedule.selected_days, day)
    elif kind == "week" and (schedule.every_n_weeks or 1) > 1:
        found = _next_week_date(schedule, day, end)
    else:
        found = _next_weekday(schedule.selected_days, day)
    return found if found is not None and found <= end else None


def _next_weekday(weekdays: tuple[int, ...], day: date) -> date:
    if not weekdays:  # hour / day without a weekday limit
        return day
    today = day.isoweekday() % 7  # cron numbering: Sunday = 0
    return day + timedelta(days=min((d - today) % 7 for d in weekdays))


def _next_month_day(days: tuple[int, ...], day: date) -> date:
    """Month days; a day past the month's end fires on its last day (once)."""
    last = calendar.monthrange(day.year, day.month)[1]
    later = [min(d, last) for d in days if min(d, last) >= day.day]
    if later:
        return day.replace(day=min(later))
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, min(min(days), calendar.monthrange(year, month)[1]))


def _next_week_date(schedule: Schedule, day: date, end: date) -> date | None:
    """Every N weeks: weekdays of the weeks 0, N, 2N, ... counted from the start date's week."""
    assert schedule.start_date is not None and schedule.every_n_weeks is not None  # validate() says so
    n = schedule.every_n_weeks
    first_monday = schedule.start_date - timedelta(days=schedule.start_date.weekday())
    while day <= end:
        weeks = (day - first_monday).days // 7
        if weeks % n:  # not an active week: the Monday of the next one
            day = first_monday + _ONE_WEEK * (weeks + n - weeks % n)
            continue
        found = _next_weekday(schedule.selected_days, day)
        if (found - first_monday).days // 7 == weeks:
            return found
        day = first_monday + _ONE_WEEK * (weeks + 1)
    return None


def _next_business_day_of_month(n: int, day: date, end: date, calendar_: BusinessCalendar) -> date | None:
    year, month = day.year, day.month
    while date(year, month, 1) <= end:
        found = calendar_.nth_business_day(year, month, n)
        if found is not None and found >= day:
            return found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _next_cron_date(schedule: Schedule, day: date, end: date) -> date | None:
    assert schedule.cron_expression is not None  # validate() says so
    cron = parse_cron(schedule.cron_expression)
    while day <= end:
        if day.month not in cron.months:  # skip the whole month
            day = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
        elif cron.matches_date(day):
            return day
        else:
            day += _ONE_DAY
    return None
