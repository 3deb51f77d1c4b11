"""Cron and calendar schedules stored, loaded, shown and changed against a real PostgreSQL (issue 26)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kpi_alerts.cli import main
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_changes import update_alert
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from kpi_alerts.ledger.due_alerts import initialise_first_runs
from kpi_alerts.paths import MIGRATIONS_DIR

pytestmark = pytest.mark.services

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday


def report(schedule: dict[str, Any]) -> dict[str, Any]:
    return {
        "organization_id": 1,
        "alert_name": "Month-end revenue",
        "recipients": ["finance@org1.example.com"],
        "cube_query": {"measures": ["orders.total_amount"]},
        "schedule": {"attachment_type": "csv", **schedule},
    }


LAST_BUSINESS_DAY_NY = {
    "frequency_interval": "month",
    "business_day": -1,
    "schedule_hour": 17,
    "holiday_country": "US",
    "holiday_subdivision": "NY",
    "timezone": "America/New_York",
}
FIRST_MONDAY_OF_QUARTER = {
    "frequency_interval": "cron",
    "cron_expression": "0 9 * 1,4,7,10 1#1",
    "timezone": "America/Chicago",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def counts(db: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM kpi_alerts) a, (SELECT count(*) FROM kpi_schedules) b"
    ).fetchone()
    assert row is not None
    return tuple(row.values())


class TestStoredAndLoaded:
    def test_cron_schedule_round_trip_and_first_slot(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, report(FIRST_MONDAY_OF_QUARTER), now=NOW)
        assert created.next_run_at == datetime(2027, 1, 4, 15, 0, tzinfo=UTC)  # 09:00 CST
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.schedule is not None
        assert alert.schedule.cron_expression == "0 9 * 1,4,7,10 1#1"
        alert.validate()
        assert alert.next_slot_after(created.next_run_at) == datetime(2027, 4, 5, 14, 0, tzinfo=UTC)  # CDT

    def test_business_day_with_holidays(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, report(LAST_BUSINESS_DAY_NY), now=datetime(2027, 5, 1, tzinfo=UTC))
        # May 31st 2027 is Memorial Day: the last business day is Friday the 28th.
        assert created.next_run_at == datetime(2027, 5, 28, 21, 0, tzinfo=UTC)
        row = db.execute(
            "SELECT business_day, holiday_country, holiday_subdivision, on_holiday, cron_expression "
            "FROM kpi_schedules WHERE kpi_alert_id = %s",
            (created.alert_id,),
        ).fetchone()
        assert row == {
            "business_day": -1,
            "holiday_country": "US",
            "holiday_subdivision": "NY",
            "on_holiday": None,
            "cron_expression": None,
        }

    def test_every_other_week_keeps_its_start_date(self, db: psycopg.Connection[Any]) -> None:
        spec = {
            "frequency_interval": "week",
            "every_n_weeks": 2,
            "start_date": "2027-01-04",
            "selected_days": [1],
            "schedule_hour": 8,
            "schedule_minute": 30,
            "timezone": "Europe/Berlin",
        }
        created = create_alert(db, report(spec), now=NOW)
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.schedule is not None
        assert alert.schedule.start_date == date(2027, 1, 4)
        assert [alert.next_slot_after(created.next_run_at + timedelta(days=d)).date() for d in (0, 14)] == [
            date(2027, 1, 18),
            date(2027, 2, 1),
        ]

    @pytest.mark.parametrize(
        ("schedule", "message"),
        [
            pytest.param(
                {"frequency_interval": "cron", "cron_expression": "0 9 31 2 *"},
                "this schedule never fires: At 09:00, on day 31 of the month, only in February (UTC)",
                id="31st-of-february",
            ),
            pytest.param(
                {
                    "frequency_interval": "week",
                    "every_n_weeks": 0,
                    "selected_days": [1],
                    "start_date": "2027-01-04",
                },
                "every_n_weeks must be an integer from 1 to 52, got 0",
                id="every-0-weeks",
            ),
            pytest.param(
                {"frequency_interval": "day", "holiday_country": "XX"},
                "unknown holiday country 'XX'",
                id="unknown-country",
            ),
            pytest.param(
                {"frequency_interval": "cron", "cron_expression": "0 9 * * 1", "schedule_hour": 9},
                "a cron schedule takes its times and days from cron_expression",
                id="cron-and-hour",
            ),
            pytest.param(
                {"frequency_interval": "cron", "cron_expression": "0 9 * * 8"},
                "cron day-of-week: 8 is outside 0-7",
                id="weekday-8",
            ),
        ],
    )
    def test_nonsense_is_refused_with_one_line_and_nothing_written(
        self, db: psycopg.Connection[Any], schedule: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(
            AlertValidationError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
        ) as exc:
            create_alert(db, report(schedule), now=NOW)
        assert "\n" not in str(exc.value)
        assert counts(db) == (0, 0)


class TestPlainSql:
    def test_a_cron_alert_inserted_by_sql_gets_its_first_slot(self, db: psycopg.Connection[Any]) -> None:
        job = db.execute(
            "INSERT INTO cron_jobs (job_name, locked, master_locked) VALUES ('kpi_alert_cron', false, false) "
            "RETURNING id"
        ).fetchone()
        assert job is not None
        alert = db.execute(
            "INSERT INTO kpi_alerts (cron_job_id, organization_id, alert_type, alert_name, recipients, cube_query) "
            "VALUES (%s, 1, 'schedule', 'Weekdays', ARRAY['x@org1.example.com'], %s) RETURNING id",
            (job["id"], json.dumps({"measures": ["orders.count"]})),
        ).fetchone()
        assert alert is not None
        db.execute(
            "INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, cron_expression, timezone) "
            "VALUES (%s, 'cron', '30 8 * * mon-fri', 'America/St_Johns')",
            (alert["id"],),
        )
        initialise_first_runs(db, logical_time=NOW, oldest_slot=NOW - timedelta(hours=1))
        stored = load_alert(db, alert["id"])
        assert stored is not None
        assert stored.next_run_at == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # 08:30 NST = 12:00 UTC

    @pytest.mark.parametrize(
        ("assignments", "constraint"),
        [
            pytest.param(
                "frequency_interval = 'cron'", "kpi_schedules_cron_check", id="cron-without-expression"
            ),
            pytest.param(
                "cron_expression = '0 9 * * *'", "kpi_schedules_cron_check", id="expression-on-a-week"
            ),
            pytest.param("every_n_weeks = 0", "kpi_schedules_every_n_weeks_check", id="every-0-weeks"),
            pytest.param("every_n_weeks = 2", "kpi_schedules_every_n_weeks_check", id="no-start-date"),
            pytest.param(
                "business_day = -1", "kpi_schedules_business_day_check", id="business-day-on-a-week"
            ),
            pytest.param("holiday_country = 'usa'", "kpi_schedules_holidays_check", id="lowercase-country"),
            pytest.param("on_holiday = 'skip'", "kpi_schedules_holidays_check", id="rule-without-country"),
            pytest.param(
                "holiday_country = 'US', on_holiday = 'sometimes'", "kpi_schedules_holidays_check", id="rule"
            ),
        ],
    )
    def test_check_constraints(self, db: psycopg.Connection[Any], assignments: str, constraint: str) -> None:
        weekly = {"frequency_interval": "week", "selected_days": [1], "schedule_hour": 9, "timezone": "UTC"}
        created = create_alert(db, report(weekly), now=NOW)
        with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
            db.execute(f"UPDATE kpi_schedules SET {assignments} WHERE kpi_alert_id = %s", (created.alert_id,))

    def test_the_migration_runs_again_without_change(self, db: psycopg.Connection[Any]) -> None:
        sql = (MIGRATIONS_DIR / "0012_schedule_calendars.sql").read_text()
        before = db.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'kpi_schedules'::regclass ORDER BY 1"
        ).fetchall()
        db.execute(sql)
        after = db.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'kpi_schedules'::regclass ORDER BY 1"
        ).fetchall()
        assert before == after
        assert {"conname": "kpi_schedules_frequency_check"} in after
        assert {"conname": "kpi_schedules_frequency_interval_check"} not in after


class TestShownAndChanged:
    def test_show_says_the_schedule_and_five_runs_in_words(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        created = create_alert(db, report(LAST_BUSINESS_DAY_NY), now=NOW)
        code, out, _ = run(capsys, "show", str(created.alert_id), "--json", "--db", alerts_db_url)
        detail = json.loads(out)
        assert code == 0
        assert detail["schedule_description"] == (
            "Every month on the last business day at 17:00, business days by the holidays of US-NY "
            "(America/New_York)"
        )
        assert [r["words"] for r in detail["next_runs"]] == [
            "Thursday 31 December 2026, 17:00 EST",
            "Friday 29 January 2027, 17:00 EST",
            "Friday 26 February 2027, 17:00 EST",
            "Wednesday 31 March 2027, 17:00 EDT",
            "Friday 30 April 2027, 17:00 EDT",
        ]
        assert detail["definition"]["schedule"]["business_day"] == -1
        assert "cron_expression" not in detail["definition"]["schedule"]
        code, out, _ = run(capsys, "show", str(created.alert_id), "--db", alerts_db_url)
        assert code == 0 and "Thursday 31 December 2026, 17:00 EST" in out

    def test_a_patch_to_cron_recomputes_the_next_run(self, db: psycopg.Connection[Any]) -> None:
        daily = {"frequency_interval": "day", "schedule_hour": 9, "timezone": "America/Chicago"}
        created = create_alert(db, report(daily), now=NOW)
        patch = {"schedule": {"schedule_hour": None, "frequency_interval": "cron", **FIRST_MONDAY_OF_QUARTER}}
        update_alert(db, created.alert_id, patch, now=NOW)
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.next_run_at == datetime(2027, 1, 4, 15, 0, tzinfo=UTC)

    def test_next_runs_needs_no_database(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        examples = Path(__file__).parents[2] / "docs" / "schedule_examples.json"
        code, out, err = run(
            capsys,
            "next-runs",
            str(examples),
            "--after",
            "2026-12-07T12:00Z",
            "--db",
            "postgresql://nowhere:1/x",
        )
        assert (code, err) == (0, "")
        assert out.count("   words  ") == 10
        assert "Tuesday 29 December 2026, 07:00 AEDT" in out  # Boxing Day (observed) moved to the Tuesday
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"frequency_interval": "cron", "cron_expression": "0 9 * *"}))
        code, out, err = run(capsys, "next-runs", str(bad))
        assert code == 2 and err.count("\n") == 1 and "must have 5 fields" in err


def threshold(**overrides: Any) -> dict[str, Any]:
    return {
        "organization_id": 2,
        "alert_name": "Orders above 10",
        "recipients": ["ops@org2.example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "threshold": {
            "condition": "GREATER_THAN",
            "threshold_value": "10",
            "timezone": "Europe/London",
            **overrides,
        },
    }


BUSINESS_HOURS = {"days": [1, 2, 3, 4, 5], "from": "08:00", "to": "18:00"}


class TestThresholdCadence:
    def test_every_quarter_hour_in_business_hours(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        friday_evening = datetime(2026, 12, 4, 17, 50, tzinfo=UTC)
        created = create_alert(
            db, threshold(check_every_minutes=15, active_hours=BUSINESS_HOURS), now=friday_evening
        )
        assert created.next_run_at == datetime(2026, 12, 4, 17, 45, tzinfo=UTC)  # the current check: soon
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.threshold is not None
        alert.validate()
        assert alert.next_slot_after(created.next_run_at) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # Monday
        row = db.execute(
            "SELECT check_every_minutes, check_daily_minute, active_days, active_from_minute, active_until_minute "
            "FROM kpi_thresholds WHERE kpi_alert_id = %s",
            (created.alert_id,),
        ).fetchone()
        assert row == {
            "check_every_minutes": 15,
            "check_daily_minute": None,
            "active_days": [1, 2, 3, 4, 5],
            "active_from_minute": 480,
            "active_until_minute": 1080,
        }
        code, out, _ = run(capsys, "show", str(created.alert_id), "--json", "--db", alerts_db_url)
        detail = json.loads(out)
        assert code == 0
        assert detail["schedule_description"] == (
            "Checked every 15 minutes (on the UTC grid), between 08:00 and 18:00, on Monday, Tuesday, Wednesday, "
            "Thursday and Friday (values in Europe/London)"
        )
        assert detail["definition"]["threshold"]["active_hours"] == BUSINESS_HOURS
        assert detail["definition"]["threshold"]["check_every_minutes"] == 15

    def test_daily_check_and_a_patch_back_to_hourly(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, threshold(check_daily_at="09:30"), now=NOW)  # Monday 12:00 UTC
        assert created.next_run_at == datetime(2026, 12, 8, 9, 30, tzinfo=UTC)
        update_alert(db, created.alert_id, {"threshold": {"check_daily_at": None}}, now=NOW)
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.next_run_at == NOW  # hourly again: the 12:00 check
        assert alert.threshold is not None and alert.threshold.check_cadence.daily_at_minute is None

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"check_every_minutes": 7}, "check_every_minutes must be one of 5, 10, 15, 30 or 60, got 7"),
            ({"check_daily_at": "9am"}, "check_daily_at must be a time HH:MM"),
            ({"active_hours": {"from": "18:00", "to": "08:00"}}, "not after they start"),
            ({"active_hours": {"from": "08:00", "to": "08:30"}}, "shorter than the check interval"),
            (
                {"active_hours": {"from": "08:00", "till": "18:00"}},
                "Invalid alert: threshold.active_hours.till",
            ),
        ],
    )
    def test_refusals(self, db: psycopg.Connection[Any], overrides: dict[str, Any], message: str) -> None:
        with pytest.raises(AlertValidationError, match=message):
            create_alert(db, threshold(**overrides), now=NOW)
        assert counts(db) == (0, 0)

    def test_check_constraints(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, threshold(), now=NOW)
        for assignments, constraint in [
            ("check_every_minutes = 7", "kpi_thresholds_cadence_check"),
            ("check_daily_minute = 600, check_every_minutes = 15", "kpi_thresholds_cadence_check"),
            ("active_from_minute = 600", "kpi_thresholds_active_hours_check"),
            ("active_from_minute = 600, active_until_minute = 500", "kpi_thresholds_active_hours_check"),
            ("active_days = '{7}'", "kpi_thresholds_active_hours_check"),
        ]:
            with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
                db.execute(
                    f"UPDATE kpi_thresholds SET {assignments} WHERE kpi_alert_id = %s", (created.alert_id,)
                )
