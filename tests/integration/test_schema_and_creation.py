"""Migrations, SQL constraints, and alert creation (API and CLI) against a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from devstack.postgres import PostgresServer, drop_database, ensure_database
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from kpi_alerts.ledger.migrations import migrate, pending_migrations
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.services

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def schedule_spec(**overrides: Any) -> dict[str, Any]:
    schedule = {
        "frequency_interval": "week",
        "schedule_hour": 9,
        "schedule_minute": 30,
        "selected_days": [1, 5],
        "timezone": "Europe/London",
        "attachment_type": "pdf",
    }
    schedule.update(overrides.pop("schedule", {}))
    return {
        "organization_id": 1,
        "alert_name": "Weekly revenue",
        "recipients": ["cfo@example.com"],
        "cube_query": {"measures": ["orders.total_amount"]},
        "schedule": schedule,
        **overrides,
    }


def counts(db: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM cron_jobs) a, (SELECT count(*) FROM kpi_alerts) b, "
        "(SELECT count(*) FROM kpi_schedules) c, (SELECT count(*) FROM kpi_thresholds) d"
    ).fetchone()
    return tuple(row.values())


class TestMigrations:
    def test_idempotent_and_recorded(self, alerts_db_url: str) -> None:
        assert migrate(alerts_db_url) == []
        assert pending_migrations(alerts_db_url) == []
        with psycopg.connect(alerts_db_url) as conn:
            applied = [r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1")]
        assert applied[:4] == [
            "0001_cron_jobs",
            "0001b_cron_job_id",
            "0002_kpi_alerts",
            "0003_cron_job_results",
        ]

    def test_existing_cron_tables_are_kept_and_extended(
        self, pg: PostgresServer, request: pytest.FixtureRequest
    ) -> None:
        """The seed's cron_jobs / cron_job_results "already exist": their rows and columns survive."""
        name = f"kpi_alerts_existing_{os.getpid()}"
        url = ensure_database(pg, name, recreate=True)
        request.addfinalizer(lambda: drop_database(pg, name))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE cron_jobs (id bigint PRIMARY KEY, job_name text UNIQUE, locked boolean, "
                "master_locked boolean, last_ran_at_date date, last_ran_at_hour int, "
                "last_ran_at_minute int, legacy_note text)"
            )
            conn.execute(
                "INSERT INTO cron_jobs VALUES (42, 'nightly_cleanup', false, false, NULL, NULL, NULL, 'x')"
            )
            conn.execute(
                "CREATE TABLE cron_job_results (id bigserial PRIMARY KEY, cron_job_id bigint, "
                "created_at timestamptz DEFAULT now(), legacy_payload text)"
            )
            conn.execute("INSERT INTO cron_job_results (cron_job_id, legacy_payload) VALUES (42, 'ok')")
        assert migrate(url) and migrate(url) == []
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT legacy_note, next_run_at FROM cron_jobs").fetchone() == ("x", None)
            assert conn.execute("SELECT legacy_payload, status FROM cron_job_results").fetchone() == (
                "ok",
                None,
            )

    def test_trigger_guards_only_the_run_time_columns(self, db: psycopg.Connection[Any]) -> None:
        job = db.execute("INSERT INTO cron_jobs (job_name) VALUES ('j') RETURNING id").fetchone()["id"]
        claim = "UPDATE cron_jobs SET last_ran_at_date = '2026-11-28', last_ran_at_hour = 10 WHERE id = %s"
        db.execute(claim, (job,))
        with pytest.raises(psycopg.errors.RaiseException, match="already been executed in the current hour"):
            db.execute(claim, (job,))
        db.execute("UPDATE cron_jobs SET locked = true WHERE id = %s", (job,))  # still allowed
        db.execute(
            "UPDATE cron_jobs SET last_ran_at_hour = 11 WHERE id = %s", (job,)
        )  # the next hour is fine

    @pytest.mark.parametrize(
        ("column", "value", "constraint"),
        [
            pytest.param("frequency_interval", "fortnight", "frequency_check", id="frequency"),
            pytest.param("schedule_hour", 24, "schedule_hour_check", id="hour-24"),
            pytest.param("schedule_minute", 60, "schedule_minute_check", id="minute-60"),
            pytest.param("timezone", "Mars/Base", "timezone_check", id="timezone"),
            pytest.param("attachment_type", "docx", "attachment_type_check", id="docx"),
            pytest.param("selected_days", "{8}", "selected_days_check", id="weekday-8"),
        ],
    )
    def test_check_constraints_refuse_bad_schedule_rows(
        self, db: psycopg.Connection[Any], column: str, value: Any, constraint: str
    ) -> None:
        created = create_alert(db, schedule_spec(), now=NOW)
        with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
            db.execute(
                f"UPDATE kpi_schedules SET {column} = %s WHERE kpi_alert_id = %s", (value, created.alert_id)
            )

    def test_check_constraints_refuse_bad_alert_rows(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, schedule_spec(), now=NOW)
        for sql, value in [
            ("recipients = %s", ["not-an-address"]),
            ("recipients = %s", []),
            ("alert_type = %s", "sometimes"),
            ("organization_id = %s", 0),
        ]:
            with pytest.raises(psycopg.errors.CheckViolation):
                db.execute(f"UPDATE kpi_alerts SET {sql} WHERE id = %s", (value, created.alert_id))

    def test_deleting_the_cron_job_cascades(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, schedule_spec(), now=NOW)
        db.execute("DELETE FROM cron_jobs WHERE id = %s", (created.cron_job_id,))
        assert counts(db) == (0, 0, 0, 0)


class TestCreateAlert:
    def test_schedule_alert_all_levels_and_first_slot(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, schedule_spec(), now=NOW)
        assert created.job_name == f"kpi_alert_schedule_{created.alert_id}"
        # Saturday 2026-11-28 10:00 UTC → next Monday 09:30 London (GMT in winter).
        assert created.next_run_at == datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.schedule is not None
        assert alert.schedule.selected_days == (1, 5) and alert.attachment_type == "pdf"
        assert counts(db) == (1, 1, 1, 0)

    def test_threshold_alert(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(
            db,
            {
                "organization_id": 2,
                "alert_name": "Orders",
                "recipients": ["Ops@Example.com", "ops@example.com"],
                "cube_query": {"measures": ["orders.count"]},
                "threshold": {
                    "condition": "LESS_THAN",
                    "threshold_value": "12.50",
                    "timezone": "Asia/Kolkata",
                },
            },
            now=NOW,
        )
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.threshold is not None
        assert alert.recipients == ("Ops@example.com",)  # normalised, de-duplicated
        assert str(alert.threshold.threshold_value) == "12.50" and alert.threshold.state == "OK"
        assert created.next_run_at == NOW  # thresholds are checked from the current hour on
        assert counts(db) == (1, 1, 0, 1)

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            pytest.param(
                schedule_spec(schedule={"timezone": "Mars/Base"}), "Mars/Base", id="unknown-timezone"
            ),
            pytest.param(schedule_spec(recipients=["not an address"]), "not an address", id="bad-email"),
            pytest.param(
                schedule_spec(recipients=["a@example.com\r\nBcc: x@evil.com"]),
                "a@example.com",
                id="header-injection",
            ),
            pytest.param(schedule_spec(schedule={"schedule_hour": 24}), "24", id="hour-24"),
            pytest.param(schedule_spec(recipients=[]), "recipient", id="empty-recipients"),
            pytest.param(schedule_spec(schedule={"attachment_type": "docx"}), "docx", id="docx"),
            pytest.param(schedule_spec(schedule={"selected_days": []}), "day", id="weekly-without-days"),
            pytest.param(
                schedule_spec(schedule={"gating_condition": {"measure": "x.y", "op": "≈", "value": 1}}),
                "gating",
                id="bad-gate",
            ),
            pytest.param(schedule_spec(cube_query={}), "measure", id="no-measure"),
            pytest.param(schedule_spec(alert_name="two\nlines"), "alert_name", id="newline-in-name"),
            pytest.param(
                {**schedule_spec(), "threshold": {"condition": "GREATER_THAN", "threshold_value": 1}},
                "exactly one",
                id="both-kinds",
            ),
        ],
    )
    def test_bad_input_is_refused_clearly_and_writes_nothing(
        self, db: psycopg.Connection[Any], spec: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(AlertValidationError) as info:
            create_alert(db, spec, now=NOW)
        assert message.lower() in str(info.value).lower()
        assert "Traceback" not in str(info.value)
        assert counts(db) == (0, 0, 0, 0)

    def test_a_database_error_midway_leaves_no_partial_rows(self, db: psycopg.Connection[Any]) -> None:
        create_alert(db, schedule_spec(), now=NOW)
        # Make the third insert fail: the cron_jobs and kpi_alerts rows of that attempt must roll back.
        db.execute("ALTER TABLE kpi_schedules ADD CONSTRAINT no_more CHECK (schedule_minute <> 30) NOT VALID")
        try:
            with pytest.raises(psycopg.errors.CheckViolation):
                create_alert(db, schedule_spec(alert_name="Second"), now=NOW)
            assert counts(db) == (1, 1, 1, 0)
        finally:
            db.execute("ALTER TABLE kpi_schedules DROP CONSTRAINT no_more")


class TestCli:
    def run(self, url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}"}
        return subprocess.run(
            [sys.executable, "-m", "kpi_alerts", "--db", url, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    def test_migrate_create_list_history(self, db: psycopg.Connection[Any], alerts_db_url: str) -> None:
        assert self.run(alerts_db_url, "migrate").stdout.strip() == "schema is up to date"
        done = self.run(alerts_db_url, "create-alert", "-", stdin=json.dumps(schedule_spec()))
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        assert created["job_name"].startswith("kpi_alert_schedule_")
        listing = self.run(alerts_db_url, "list-alerts").stdout
        assert "Weekly revenue" in listing and "schedule" in listing
        assert self.run(alerts_db_url, "history", str(created["alert_id"])).returncode == 0

    def test_bad_input_exits_2_with_one_readable_line(
        self, db: psycopg.Connection[Any], alerts_db_url: str
    ) -> None:
        bad = self.run(
            alerts_db_url, "create-alert", "-", stdin=json.dumps(schedule_spec(recipients=["nope"]))
        )
        assert bad.returncode == 2
        assert bad.stderr.startswith("error: ") and "nope" in bad.stderr and "Traceback" not in bad.stderr
        not_json = self.run(alerts_db_url, "create-alert", "-", stdin="{oops")
        assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr
        assert counts(db) == (0, 0, 0, 0)
