"""Quiet hours and snooze, without a database: which slots run, when, and what is held back."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.cadence import CheckCadence
from kpi_alerts.scheduling.quiet_hours import (
    Hold,
    QuietHours,
    check_snooze,
    describe_quiet_hours,
    held_slot,
    next_check,
    next_report_slot,
)
from kpi_alerts.scheduling.schedule import Schedule, next_run_after

BERLIN = "Europe/Berlin"
NIGHT = QuietHours(BERLIN, 22 * 60, 7 * 60)  # 22:00-07:00, across midnight


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hourly(at_minute: int = 0) -> Schedule:
    return Schedule("hour", 0, at_minute, (), BERLIN)


def test_a_window_across_midnight_ends_the_next_morning_in_local_time() -> None:
    # 2027-01-05 23:30 Berlin (CET, UTC+1) is quiet until 07:00 local on the 6th = 06:00 UTC
    assert NIGHT.end_if_quiet(utc(2027, 1, 5, 22, 30)) == utc(2027, 1, 6, 6, 0)
    assert NIGHT.end_if_quiet(utc(2027, 1, 6, 5, 59)) == utc(2027, 1, 6, 6, 0)
    assert NIGHT.end_if_quiet(utc(2027, 1, 6, 6, 0)) is None  # the end is not quiet
    assert NIGHT.end_if_quiet(utc(2027, 1, 5, 20, 59)) is None


def test_days_are_the_days_a_window_starts_on() -> None:
    friday_nights = QuietHours(BERLIN, 22 * 60, 7 * 60, (5,))
    assert friday_nights.end_if_quiet(utc(2027, 1, 9, 5, 0)) == utc(2027, 1, 9, 6, 0)  # Saturday 06:00
    assert friday_nights.end_if_quiet(utc(2027, 1, 10, 5, 0)) is None  # Sunday morning: Saturday night


def test_the_alerts_and_the_organizations_windows_add_up() -> None:
    early = QuietHours("UTC", 6 * 60, 8 * 60)  # the organization's, in UTC: 06:00-08:00 UTC
    hold = Hold((NIGHT, early))
    assert hold.quiet_end(utc(2027, 1, 5, 23, 0)) == utc(2027, 1, 6, 8, 0)


def test_a_dst_day_ends_at_the_local_time() -> None:
    # Berlin springs forward on 2027-03-28: 07:00 CEST = 05:00 UTC
    assert NIGHT.end_if_quiet(utc(2027, 3, 28, 1, 0)) == utc(2027, 3, 28, 5, 0)


def test_reports_inside_quiet_hours_are_delayed_to_their_end_once() -> None:
    schedule = hourly()
    hold = Hold((NIGHT,))
    base = lambda t: next_run_after(schedule, t)  # noqa: E731
    runs = [next_report_slot(base, utc(2027, 1, 5, 19, 30), hold)]
    for _ in range(3):
        runs.append(next_report_slot(base, runs[-1], hold))
    # 21:00 local, then the slots 22:00 ... 06:00 make one run at 07:00 local, then 08:00
    assert runs == [
        utc(2027, 1, 5, 20, 0),
        utc(2027, 1, 6, 6, 0),
        utc(2027, 1, 6, 7, 0),
        utc(2027, 1, 6, 8, 0),
    ]


def test_reports_inside_quiet_hours_may_be_skipped() -> None:
    daily_at_two = Schedule("day", 2, 0, (), BERLIN)
    skip = Hold((QuietHours(BERLIN, 22 * 60, 7 * 60, (2,)),), reports="skip")  # Tuesday nights only
    base = lambda t: next_run_after(daily_at_two, t)  # noqa: E731
    # Wednesday 02:00 is inside Tuesday night's window: skipped; Thursday 02:00 runs.
    assert next_report_slot(base, utc(2027, 1, 5, 12, 0), skip) == utc(2027, 1, 7, 1, 0)
    in_utc = Schedule("day", 2, 0, (), "UTC")  # (in Berlin, 02:00 on a spring-forward day runs at 03:00)
    never = Hold((QuietHours("UTC", 1 * 60, 3 * 60),), reports="skip")
    with pytest.raises(AlertValidationError, match="never fires outside quiet hours"):
        next_report_slot(lambda t: next_run_after(in_utc, t), utc(2027, 1, 5, 12, 0), never)


def test_a_snooze_skips_every_slot_before_its_end_and_no_backlog() -> None:
    schedule = hourly(30)
    hold = Hold(snoozed_until=utc(2027, 1, 5, 12, 10))
    base = lambda t: next_run_after(schedule, t)  # noqa: E731
    assert next_report_slot(base, utc(2027, 1, 5, 8, 0), hold) == utc(2027, 1, 5, 12, 30)
    on_the_end = Hold(snoozed_until=utc(2027, 1, 5, 12, 30))
    assert next_report_slot(base, utc(2027, 1, 5, 8, 0), on_the_end) == utc(2027, 1, 5, 12, 30)


def test_a_threshold_is_checked_inside_quiet_hours_and_at_their_end() -> None:
    cadence = CheckCadence("Asia/Kolkata")  # hourly on the UTC hour; quiet ends 07:00 IST = 01:30 UTC
    hold = Hold((QuietHours("Asia/Kolkata", 22 * 60, 7 * 60),))
    assert next_check(cadence, utc(2027, 1, 5, 0, 0), hold) == utc(2027, 1, 5, 1, 0)  # inside: keeps checking
    assert next_check(cadence, utc(2027, 1, 5, 1, 0), hold) == utc(2027, 1, 5, 1, 30)  # the end itself
    assert next_check(cadence, utc(2027, 1, 5, 1, 30), hold) == utc(2027, 1, 5, 2, 0)
    snoozed = Hold(snoozed_until=utc(2027, 1, 5, 9, 2, 30))
    assert next_check(CheckCadence("UTC", every_minutes=5), utc(2027, 1, 5, 8, 0), snoozed) == utc(
        2027, 1, 5, 9, 5
    )


def test_a_slot_planned_before_a_snooze_or_quiet_hours_is_held_when_it_comes_due() -> None:
    slot = utc(2027, 1, 5, 23, 0)
    assert (
        held_slot(slot, Hold(snoozed_until=slot + timedelta(minutes=2)), is_report=True).reason == "snoozed"
    )  # type: ignore[union-attr]
    delayed = held_slot(slot, Hold((NIGHT,)), is_report=True)
    assert delayed is not None and delayed.next_run_at == utc(2027, 1, 6, 6, 0)
    skipped = held_slot(slot, Hold((NIGHT,), reports="skip"), is_report=True)
    assert skipped is not None and skipped.next_run_at is None
    assert held_slot(slot, Hold((NIGHT,)), is_report=False) is None  # a check runs; its message waits
    assert held_slot(slot, Hold(snoozed_until=slot), is_report=False) is None


@pytest.mark.parametrize(
    ("quiet", "message"),
    [
        (QuietHours(BERLIN, 600, 600), "never end"),
        (QuietHours(BERLIN, 0, 1440), "never end"),
        (QuietHours(BERLIN, 600, 700, (7,)), "not a weekday"),
        (QuietHours("Mars/Olympus", 600, 700), "Mars/Olympus"),
    ],
)
def test_quiet_hours_that_make_no_sense_are_refused_with_one_line(quiet: QuietHours, message: str) -> None:
    with pytest.raises(AlertValidationError, match=message):
        quiet.validate()


def test_snooze_times_are_checked() -> None:
    now = utc(2027, 1, 5, 12, 0)
    with pytest.raises(AlertValidationError, match="has passed"):
        check_snooze(now, now)
    with pytest.raises(AlertValidationError, match="UTC offset"):
        check_snooze(datetime(2027, 1, 6), now)
    with pytest.raises(AlertValidationError, match="at most a year"):
        check_snooze(now + timedelta(days=400), now)


def test_in_words() -> None:
    assert describe_quiet_hours(NIGHT) == "Quiet 22:00-07:00 (the next day) (Europe/Berlin)"
    assert (
        describe_quiet_hours(QuietHours("UTC", 720, 780, (1, 0)))
        == "Quiet 12:00-13:00, starting Monday and Sunday (UTC)"
    )


def test_a_held_slot_asks_cube_nothing() -> None:
    from kpi_alerts.alerts.definition import AlertDefinition
    from kpi_alerts.pipeline.alert_run import first_queries

    slot = utc(2027, 1, 5, 23, 0)
    alert = AlertDefinition(
        alert_id=1,
        cron_job_id="1",
        job_name="kpi_alert_schedule_1",
        organization_id=1,
        alert_type="schedule",
        alert_name="Nightly",
        recipients=("a@example.com",),
        cube_query={"measures": ["orders.count"]},
        is_active=True,
        master_locked=False,
        next_run_at=slot,
        schedule=Schedule("day", 0, 0, (), BERLIN),
        quiet_hours=NIGHT,
    )
    assert first_queries(alert, slot) == []
    assert alert.held_slot(slot) is not None
    awake = replace(alert, quiet_hours=None)
    assert first_queries(awake, slot) != []
    snoozed = replace(awake, snoozed_until=slot + timedelta(minutes=1))
    assert first_queries(snoozed, slot) == []


def test_next_runs_of_an_alert_spec_with_quiet_hours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kpi_alerts.cli import main

    spec = {
        "alert_name": "Hourly, quiet at night",
        "schedule": {"frequency_interval": "hour", "schedule_minute": 0, "timezone": BERLIN},
        "quiet_hours": {"from": "22:00", "to": "07:00"},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert main(["next-runs", str(path), "--after", "2027-01-05T19:30Z", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert "quiet  Quiet 22:00-07:00 (the next day) (Europe/Berlin); reports inside them: delay" in out
    assert [line.split()[-2:] for line in out.splitlines() if line.endswith("Z")] == [
        ["2027-01-05", "20:00Z"],
        ["2027-01-06", "06:00Z"],
        ["2027-01-06", "07:00Z"],
    ]


# --- against a brute-force oracle, minute by minute in local time, across DST changes -----------------

ODD_ZONES = {  # a spring-forward and a fall-back day of each (local dates)
    "Australia/Lord_Howe": ("2026-10-04", "2026-04-05"),  # 30-minute changes at 02:00
    "Pacific/Chatham": ("2026-09-27", "2026-04-05"),  # at 02:45 / 03:45
    "America/St_Johns": ("2026-03-08", "2026-11-01"),
    "America/Sao_Paulo": ("2018-11-04", "2018-02-18"),  # at midnight
}
WINDOWS = [(22 * 60, 7 * 60), (60, 150), (120, 165), (150, 180), (0, 120), (165, 225), (23 * 60, 24 * 60)]


def oracle_quiet(q: QuietHours, instant: datetime) -> bool:
    """Quiet when the local wall time is inside a window that starts on an allowed day."""
    local = instant.astimezone(ZoneInfo(q.timezone))
    minute = local.hour * 60 + local.minute
    for start_day, in_window in (
        (
            local.date(),
            q.from_minute <= minute < (q.until_minute if q.until_minute > q.from_minute else 1440),
        ),
        (local.date() - timedelta(days=1), q.until_minute <= q.from_minute and minute < q.until_minute),
    ):
        if in_window and (not q.days or start_day.isoweekday() % 7 in q.days):
            return True
    return False


def oracle_end(q: QuietHours, instant: datetime) -> datetime | None:
    if not oracle_quiet(q, instant):
        return None
    cursor = instant
    while oracle_quiet(q, cursor):
        cursor += timedelta(minutes=1)
    return cursor


@pytest.mark.parametrize("zone_name", sorted(ODD_ZONES))
@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_quiet_end_matches_the_oracle_across_dst_days(zone_name: str, start: int, end: int) -> None:
    tz = ZoneInfo(zone_name)
    for local_day in ODD_ZONES[zone_name]:
        day = date.fromisoformat(local_day)
        for days in ((), ((day.isoweekday() - 1) % 7,)):  # every day; only windows starting the day before
            q = QuietHours(zone_name, start, end, days)
            first = datetime.combine(day - timedelta(days=1), time(12), tzinfo=tz).astimezone(UTC)
            for step in range(0, 48 * 60, 7):  # two days, every 7 minutes
                instant = first + timedelta(minutes=step)
                assert q.end_if_quiet(instant) == oracle_end(q, instant), (q, instant.isoformat())


@pytest.mark.parametrize("zone_name", sorted(ODD_ZONES))
def test_an_alerts_and_its_organizations_windows_end_together_as_the_oracle_says(zone_name: str) -> None:
    own = QuietHours(zone_name, 22 * 60, 150)  # the alert's, across midnight to 02:30
    org = QuietHours("UTC", 0, 4 * 60, (0, 6))  # the organization's, in UTC, weekends only
    hold = Hold((own, org))
    tz = ZoneInfo(zone_name)
    for local_day in ODD_ZONES[zone_name]:
        first = datetime.combine(date.fromisoformat(local_day) - timedelta(days=1), time(12), tzinfo=tz)
        for step in range(0, 48 * 60, 11):
            instant = first.astimezone(UTC) + timedelta(minutes=step)
            cursor = instant
            while oracle_quiet(own, cursor) or oracle_quiet(org, cursor):
                cursor += timedelta(minutes=1)
            assert hold.quiet_end(instant) == (cursor if cursor != instant else None), instant.isoformat()
