"""Property tests for kpi_alerts.scheduling.schedule against independent oracles.

Oracles: croniter computes the calendar (in naive local wall time, so its own DST handling plays no
part) and dateutil resolves wall times with the documented rule (``resolve_imaginary`` for gaps,
first occurrence for repeats). A second check uses croniter with aware datetimes away from DST
transitions, and year-long walks check "each local day that should fire fires exactly once".
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from croniter import croniter
from dateutil import tz as dateutil_tz
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kpi_alerts.scheduling.schedule import Schedule, next_run_after, scheduled_times

ZONES = ("America/Los_Angeles", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC")
WHOLE_HOUR_ZONES = ("America/Los_Angeles", "Europe/London", "Asia/Kolkata", "UTC")
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MARGIN = timedelta(hours=4)


@cache
def transitions(zone: str) -> tuple[datetime, ...]:
    """UTC instants (to the half hour) where the zone's offset changes, 2024-2032."""
    tz = ZoneInfo(zone)
    found = []
    day = datetime(2023, 12, 31, tzinfo=UTC)
    while day.year < 2033:
        if day.astimezone(tz).utcoffset() != (day + timedelta(days=1)).astimezone(tz).utcoffset():
            step = day
            while step.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                step += timedelta(minutes=30)
            found.append(step)
        day += timedelta(days=1)
    return tuple(found)


# --- strategies ---------------------------------------------------------------------------------

hours = st.sampled_from([0, 1, 2, 3, 23]) | st.integers(0, 23)  # biased to DST hours
minutes = st.sampled_from([0, 15, 30, 45, 59]) | st.integers(0, 59)
weekdays = st.lists(st.integers(0, 6), max_size=7, unique=True).map(tuple)
month_days = st.lists(st.sampled_from([28, 29, 30, 31]) | st.integers(1, 31), min_size=1, max_size=4)


@st.composite
def schedules(draw: st.DrawFn, frequencies: tuple[str, ...] = ("hour", "day", "week", "month")) -> Schedule:
    freq = draw(st.sampled_from(frequencies))
    if freq == "month":
        days: tuple[int, ...] = tuple(draw(month_days))
    elif freq == "week":
        days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True).map(tuple))
    else:
        days = draw(weekdays)
    return Schedule(freq, draw(hours), draw(minutes), days, draw(st.sampled_from(ZONES)))


uniform_instants = st.datetimes(datetime(2024, 1, 1), datetime(2032, 12, 31), timezones=st.just(UTC))


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    """Uniform over 2024-2032, or within hours/days of a DST transition, sometimes minute-aligned."""
    near = transitions(zone)
    if len(near) > 0 and draw(st.booleans()):
        moment = draw(st.sampled_from(near)) + timedelta(
            minutes=draw(st.integers(-240, 240) | st.integers(-2880, 2880))
        )
    else:
        moment = draw(uniform_instants)
    if draw(st.booleans()):
        moment = moment.replace(second=0, microsecond=0)
    return moment.astimezone(draw(st.sampled_from([UTC, ZoneInfo(zone)])))


@st.composite
def schedule_and_after(draw: st.DrawFn, frequencies: tuple[str, ...] = ("hour", "day", "week", "month")):
    schedule = draw(schedules(frequencies))
    return schedule, draw(instants(schedule.timezone))


# --- oracle -------------------------------------------------------------------------------------


def cron_expressions(s: Schedule) -> list[str]:
    """Cron lines whose union is the schedule's wall-clock calendar."""
    dow = ",".join(map(str, sorted(set(s.selected_days)))) or "*"
    m, h = s.schedule_minute, s.schedule_hour
    if s.frequency_interval == "hour":
        return [f"{m} * * * {dow}"]
    if s.frequency_interval in ("day", "week"):
        return [f"{m} {h} * * {dow}"]
    exprs = [f"{m} {h} {','.join(map(str, sorted(set(s.selected_days))))} * *"]
    if max(s.selected_days) >= 31:
        exprs.append(f"{m} {h} L 2,4,6,9,11 *")  # 31 in a 28/29/30-day month: its last day
    elif max(s.selected_days) >= 29:
        exprs.append(f"{m} {h} L 2 *")  # 29/30 in February: its last day
    return exprs


def oracle_instants(wall: datetime, tz: ZoneInfo, hourly: bool) -> list[datetime]:
    aware = wall.replace(tzinfo=tz)
    if not dateutil_tz.datetime_exists(aware):
        return [dateutil_tz.resolve_imaginary(aware).astimezone(UTC)]
    found = [dateutil_tz.enfold(aware, fold=0).astimezone(UTC)]
    if hourly and dateutil_tz.datetime_ambiguous(aware):
        found.append(dateutil_tz.enfold(aware, fold=1).astimezone(UTC))
    return found


def oracle_next(s: Schedule, after: datetime) -> datetime:
    tz = ZoneInfo(s.timezone)
    start = after.astimezone(tz).replace(tzinfo=None) - MARGIN
    best: datetime | None = None
    for expr in cron_expressions(s):
        walls: Iterator[datetime] = croniter(expr, start).all_next(datetime)
        horizon = None
        for wall in walls:
            if horizon is not None and wall > horizon:
                break
            for instant in oracle_instants(wall, tz, s.frequency_interval == "hour"):
                if instant > after:
                    horizon = horizon or wall + MARGIN
                    best = instant if best is None else min(best, instant)
    assert best is not None
    return best


# --- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(schedule_and_after())
def test_matches_wall_clock_cron_oracle(case: tuple[Schedule, datetime]) -> None:
    schedule, after = case
    assert next_run_after(schedule, after) == oracle_next(schedule, after)


@PROPERTY
@given(schedule_and_after(("day", "week", "month")))
def test_matches_aware_croniter_away_from_dst(case: tuple[Schedule, datetime]) -> None:
    schedule, after = case
    tz = ZoneInfo(schedule.timezone)
    result = next_run_after(schedule, after)
    # No offset change between the day before `after` and the day after the result.
    assume(
        (after - timedelta(days=1)).astimezone(tz).utcoffset()
        == (result + timedelta(days=1)).astimezone(tz).utcoffset()
    )
    local_after = after.astimezone(tz)
    expected = min(croniter(e, local_after).get_next(datetime) for e in cron_expressions(schedule))
    assert result == expected.astimezone(UTC)


@PROPERTY
@given(schedule_and_after())
def test_basic_invariants(case: tuple[Schedule, datetime]) -> None:
    schedule, after = case
    result = next_run_after(schedule, after)
    assert result > after
    assert result.tzinfo is UTC
    assert result.second == result.microsecond == 0
    assert next_run_after(schedule, result) > result  # monotonic
    assert next_run_after(schedule, result - timedelta(microseconds=1)) == result  # result is a slot
    midway = after.astimezone(UTC) + (result - after) / 2  # UTC: aware arithmetic is wall-clock
    assert next_run_after(schedule, midway) == result  # nothing in between


def local_dates_fired(schedule: Schedule, year: int) -> Counter[date]:
    tz = ZoneInfo(schedule.timezone)
    start = datetime(year, 1, 1, tzinfo=tz)
    end = datetime(year + 1, 1, 1, tzinfo=tz)
    fired: Counter[date] = Counter()
    moment = start - timedelta(microseconds=1)
    while (moment := next_run_after(schedule, moment)) < end:
        local = moment.astimezone(tz)
        fired[local.date()] += 1
        wanted = datetime(
            local.year, local.month, local.day, schedule.schedule_hour, schedule.schedule_minute
        )
        if (local.hour, local.minute) != (wanted.hour, wanted.minute):  # only a DST gap may move it
            aware = wanted.replace(tzinfo=tz)
            assert not dateutil_tz.datetime_exists(aware)
            assert moment == dateutil_tz.resolve_imaginary(aware).astimezone(UTC)
    return fired


def should_fire(schedule: Schedule, day: date) -> bool:
    if schedule.frequency_interval == "month":
        last = calendar.monthrange(day.year, day.month)[1]
        return any(day.day == min(d, last) for d in schedule.selected_days)
    weekday = (day.weekday() + 1) % 7  # Python Monday = 0 -> cron Sunday = 0
    return not schedule.selected_days or weekday in schedule.selected_days


@SLOW_PROPERTY
@given(schedules(("day", "week", "month")), st.integers(2024, 2032))
def test_each_due_local_day_fires_exactly_once_over_a_year(schedule: Schedule, year: int) -> None:
    fired = local_dates_fired(schedule, year)
    days = [date(year, 1, 1) + timedelta(days=n) for n in range(366 if calendar.isleap(year) else 365)]
    assert fired == Counter({day: 1 for day in days if should_fire(schedule, day)})


@settings(max_examples=40, deadline=None)
@given(hours, minutes, st.sampled_from(ZONES), st.integers(2024, 2032))
def test_daily_fires_once_per_local_date_all_year(hour: int, minute: int, zone: str, year: int) -> None:
    fired = local_dates_fired(Schedule("day", hour, minute, (), zone), year)
    assert len(fired) == (366 if calendar.isleap(year) else 365)
    assert set(fired.values()) == {1}


@PROPERTY
@given(minutes, st.sampled_from(WHOLE_HOUR_ZONES).flatmap(lambda z: st.tuples(st.just(z), instants(z))))
def test_hourly_is_exactly_sixty_minutes_apart_in_whole_hour_dst_zones(
    minute: int, zone_after: tuple[str, datetime]
) -> None:
    zone, after = zone_after
    times = scheduled_times(Schedule("hour", 0, minute, (), zone), after, 30)
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(times))
    assert all(t.astimezone(ZoneInfo(zone)).minute == minute for t in times)
