"""Cron and calendar schedules against the brute-force oracle (``oracle.py``: every minute of two years).

Zones with odd DST: Lord_Howe (30-minute shifts), Chatham (+12:45 / +13:45, shifts at 02:45), St_Johns
(-03:30), Sao_Paulo (DST until 2019, shifting at midnight: 00:00 did not exist on its spring-forward days).
Each case compares, over a two-year window, the first fires of the window, the fires around every offset
change, and ``next_run_after`` at arbitrary instants; a deterministic sweep runs the documented examples
(``docs/schedule_examples.json``) in every odd zone.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_alerts.alerts.spec import ScheduleSpec
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.schedule import Schedule, next_run_after, scheduled_times, validate_schedule
from tests.unit.scheduling import oracle

ODD_ZONES = ("Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns", "America/Sao_Paulo")
#: Two-year windows: Sao Paulo still had DST in the first one.
WINDOWS = (
    datetime(2017, 7, 1, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2031, 3, 1, tzinfo=UTC),
)
WINDOW = timedelta(days=730)
EXAMPLES = json.loads((Path(__file__).parents[3] / "docs" / "schedule_examples.json").read_text())
REGIONS = (("US", "NY"), ("GB", "ENG"), ("NZ", None), ("BR", None), ("CA", "NL"), ("AU", "NSW"))
MICROSECOND = timedelta(microseconds=1)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def oracle_fires(spec_json: str, start: datetime) -> tuple[datetime, ...]:
    return tuple(oracle.fires(json.loads(spec_json), start, start + WINDOW))


def offset_changes(zone: str, start: datetime) -> list[datetime]:
    offsets = oracle._offsets(zone, start, int(WINDOW.total_seconds() // 60))
    return [start + timedelta(minutes=int(i)) for i in np.flatnonzero(np.diff(offsets)) + 1]


def check_against_oracle(spec: dict[str, Any], start: datetime, probes: list[timedelta]) -> None:
    schedule = ScheduleSpec.model_validate(spec).to_schedule()
    expected = oracle_fires(json.dumps(spec, sort_keys=True), start)
    end = start + WINDOW
    try:
        validate_schedule(schedule)
    except AlertValidationError as exc:
        assert "never fires" in str(exc), exc
        assert not expected, f"refused as never firing, yet the oracle fires at {expected[0]}"
        return

    def upcoming(after: datetime, count: int) -> list[datetime]:
        return [t for t in expected if t > after][:count]

    # The window's first fires, one after another.
    first = upcoming(start - MICROSECOND, 150)
    assert scheduled_times(schedule, start - MICROSECOND, len(first)) == first if first else True
    if not first:
        assert next_run_after(schedule, start - MICROSECOND) >= end
    # Every change of the zone's offset, from four hours before it.
    for change in offset_changes(schedule.timezone, start):
        after = change - timedelta(hours=4)
        want = upcoming(after, 12)
        assert scheduled_times(schedule, after, len(want)) == want, f"around {change}"
    # Arbitrary instants, fire times themselves and just before them.
    for probe in [*probes, *(t - start for t in expected[:: max(1, len(expected) // 7)])]:
        after = start + probe
        for moment in (after, after - MICROSECOND):
            want = upcoming(moment, 1)
            got = next_run_after(schedule, moment)
            assert got == want[0] if want else got >= end, f"after {moment}"


# --- strategies -----------------------------------------------------------------------------------

hours = st.sampled_from(["0", "1", "2", "3", "23", "*", "0-3", "1,2,3", "*/6", "9-17/4", "12"])
minutes = st.sampled_from(["0", "15", "30", "45", "*/15", "0,30", "5/20", "59"]) | st.integers(0, 59).map(str)
month_days = st.sampled_from(["*", "*", "L", "1", "15,L", "1-7", "*/2", "29,30,31", "31", "13", "8-14"])
months = st.sampled_from(["*", "*", "1,4,7,10", "2", "feb-apr", "*/3", "10-12", "3", "9-11"])
weekdays = st.sampled_from(
    ["*", "*", "1-5", "mon-fri", "0", "7", "1#1", "5L", "fri#3", "6,0", "*/2", "sun#5", "2#2,4L", "sat"]
)
zones = st.sampled_from(ODD_ZONES)
windows = st.sampled_from(WINDOWS)
probes = st.lists(
    st.integers(0, int(WINDOW.total_seconds()) - 1).map(lambda s: timedelta(seconds=s)), max_size=6
)
regions = st.sampled_from(REGIONS)


@st.composite
def cron_specs(draw: st.DrawFn) -> dict[str, Any]:
    fields = [draw(minutes), draw(hours), draw(month_days), draw(months), draw(weekdays)]
    return {"frequency_interval": "cron", "cron_expression": " ".join(fields), "timezone": draw(zones)}


def with_holidays(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    country, subdivision = draw(regions)
    spec = {**spec, "holiday_country": country}
    if subdivision:
        spec["holiday_subdivision"] = subdivision
    if spec.get("business_day") is None:
        spec["on_holiday"] = draw(st.sampled_from(["skip", "next_business_day"]))
    return spec


@st.composite
def calendar_specs(draw: st.DrawFn, start: datetime) -> dict[str, Any]:
    kind = draw(st.sampled_from(["every_n_weeks", "business_day", "day", "month", "cron"]))
    clock = {
        "schedule_hour": draw(st.sampled_from([0, 1, 2, 3, 23]) | st.integers(0, 23)),
        "schedule_minute": draw(st.sampled_from([0, 15, 30, 45]) | st.integers(0, 59)),
    }
    zone = draw(zones)
    if kind == "every_n_weeks":
        first = start.date() + timedelta(days=draw(st.integers(-30, 200)))
        spec: dict[str, Any] = {
            "frequency_interval": "week",
            "every_n_weeks": draw(st.integers(1, 5)),
            "start_date": first.isoformat(),
            "selected_days": sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=3))),
            **clock,
        }
    elif kind == "business_day":
        n = draw(st.integers(1, 5) | st.integers(-5, -1))
        spec = {"frequency_interval": "month", "business_day": n, **clock}
    elif kind == "day":
        spec = {
            "frequency_interval": "day",
            "selected_days": sorted(draw(st.sets(st.integers(0, 6), max_size=5))),
            **clock,
        }
    elif kind == "month":
        spec = {
            "frequency_interval": "month",
            "selected_days": sorted(draw(st.sets(st.integers(1, 31), min_size=1, max_size=3))),
            **clock,
        }
    else:
        spec = draw(cron_specs())
    spec["timezone"] = zone
    return with_holidays(draw, spec) if draw(st.booleans()) else spec


# --- properties -----------------------------------------------------------------------------------


@PROPERTY
@given(cron_specs(), windows, probes)
def test_cron_matches_the_minute_by_minute_oracle(
    spec: dict[str, Any], start: datetime, offsets: list[timedelta]
) -> None:
    check_against_oracle(spec, start, offsets)


@PROPERTY
@given(windows.flatmap(lambda w: st.tuples(st.just(w), calendar_specs(w))), probes)
def test_calendars_match_the_minute_by_minute_oracle(
    case: tuple[datetime, dict[str, Any]], offsets: list[timedelta]
) -> None:
    start, spec = case
    check_against_oracle(spec, start, offsets)


@pytest.mark.parametrize("zone", ODD_ZONES)
@pytest.mark.parametrize("example", EXAMPLES, ids=[e["said"][:40] for e in EXAMPLES])
def test_documented_examples_in_odd_zones(example: dict[str, Any], zone: str) -> None:
    spec = {**example["schedule"], "timezone": zone}
    if spec.get("start_date"):
        spec["start_date"] = "2017-07-03"  # within the first window
    for start in WINDOWS[:2]:
        check_against_oracle(spec, start, [timedelta(days=d, minutes=7) for d in range(0, 730, 61)])


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        pytest.param(  # Sao Paulo, 2018-11-04: 00:00 did not exist; midnight fires at 01:00 -02
            {"frequency_interval": "cron", "cron_expression": "0 0 * * *", "timezone": "America/Sao_Paulo"},
            datetime(2018, 11, 3, 12, tzinfo=UTC),
            datetime(2018, 11, 4, 3, tzinfo=UTC),
            id="sao-paulo-midnight-gap",
        ),
        pytest.param(  # Sao Paulo, 2019-02-16 23:30 happened twice (-02, then -03): once, the first
            {"frequency_interval": "cron", "cron_expression": "30 23 * * *", "timezone": "America/Sao_Paulo"},
            datetime(2019, 2, 16, 12, tzinfo=UTC),
            datetime(2019, 2, 17, 1, 30, tzinfo=UTC),
            id="sao-paulo-repeat",
        ),
        pytest.param(  # Chatham, 2026-09-27 02:45 -> 03:45 (+12:45 -> +13:45): 03:00 is shifted to 04:00
            {"frequency_interval": "cron", "cron_expression": "0 3 * * *", "timezone": "Pacific/Chatham"},
            datetime(2026, 9, 26, 0, tzinfo=UTC),
            datetime(2026, 9, 26, 14, 15, tzinfo=UTC),
            id="chatham-gap",
        ),
        pytest.param(  # Lord Howe, 2026-10-04 02:00 -> 02:30: 02:15 fires at 02:45 +11
            {
                "frequency_interval": "cron",
                "cron_expression": "15 2 * * *",
                "timezone": "Australia/Lord_Howe",
            },
            datetime(2026, 10, 3, 0, tzinfo=UTC),
            datetime(2026, 10, 3, 15, 45, tzinfo=UTC),
            id="lord-howe-gap",
        ),
    ],
)
def test_odd_zone_examples(spec: dict[str, Any], after: datetime, expected: datetime) -> None:
    schedule = ScheduleSpec.model_validate(spec).to_schedule()
    assert next_run_after(schedule, after) == expected
    assert oracle.fires(spec, after, after + timedelta(days=2))[0] == expected


def test_a_schedule_is_hashable_and_cached() -> None:
    schedule = Schedule("week", 9, 0, (1,), "UTC", every_n_weeks=2, start_date=date(2027, 1, 4))
    assert next_run_after(schedule, datetime(2027, 1, 5, tzinfo=UTC)) == datetime(2027, 1, 18, 9, tzinfo=UTC)
