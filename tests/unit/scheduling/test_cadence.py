"""Threshold check cadence and active hours, against a minute-by-minute oracle in odd-DST zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.cadence import CheckCadence, describe_cadence, parse_clock
from tests.unit.scheduling import oracle

ZONES = ("Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns", "America/Sao_Paulo", "Asia/Kolkata")
START = datetime(2018, 1, 1, tzinfo=UTC)  # Sao Paulo still had DST (shifting at midnight)
SPAN = timedelta(days=120)


def oracle_checks(c: CheckCadence, start: datetime, span: timedelta) -> list[datetime]:
    """Every UTC minute of the range on the grid whose local time is inside the window (brute force)."""
    minutes = int(span.total_seconds() // 60)
    first = int((start - oracle.EPOCH).total_seconds() // 60)
    utc = np.arange(first, first + minutes, dtype=np.int64)
    wall = utc + oracle._offsets(c.timezone, start, minutes)
    keep = utc % c.interval == 0
    if c.active_from_minute is not None:
        minute_of_day = wall % 1440
        keep &= (minute_of_day >= c.active_from_minute) & (minute_of_day < c.active_until_minute)
    if c.active_days:
        weekday = (wall // 1440 + 4) % 7  # 1970-01-01 was a Thursday; Sunday = 0
        keep &= np.isin(weekday, list(c.active_days))
    return [oracle.EPOCH + timedelta(minutes=int(m)) for m in utc[keep]]


@st.composite
def cadences(draw: st.DrawFn) -> CheckCadence:
    interval = draw(st.sampled_from([5, 10, 15, 30, 60]))
    windowed = draw(st.booleans())
    start = draw(st.sampled_from([0, 30, 60, 90, 120, 165, 480, 1380]) | st.integers(0, 1380))
    length = draw(st.integers(interval, 1440 - start)) if windowed else 0
    days = tuple(sorted(draw(st.sets(st.integers(0, 6), max_size=4))))
    return CheckCadence(
        draw(st.sampled_from(ZONES)),
        None if interval == 60 and draw(st.booleans()) else interval,
        None,
        days,
        start if windowed else None,
        start + length if windowed else None,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cadences(), st.lists(st.integers(0, int(SPAN.total_seconds()) - 20 * 86400), max_size=5))
def test_checks_match_the_minute_by_minute_oracle(c: CheckCadence, probes: list[int]) -> None:
    try:
        c.validate()
    except AlertValidationError as exc:
        assert "never runs" in str(exc)
        assert not oracle_checks(c, START, SPAN)
        return
    expected = oracle_checks(c, START, SPAN)
    # The first checks of the range, one after another, and from arbitrary instants.
    got, at = [], START - timedelta(microseconds=1)
    for _ in range(min(60, len(expected))):
        at = c.next_check_after(at)
        got.append(at)
    assert got == expected[: len(got)]
    for seconds in probes:
        after = START + timedelta(seconds=seconds)
        want = next(t for t in expected if t > after)
        assert c.next_check_after(after) == want
        assert c.first_check_at_or_after(want) == want


def test_business_hours_every_quarter_hour() -> None:
    weekdays = CheckCadence("Europe/London", 15, None, (1, 2, 3, 4, 5), 8 * 60, 18 * 60)
    friday_evening = datetime(2026, 12, 4, 17, 40, tzinfo=UTC)
    assert weekdays.next_check_after(friday_evening) == datetime(2026, 12, 4, 17, 45, tzinfo=UTC)
    assert weekdays.next_check_after(datetime(2026, 12, 4, 17, 45, tzinfo=UTC)) == datetime(
        2026, 12, 7, 8, 0, tzinfo=UTC
    )
    assert describe_cadence(weekdays) == (
        "Checked every 15 minutes (on the UTC grid), between 08:00 and 18:00, on Monday, Tuesday, Wednesday, "
        "Thursday and Friday (values in Europe/London)"
    )


def test_a_new_alert_is_checked_at_the_current_grid_instant_when_active() -> None:
    hourly = CheckCadence("UTC")
    assert hourly.current_check(datetime(2026, 12, 7, 9, 7, tzinfo=UTC)) == datetime(
        2026, 12, 7, 9, tzinfo=UTC
    )
    night = CheckCadence("UTC", 30, None, (), 8 * 60, 18 * 60)
    assert night.current_check(datetime(2026, 12, 7, 22, 7, tzinfo=UTC)) == datetime(
        2026, 12, 8, 8, tzinfo=UTC
    )


def test_daily_checks_follow_the_schedule_rule() -> None:
    daily = CheckCadence("America/New_York", None, 9 * 60, (1, 2, 3, 4, 5))
    assert daily.next_check_after(datetime(2026, 12, 4, 15, tzinfo=UTC)) == datetime(
        2026, 12, 7, 14, tzinfo=UTC
    )
    assert describe_cadence(daily) == (
        "Checked daily at 09:00, on Monday, Tuesday, Wednesday, Thursday and Friday (America/New_York)"
    )
    assert describe_cadence(CheckCadence("UTC")) == "Checked every hour, at :00 UTC (values in UTC)"


@pytest.mark.parametrize(
    ("cadence", "message"),
    [
        (CheckCadence("UTC", 7), "must be one of 5, 10, 15, 30 or 60, got 7"),
        (CheckCadence("UTC", 15, 9 * 60), "not both"),
        (CheckCadence("UTC", None, 9 * 60, (), 8 * 60, 10 * 60), "a daily check has no active hours"),
        (CheckCadence("UTC", 15, None, (), 18 * 60, 8 * 60), "not after they start"),
        (CheckCadence("UTC", 60, None, (), 8 * 60, 8 * 60 + 30), "shorter than the check interval"),
        (CheckCadence("UTC", 15, None, (7,)), "not a weekday 0-6"),
        (CheckCadence("UTC", 15, None, (), 8 * 60, None), "needs both"),
        (CheckCadence("Mars/Base"), "unknown timezone"),
    ],
)
def test_refusals_are_one_line(cadence: CheckCadence, message: str) -> None:
    with pytest.raises(AlertValidationError, match=message) as exc:
        cadence.validate()
    assert "\n" not in str(exc.value)


def test_clock_parsing() -> None:
    assert parse_clock("08:30", "from") == 510
    assert parse_clock("24:00", "to", allow_end_of_day=True) == 1440
    for bad in ("24:00", "8:30", "08:60", 830, None):
        with pytest.raises(AlertValidationError, match="must be a time HH:MM"):
            parse_clock(bad, "from")


def test_odd_zone_window_on_a_dst_day() -> None:
    # Lord Howe, 2026-10-04: 02:00 -> 02:30 (+10:30 -> +11). A 01:30-03:00 window holds 30 minutes fewer.
    night = CheckCadence("Australia/Lord_Howe", 30, None, (), 90, 180)
    day = datetime(2026, 10, 3, 12, tzinfo=UTC)
    checks = [night.next_check_after(day)]
    while len(checks) < 3:
        checks.append(night.next_check_after(checks[-1]))
    local = [t.astimezone(ZoneInfo("Australia/Lord_Howe")).strftime("%m-%d %H:%M") for t in checks]
    assert local == ["10-04 01:30", "10-04 02:30", "10-05 01:30"]
