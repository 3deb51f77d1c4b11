"""Examples for kpi_alerts.scheduling.schedule: every frequency, month ends, time zones and DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.schedule import (
    Schedule,
    describe,
    floor_to_hour_utc,
    next_hour_slot_after,
    next_run_after,
    scheduled_times,
    validate_schedule,
)

LA = "America/Los_Angeles"
LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"
KOLKATA = "Asia/Kolkata"


def sched(freq: str, hour: int, minute: int, days: tuple[int, ...] = (), tz: str = "UTC") -> Schedule:
    return Schedule(freq, hour, minute, days, tz)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(tz: str, year: int, month: int, day: int, hour: int, minute: int, fold: int = 0) -> datetime:
    """A local wall time as a UTC instant (== between zones is False for ambiguous times)."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


EXAMPLES = [
    # --- day
    pytest.param(sched("day", 9, 0), utc(2026, 1, 1, 8), utc(2026, 1, 1, 9), id="day-later-today"),
    pytest.param(sched("day", 9, 0), utc(2026, 1, 1, 9), utc(2026, 1, 2, 9), id="day-on-slot-is-strict"),
    pytest.param(
        sched("day", 9, 0), utc(2026, 1, 1, 8, 59, 59), utc(2026, 1, 1, 9), id="day-just-before-slot"
    ),
    pytest.param(sched("day", 9, 0, tz=LA), utc(2026, 1, 15), utc(2026, 1, 15, 17), id="day-la-winter"),
    pytest.param(sched("day", 9, 0, tz=LA), utc(2026, 7, 15), utc(2026, 7, 15, 16), id="day-la-summer"),
    pytest.param(sched("day", 9, 0, tz=LA), utc(2026, 1, 15, 17), utc(2026, 1, 16, 17), id="day-la-on-slot"),
    pytest.param(sched("day", 9, 0, tz=LONDON), utc(2026, 7, 1, 7), utc(2026, 7, 1, 8), id="day-london-bst"),
    pytest.param(sched("day", 9, 0, tz=KOLKATA), utc(2026, 1, 15), utc(2026, 1, 15, 3, 30), id="day-kolkata"),
    pytest.param(
        sched("day", 2, 0, tz=KOLKATA),
        utc(2026, 1, 14, 21),  # 02:30 IST on the 15th: today's 02:00 has passed
        utc(2026, 1, 15, 20, 30),
        id="day-kolkata-local-date-ahead-of-utc",
    ),
    pytest.param(
        sched("day", 9, 0, (1, 5)), utc(2026, 1, 1), utc(2026, 1, 2, 9), id="day-weekdays-thu-to-fri"
    ),
    pytest.param(
        sched("day", 9, 0, (1, 5)), utc(2026, 1, 2, 9), utc(2026, 1, 5, 9), id="day-weekdays-fri-to-mon"
    ),
    # --- week (0 = Sunday)
    pytest.param(
        sched("week", 18, 30, (0,), LA),
        utc(2026, 1, 1),
        utc(2026, 1, 5, 2, 30),  # Sunday 18:30 PST is Monday in UTC
        id="week-sunday-evening-la",
    ),
    pytest.param(
        sched("week", 7, 0, (1, 3, 5), LONDON),
        utc(2026, 1, 7, 7),  # Wednesday, exactly on the slot
        utc(2026, 1, 9, 7),
        id="week-mon-wed-fri-on-slot",
    ),
    pytest.param(
        sched("week", 0, 15, (6,), KOLKATA),
        utc(2026, 1, 9, 18, 44),  # Saturday 00:14 IST
        utc(2026, 1, 9, 18, 45),
        id="week-saturday-kolkata-utc-still-friday",
    ),
    pytest.param(
        sched("week", 9, 0, (4,)), utc(2026, 1, 1, 9, 0, 1), utc(2026, 1, 8, 9), id="week-one-day-a-week"
    ),
    # --- month
    pytest.param(sched("month", 9, 0, (31,)), utc(2026, 1, 31, 9), utc(2026, 2, 28, 9), id="month-31-to-feb"),
    pytest.param(
        sched("month", 9, 0, (31,)), utc(2028, 1, 31, 9), utc(2028, 2, 29, 9), id="month-31-to-leap-feb"
    ),
    pytest.param(
        sched("month", 9, 0, (31,)), utc(2026, 2, 28, 9), utc(2026, 3, 31, 9), id="month-feb-to-mar"
    ),
    pytest.param(
        sched("month", 9, 0, (29, 30, 31)),
        utc(2026, 2, 28, 9),  # 29, 30 and 31 all collapsed onto Feb 28: fired once
        utc(2026, 3, 29, 9),
        id="month-collapsed-days-fire-once",
    ),
    pytest.param(
        sched("month", 23, 0, (31,), LA), utc(2026, 4, 2), utc(2026, 5, 1, 6), id="month-31-to-apr-30-la"
    ),
    pytest.param(
        sched("month", 9, 0, (30,)), utc(2026, 12, 30, 9), utc(2027, 1, 30, 9), id="month-year-wrap"
    ),
    pytest.param(
        sched("month", 0, 30, (1, 15), LONDON),
        utc(2026, 3, 31, 23, 30),  # exactly April 1st 00:30 BST
        utc(2026, 4, 14, 23, 30),
        id="month-london-on-slot",
    ),
    # --- hour
    pytest.param(sched("hour", 0, 15), utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 11, 15), id="hour-on-slot"),
    pytest.param(
        sched("hour", 0, 15), utc(2026, 1, 1, 10, 14, 59), utc(2026, 1, 1, 10, 15), id="hour-before-slot"
    ),
    pytest.param(sched("hour", 17, 5), utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 5), id="hour-ignores-hour"),
    pytest.param(
        sched("hour", 0, 0, tz=KOLKATA),
        utc(2026, 1, 1),
        utc(2026, 1, 1, 0, 30),
        id="hour-kolkata-half-offset",
    ),
    pytest.param(
        sched("hour", 0, 0, (1,)), utc(2026, 1, 4, 12), utc(2026, 1, 5), id="hour-monday-only-from-sunday"
    ),
    pytest.param(
        sched("hour", 0, 0, (1,)), utc(2026, 1, 5, 23), utc(2026, 1, 12), id="hour-monday-only-wraps-week"
    ),
    pytest.param(
        sched("hour", 0, 0, (1,), LA),
        utc(2026, 1, 5, 7, 30),  # Sunday 23:30 PST
        utc(2026, 1, 5, 8),  # Monday 00:00 PST
        id="hour-weekday-is-local",
    ),
]


@pytest.mark.parametrize(("schedule", "after", "expected"), EXAMPLES)
def test_next_run_after_examples(schedule: Schedule, after: datetime, expected: datetime) -> None:
    result = next_run_after(schedule, after)
    assert result == expected
    assert result.tzinfo is UTC


DST_EXAMPLES = [
    # America/Los_Angeles: 2026-03-08 02:00 PST -> 03:00 PDT; 2026-11-01 02:00 PDT -> 01:00 PST.
    pytest.param(
        sched("day", 2, 30, tz=LA),
        utc(2026, 3, 7, 12),
        [local(LA, 2026, 3, 8, 3, 30), local(LA, 2026, 3, 9, 2, 30)],
        id="la-gap-fires-once-shifted",
    ),
    pytest.param(
        sched("day", 2, 30, tz=LA),
        local(LA, 2026, 3, 8, 3, 10),  # past the wall time 02:30, before its shifted instant
        [local(LA, 2026, 3, 8, 3, 30), local(LA, 2026, 3, 9, 2, 30)],
        id="la-gap-after-between-wall-and-instant",
    ),
    pytest.param(
        sched("day", 1, 30, tz=LA),
        utc(2026, 10, 31, 12),
        [local(LA, 2026, 11, 1, 1, 30), local(LA, 2026, 11, 2, 1, 30)],
        id="la-ambiguous-fires-once-first",
    ),
    pytest.param(
        sched("hour", 0, 30, tz=LA),
        utc(2026, 3, 8, 8),
        [local(LA, 2026, 3, 8, 0, 30), local(LA, 2026, 3, 8, 1, 30), local(LA, 2026, 3, 8, 3, 30)],
        id="la-hourly-spring-each-real-hour-once",
    ),
    pytest.param(
        sched("hour", 0, 30, tz=LA),
        utc(2026, 11, 1, 7),
        [
            local(LA, 2026, 11, 1, 0, 30),
            local(LA, 2026, 11, 1, 1, 30),
            local(LA, 2026, 11, 1, 1, 30, fold=1),
            local(LA, 2026, 11, 1, 2, 30),
        ],
        id="la-hourly-fall-repeated-hour-twice",
    ),
    # Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.
    pytest.param(
        sched("week", 1, 15, (0,), LONDON),
        utc(2026, 3, 28),
        [local(LONDON, 2026, 3, 29, 2, 15), local(LONDON, 2026, 4, 5, 1, 15)],
        id="london-gap-sunday",
    ),
    pytest.param(
        sched("day", 1, 30, tz=LONDON),
        utc(2026, 10, 24, 12),
        [local(LONDON, 2026, 10, 25, 1, 30), local(LONDON, 2026, 10, 26, 1, 30)],
        id="london-ambiguous",
    ),
    pytest.param(
        sched("month", 1, 0, (29,), LONDON),
        utc(2026, 3, 1),
        [local(LONDON, 2026, 3, 29, 2, 0), local(LONDON, 2026, 4, 29, 1, 0)],
        id="london-gap-monthly",
    ),
    # Australia/Lord_Howe, 30-minute DST: 2026-04-05 02:00 (+11) -> 01:30 (+10:30);
    # 2026-10-04 02:00 (+10:30) -> 02:30 (+11).
    pytest.param(
        sched("day", 2, 15, tz=LORD_HOWE),
        utc(2026, 10, 3),
        [local(LORD_HOWE, 2026, 10, 4, 2, 45), local(LORD_HOWE, 2026, 10, 5, 2, 15)],
        id="lord-howe-gap-shifted-30-min",
    ),
    pytest.param(
        sched("day", 1, 45, tz=LORD_HOWE),
        utc(2026, 4, 4),
        [local(LORD_HOWE, 2026, 4, 5, 1, 45), local(LORD_HOWE, 2026, 4, 6, 1, 45)],
        id="lord-howe-ambiguous-first",
    ),
    pytest.param(
        sched("hour", 0, 15, tz=LORD_HOWE),
        utc(2026, 10, 3, 14),  # 00:30 +10:30
        [
            local(LORD_HOWE, 2026, 10, 4, 1, 15),
            local(LORD_HOWE, 2026, 10, 4, 2, 45),
            local(LORD_HOWE, 2026, 10, 4, 3, 15),
        ],
        id="lord-howe-hourly-spring",
    ),
    pytest.param(
        sched("hour", 0, 45, tz=LORD_HOWE),
        utc(2026, 4, 4, 14),
        [
            local(LORD_HOWE, 2026, 4, 5, 1, 45),
            local(LORD_HOWE, 2026, 4, 5, 1, 45, fold=1),
            local(LORD_HOWE, 2026, 4, 5, 2, 45),
        ],
        id="lord-howe-hourly-fall-repeated-half-hour",
    ),
    # Asia/Kolkata has no DST: the same UTC instant all year.
    pytest.param(
        sched("day", 2, 30, tz=KOLKATA),
        utc(2026, 3, 7, 12),
        [utc(2026, 3, 7, 21), utc(2026, 3, 8, 21)],
        id="kolkata-no-dst",
    ),
]


@pytest.mark.parametrize(("schedule", "after", "expected"), DST_EXAMPLES)
def test_dst_examples(schedule: Schedule, after: datetime, expected: list[datetime]) -> None:
    assert scheduled_times(schedule, after, len(expected)) == expected


def test_after_in_any_zone_means_the_same_instant() -> None:
    schedule = sched("day", 9, 0, tz=LONDON)
    after = utc(2026, 6, 1, 12)
    expected = next_run_after(schedule, after)
    for other in (timezone(timedelta(hours=-7)), ZoneInfo(KOLKATA), ZoneInfo(LORD_HOWE)):
        assert next_run_after(schedule, after.astimezone(other)) == expected


def test_after_inside_repeated_hour_second_occurrence() -> None:
    # 01:10 PST (second 01:10 of the day): today's 01:30 fired at its first occurrence already.
    daily = sched("day", 1, 30, tz=LA)
    second_0110 = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=ZoneInfo(LA))
    assert next_run_after(daily, second_0110) == local(LA, 2026, 11, 2, 1, 30)
    hourly = sched("hour", 0, 30, tz=LA)
    assert next_run_after(hourly, second_0110) == local(LA, 2026, 11, 1, 1, 30, fold=1)


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run_after(sched("day", 9, 0), datetime(2026, 1, 1))


def test_mapping_row_is_accepted() -> None:
    row = {
        "frequency_interval": "week",
        "schedule_hour": 9,
        "schedule_minute": 0,
        "selected_days": [1, 5],
        "timezone": LONDON,
        "gating_condition": None,
    }
    assert next_run_after(row, utc(2026, 1, 1)) == utc(2026, 1, 2, 9)
    assert Schedule.from_row(row) == sched("week", 9, 0, (1, 5), LONDON)


def test_from_row_defaults_and_no_implicit_validation() -> None:
    hourly = Schedule.from_row(
        {
            "frequency_interval": "hour",
            "schedule_hour": None,
            "schedule_minute": 5,
            "selected_days": None,
            "timezone": "UTC",
        }
    )
    assert hourly == sched("hour", 0, 5)
    bad = Schedule.from_row(
        {
            "frequency_interval": "week",
            "schedule_hour": 9,
            "schedule_minute": 0,
            "selected_days": [9],
            "timezone": "UTC",
        }
    )
    assert bad.selected_days == (9,)  # built, not validated
    with pytest.raises(AlertValidationError, match="missing timezone"):
        Schedule.from_row({"frequency_interval": "day", "schedule_hour": 9, "schedule_minute": 0})


def test_scheduled_times_iterates() -> None:
    assert scheduled_times(sched("day", 9, 0), utc(2026, 1, 1), 0) == []
    assert scheduled_times(sched("month", 9, 0, (31,)), utc(2026, 1, 1), 4) == [
        utc(2026, 1, 31, 9),
        utc(2026, 2, 28, 9),
        utc(2026, 3, 31, 9),
        utc(2026, 4, 30, 9),
    ]


BAD = [
    pytest.param(sched("day", 9, 0, tz="Mars/Base"), "unknown timezone 'Mars/Base'", id="unknown-tz"),
    pytest.param(sched("day", 9, 0, tz=""), "timezone", id="empty-tz"),
    pytest.param(sched("day", 9, 0, tz="../../etc/passwd"), "unknown timezone", id="path-tz"),
    pytest.param(sched("day", 24, 0), "schedule_hour .* 0 to 23, got 24", id="hour-24"),
    pytest.param(sched("day", -1, 0), "schedule_hour", id="hour-negative"),
    pytest.param(sched("day", 9, 60), "schedule_minute .* 0 to 59, got 60", id="minute-60"),
    pytest.param(Schedule("day", "9", 0, (), "UTC"), "schedule_hour", id="hour-not-int"),  # type: ignore[arg-type]
    pytest.param(Schedule("day", True, 0, (), "UTC"), "schedule_hour", id="hour-bool"),
    pytest.param(sched("week", 9, 0, (8,)), "8 is not a weekday 0-6 for a weekly", id="week-day-8"),
    pytest.param(sched("week", 9, 0, (7,)), "7 is not a weekday", id="week-day-7"),
    pytest.param(sched("week", 9, 0), "weekly schedule needs at least one selected day", id="week-empty"),
    pytest.param(sched("month", 9, 0), "monthly schedule needs at least one selected day", id="month-empty"),
    pytest.param(sched("month", 9, 0, (0,)), "0 is not a day of the month 1-31", id="month-day-0"),
    pytest.param(sched("month", 9, 0, (32,)), "32 is not a day of the month 1-31", id="month-day-32"),
    pytest.param(sched("day", 9, 0, (7,)), "7 is not a weekday 0-6 for a daily", id="day-weekday-7"),
    pytest.param(sched("hour", 9, 0, (-1,)), "-1 is not a weekday 0-6 for an hourly", id="hour-weekday-neg"),
    pytest.param(sched("yearly", 9, 0), "Unknown frequency_interval 'yearly'", id="unknown-frequency"),
    pytest.param(Schedule("day", 9, 0, [1], "UTC"), "selected_days must be a list", id="days-not-tuple"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("schedule", "message"), BAD)
def test_validation_errors(schedule: Schedule, message: str) -> None:
    with pytest.raises(AlertValidationError, match=message):
        validate_schedule(schedule)
    with pytest.raises(AlertValidationError, match=message):
        next_run_after(schedule, utc(2026, 1, 1))


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param(sched("hour", 23, 59, (0, 6), KOLKATA), id="hour"),
        pytest.param(sched("day", 0, 0), id="day"),
        pytest.param(sched("week", 9, 0, tuple(range(7))), id="week"),
        pytest.param(sched("month", 9, 0, (1, 31)), id="month"),
    ],
)
def test_valid_schedules_pass(schedule: Schedule) -> None:
    validate_schedule(schedule)
    assert validate_schedule(schedule) is schedule


@pytest.mark.parametrize(
    ("schedule", "text"),
    [
        pytest.param(
            sched("week", 9, 0, (5, 1), LONDON), "Every Monday and Friday at 09:00 (Europe/London)", id="week"
        ),
        pytest.param(
            sched("week", 9, 0, (0, 3, 1)), "Every Monday, Wednesday and Sunday at 09:00 (UTC)", id="week-3"
        ),
        pytest.param(sched("day", 7, 5, tz=LA), "Every day at 07:05 (America/Los_Angeles)", id="day"),
        pytest.param(
            sched("day", 7, 5, (1, 2, 3, 4, 5)),
            "Every Monday, Tuesday, Wednesday, Thursday and Friday at 07:05 (UTC)",
            id="day-weekdays",
        ),
        pytest.param(sched("hour", 3, 15), "Every hour at :15 (UTC)", id="hour"),
        pytest.param(sched("hour", 3, 0, (6,)), "Every hour at :00 on Saturday (UTC)", id="hour-days"),
        pytest.param(
            sched("month", 9, 0, (1, 15)), "Every month on the 1st and 15th at 09:00 (UTC)", id="month"
        ),
        pytest.param(
            sched("month", 18, 30, (31, 2, 23)),
            "Every month on the 2nd, 23rd and 31st (or the month's last day) at 18:30 (UTC)",
            id="month-end",
        ),
    ],
)
def test_describe(schedule: Schedule, text: str) -> None:
    assert describe(schedule) == text


@pytest.mark.parametrize(
    ("dt", "floor", "nxt"),
    [
        pytest.param(utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), id="on-hour"),
        pytest.param(utc(2026, 1, 1, 10, 59, 59), utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), id="end-of-hour"),
        pytest.param(utc(2026, 12, 31, 23, 30), utc(2026, 12, 31, 23), utc(2027, 1, 1), id="year-end"),
        pytest.param(
            local(KOLKATA, 2026, 1, 1, 10, 45), utc(2026, 1, 1, 5), utc(2026, 1, 1, 6), id="kolkata"
        ),
    ],
)
def test_hour_slots(dt: datetime, floor: datetime, nxt: datetime) -> None:
    assert floor_to_hour_utc(dt) == floor
    assert floor_to_hour_utc(dt).tzinfo is UTC
    assert next_hour_slot_after(dt) == nxt
    assert next_hour_slot_after(dt) > dt


def test_hour_slots_refuse_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        floor_to_hour_utc(datetime(2026, 1, 1))


def test_an_unhashable_field_is_named_not_a_type_error() -> None:
    # next_run_after memoises on the schedule; a Schedule built by hand with a list must still be refused
    # by validation, with the reason, rather than fail to hash.
    with pytest.raises(AlertValidationError, match="selected_days must be a list of integers"):
        next_run_after(Schedule("week", 9, 0, [1], "UTC"), datetime(2026, 3, 1, tzinfo=UTC))  # type: ignore[arg-type]


def test_the_same_instant_in_another_zone_gives_the_same_next_run() -> None:
    schedule = Schedule("day", 9, 0, (), "America/Los_Angeles")
    utc = datetime(2026, 3, 8, 16, 59, tzinfo=UTC)  # the DST change day: 09:00 PDT is 16:00 UTC
    local = utc.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (
        next_run_after(schedule, utc)
        == next_run_after(schedule, local)
        == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)
    )
    with pytest.raises(ValueError, match="naive"):
        next_run_after(schedule, utc.replace(tzinfo=None))
