"""An independent oracle for schedules: every minute of a range, brute force (tests only).

Nothing here uses ``kpi_alerts.scheduling``: the cron fields are expanded by a matcher of its own, business
days and holiday moves are found by scanning whole months, and the DST rule is applied to a minute-by-minute
sweep of UTC instants (numpy over every minute of the range):

* a local wall time seen at several instants (a fall-back repeat) fires at the first one only;
* a local wall time never seen (a spring-forward gap) fires at ``wall - offset before the gap``, i.e.
  shifted forward by the gap.

Holiday *data* comes from the ``holidays`` library (it is a table, not logic); the rules applied to it are
written here again.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DatePredicate = Callable[[date], bool]


# --- cron, matched one date at a time ------------------------------------------------------------


def _value(token: str, names: list[str], base: int) -> int:
    token = token.lower()
    return names.index(token) + base if token in names else int(token)


def _expand(field: str, low: int, high: int, names: list[str] = [], base: int = 0) -> set[int]:  # noqa: B006
    out: set[int] = set()
    for part in field.split(","):
        rng, _, step = part.partition("/")
        step = step or "1"
        if rng == "*":
            a, b = low, high
        elif "-" in rng:
            a, b = (_value(x, names, base) for x in rng.split("-"))
        else:
            a = _value(rng, names, base)
            b = high if "/" in part else a
        out.update(v for v in range(a, b + 1) if (v - a) % int(step) == 0)
    return out


def cron_date_predicate(expression: str) -> DatePredicate:
    _, _, dom, month, dow = expression.split()
    months = _expand(month, 1, 12, MONTH_NAMES, 1)
    dom_items = dom.split(",")
    dom_last = any(i.upper() == "L" for i in dom_items)
    dom_plain = ",".join(i for i in dom_items if i.upper() != "L")
    days = _expand(dom_plain, 1, 31) if dom_plain else set()
    plain_dow: set[int] = set()
    nth: set[tuple[int, int]] = set()
    last_dow: set[int] = set()
    for item in dow.split(","):
        if "#" in item:
            d, k = item.split("#")
            nth.add((_value(d, DAY_NAMES, 0) % 7, int(k)))
        elif re.fullmatch(r"\w+[lL]", item):
            last_dow.add(_value(item[:-1], DAY_NAMES, 0) % 7)
        else:
            plain_dow |= {v % 7 for v in _expand(item, 0, 7, DAY_NAMES, 0)}
    either = not dom.startswith("*") and not dow.startswith("*")

    def matches(d: date) -> bool:
        if d.month not in months:
            return False
        month_len = calendar.monthrange(d.year, d.month)[1]
        sunday0 = (d.weekday() + 1) % 7
        by_dom = d.day in days or (dom_last and d.day == month_len)
        occurrence = sum(1 for x in range(1, d.day + 1) if date(d.year, d.month, x).weekday() == d.weekday())
        remaining = sum(
            1 for x in range(d.day + 1, month_len + 1) if date(d.year, d.month, x).weekday() == d.weekday()
        )
        by_dow = (
            sunday0 in plain_dow or (sunday0, occurrence) in nth or (sunday0 in last_dow and remaining == 0)
        )
        return (by_dom or by_dow) if either else (by_dom and by_dow)

    return matches


def cron_times(expression: str) -> set[int]:
    minute, hour, *_ = expression.split()
    return {h * 60 + m for h in _expand(hour, 0, 23) for m in _expand(minute, 0, 59)}


# --- calendars ------------------------------------------------------------------------------------


@cache
def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


def is_holiday(d: date, country: str | None, subdivision: str | None) -> bool:
    return country is not None and d in _holiday_dates(country, subdivision, d.year)


def is_business_day(d: date, country: str | None, subdivision: str | None) -> bool:
    return d.weekday() < 5 and not is_holiday(d, country, subdivision)


def date_predicate(spec: Mapping[str, Any]) -> DatePredicate:
    """Which local dates a schedule spec (the API's JSON shape) fires on, holidays applied."""
    kind = spec["frequency_interval"]
    country, subdivision = spec.get("holiday_country"), spec.get("holiday_subdivision")
    days = set(spec.get("selected_days") or ())
    start = date.fromisoformat(spec["start_date"]) if spec.get("start_date") else None
    cron = cron_date_predicate(spec["cron_expression"]) if kind == "cron" else None

    def base(d: date) -> bool:
        if start is not None and d < start:
            return False
        if cron is not None:
            return cron(d)
        if kind == "month" and spec.get("business_day") is not None:
            n = spec["business_day"]
            month = [
                date(d.year, d.month, x)
                for x in range(1, calendar.monthrange(d.year, d.month)[1] + 1)
                if is_business_day(date(d.year, d.month, x), country, subdivision)
            ]
            return abs(n) <= len(month) and month[n - 1 if n > 0 else n] == d
        if kind == "month":
            month_len = calendar.monthrange(d.year, d.month)[1]
            return any(min(x, month_len) == d.day for x in days)
        if days and (d.weekday() + 1) % 7 not in days:
            return False
        if kind == "week" and (spec.get("every_n_weeks") or 1) > 1:
            assert start is not None
            monday = start - timedelta(days=start.weekday())
            return ((d - monday).days // 7) % spec["every_n_weeks"] == 0
        return True

    if country is None or spec.get("business_day") is not None:
        return base
    if spec.get("on_holiday") == "next_business_day":

        def moved(d: date) -> bool:
            if base(d) and not is_holiday(d, country, subdivision):
                return True
            for back in range(1, 40):  # a holiday before d whose next business day is d
                x = d - timedelta(days=back)
                if base(x) and is_holiday(x, country, subdivision):
                    nxt = x + timedelta(days=1)
                    while not is_business_day(nxt, country, subdivision):
                        nxt += timedelta(days=1)
                    if nxt == d:
                        return True
            return False

        return moved
    return lambda d: base(d) and not is_holiday(d, country, subdivision)


def times_of_day(spec: Mapping[str, Any]) -> set[int]:
    if spec["frequency_interval"] == "cron":
        return cron_times(spec["cron_expression"])
    return {spec.get("schedule_hour", 0) * 60 + spec.get("schedule_minute", 0)}


# --- the sweep ------------------------------------------------------------------------------------


def _offsets(zone: str, start: datetime, minutes: int) -> np.ndarray:
    """UTC offset (minutes) at each minute of the range: the zone's offset changes, found by bisection."""
    tz = ZoneInfo(zone)

    def offset(i: int) -> int:
        delta = (start + timedelta(minutes=i)).astimezone(tz).utcoffset()
        assert delta is not None
        return int(delta.total_seconds() // 60)

    result = np.empty(minutes, dtype=np.int64)
    i = 0
    while i < minutes:
        here = offset(i)
        j = min(i + 1440 * 7, minutes - 1)  # no zone changes its offset twice within a week
        if offset(j) == here:
            result[i : j + 1] = here
            i = j + 1
            continue
        lo, hi = i, j  # offset(lo) == here != offset(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if offset(mid) == here else (lo, mid)
        result[i:hi] = here
        i = hi
    return result


def fires(spec: Mapping[str, Any], start: datetime, end: datetime) -> list[datetime]:
    """Every instant in ``[start, end)`` (UTC, whole minutes) at which the schedule fires."""
    minutes = int((end - start).total_seconds() // 60)
    first = int((start - EPOCH).total_seconds() // 60)
    utc = np.arange(first, first + minutes, dtype=np.int64)
    wall = utc + _offsets(spec["timezone"], start, minutes)  # local wall time, in minutes since 1970
    day_of = wall // 1440
    predicate = date_predicate(spec)
    lo_day, hi_day = int(day_of.min()), int(day_of.max())
    date_fires = np.array(
        [predicate(date(1970, 1, 1) + timedelta(days=int(d))) for d in range(lo_day, hi_day + 1)], dtype=bool
    )
    time_fires = np.zeros(1440, dtype=bool)
    time_fires[list(times_of_day(spec))] = True

    def wanted(walls: np.ndarray) -> np.ndarray:
        return date_fires[walls // 1440 - lo_day] & time_fires[walls % 1440]

    latest = np.maximum.accumulate(wall)
    seen_before = np.concatenate(([np.iinfo(np.int64).min], latest[:-1]))
    hits = set(utc[wanted(wall) & (wall > seen_before)].tolist())  # first occurrence only
    # Walls never seen (gaps), inside the range: fire at wall - the offset in force before the gap.
    visited = np.zeros(int(wall[-1] - wall[0]) + 1, dtype=bool)
    visited[wall - wall[0]] = True
    missing = np.flatnonzero(~visited) + wall[0]
    missing = missing[wanted(missing)]
    if missing.size:
        before = np.searchsorted(latest, missing, side="left") - 1  # the last minute before the gap
        hits |= set((missing - (wall[before] - utc[before])).tolist())
    return [EPOCH + timedelta(minutes=m) for m in sorted(h for h in hits if first <= h < first + minutes)]
