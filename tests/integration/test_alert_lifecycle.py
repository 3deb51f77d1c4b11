"""The alert lifecycle (update, pause / resume, delete, test-send, preview, show) through the CLI and the
domain API, against real PostgreSQL, Cube.js and SMTP servers."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.cli import main
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger import alert_changes
from kpi_alerts.ledger.alert_changes import record_paused_slots, update_alert
from kpi_alerts.ledger.alert_store import create_alert, load_alert

pytestmark = pytest.mark.services

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
REVENUE = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-07"]}
    ],
}


def report(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "organization_id": 1,
        "alert_name": "Daily revenue",
        "recipients": ["finance@org1.example.com"],
        "owners": ["owner@org1.example.com"],
        "cube_query": REVENUE,
        "schedule": {
            "frequency_interval": "day",
            "schedule_hour": 9,
            "schedule_minute": 0,
            "timezone": "Europe/London",
            "attachment_type": "csv",
        },
    }
    spec.update(overrides)
    return spec


def threshold(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "organization_id": 2,
        "alert_name": "Orders above 1",
        "recipients": ["ops@org2.example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "1"},
    }
    spec.update(overrides)
    return spec


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(db: psycopg.Connection[Any]) -> list[Any]:
    return [
        db.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
        for t in ("cron_jobs", "kpi_alerts", "kpi_schedules", "kpi_thresholds", "cron_job_results")
    ]


class TestUpdate:
    def test_a_patch_changes_fields_and_recomputes_the_next_run(
        self,
        db: psycopg.Connection[Any],
        alerts_db_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        created = create_alert(db, report(), now=NOW)
        assert created.next_run_at == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)  # 09:00 London (GMT)
        patch = tmp_path / "patch.json"
        patch.write_text(
            json.dumps({"alert_name": "Revenue", "schedule": {"schedule_hour": 7}, "message": "Hi"})
        )
        code, out, err = run(capsys, "update-alert", str(created.alert_id), str(patch), "--db", alerts_db_url)
        assert (code, err) == (0, "")
        assert "alert_name" in out and "schedule.schedule_hour" in out
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.alert_name == "Revenue" and alert.message == "Hi"
        assert alert.schedule is not None and alert.schedule.schedule_hour == 7
        assert alert.attachment_type == "csv"  # untouched fields stay
        assert alert.next_run_at is not None and alert.next_run_at.astimezone(UTC).hour == 7
        events = db.execute(
            "SELECT action, actor, details FROM kpi_alert_events WHERE kpi_alert_id = %s ORDER BY id",
            (created.alert_id,),
        ).fetchall()
        assert [e["action"] for e in events] == ["created", "updated"]
        assert events[1]["actor"].startswith("cli:")

    def test_a_name_change_keeps_the_next_run(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, report(), now=NOW)
        updated = update_alert(
            db, created.alert_id, {"recipients": ["a@example.com", "b@example.com"]}, now=NOW
        )
        assert updated.changed == ("recipients",)
        assert updated.alert.next_run_at == created.next_run_at

    def test_changing_a_threshold_condition_resets_its_state(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, threshold(), now=NOW)
        db.execute(
            "UPDATE kpi_thresholds SET state = 'TRIGGERED', last_value = 5 WHERE kpi_alert_id = %s",
            (created.alert_id,),
        )
        renamed = update_alert(db, created.alert_id, {"alert_name": "Orders > 1"}, now=NOW)
        assert not renamed.state_reset and renamed.alert.threshold.state == "TRIGGERED"  # type: ignore[union-attr]
        updated = update_alert(db, created.alert_id, {"threshold": {"threshold_value": "10"}}, now=NOW)
        assert updated.state_reset
        assert updated.alert.threshold is not None
        assert (updated.alert.threshold.state, updated.alert.threshold.last_value) == ("OK", None)

    @pytest.mark.parametrize(
        ("patch", "reason"),
        [
            pytest.param({"schedule": {"schedule_hour": 24}}, "schedule_hour", id="hour-24"),
            pytest.param({"recipients": ["not an address"]}, "not an address", id="bad-recipient"),
            pytest.param({"schedule": {"timezone": "Mars/Olympus"}}, "Mars/Olympus", id="bad-timezone"),
            pytest.param(
                {"threshold": {"condition": "GREATER_THAN", "threshold_value": "1"}},
                "exactly one",
                id="both-kinds",
            ),
            pytest.param(
                {"schedule": None, "threshold": {"condition": "GREATER_THAN", "threshold_value": "1"}},
                "cannot become",
                id="kind-change",
            ),
            pytest.param({"organization_id": 2}, "organization_id cannot change", id="tenant-move"),
            pytest.param({"bogus": 1}, "bogus", id="unknown-field"),
        ],
    )
    def test_refusals_write_nothing(
        self,
        db: psycopg.Connection[Any],
        alerts_db_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        patch: dict[str, Any],
        reason: str,
    ) -> None:
        created = create_alert(db, report(), now=NOW)
        before = snapshot(db)
        file = tmp_path / "patch.json"
        file.write_text(json.dumps(patch))
        code, out, err = run(capsys, "--db", alerts_db_url, "update-alert", str(created.alert_id), str(file))
        assert code == 2 and out == ""
        assert err.startswith("error: ") and reason in err and len(err.splitlines()) == 1
        assert snapshot(db) == before

    def test_unknown_alert_and_bad_json_are_refused(
        self,
        db: psycopg.Connection[Any],
        alerts_db_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        file = tmp_path / "patch.json"
        file.write_text("{not json")
        assert run(capsys, "--db", alerts_db_url, "update-alert", "999999", str(file))[0] == 2
        file.write_text("{}")
        code, _, err = run(capsys, "--db", alerts_db_url, "update-alert", "999999", str(file))
        assert code == 2 and "alert 999999 does not exist" in err
        file.write_text("[1]")
        code, _, err = run(capsys, "--db", alerts_db_url, "update-alert", "1", str(file))
        assert code == 2 and "JSON object" in err

    def test_a_claim_in_flight_keeps_the_next_run_the_update_set(self, db: psycopg.Connection[Any]) -> None:
        from kpi_alerts.ledger.claim_terms import Claimant
        from kpi_alerts.ledger.claims import claim_slot
        from kpi_alerts.ledger.outcomes import Outcome, finish_claim

        created = create_alert(db, report(), now=NOW)
        alert = load_alert(db, created.alert_id)
        assert alert is not None
        slot = created.next_run_at
        claim = claim_slot(db, alert, logical_time=slot, now=slot, claimant=Claimant())
        assert not hasattr(claim, "reason")
        updated = update_alert(db, created.alert_id, {"schedule": {"schedule_hour": 18}}, now=slot)
        new_next = updated.alert.next_run_at
        assert new_next is not None and new_next.astimezone(UTC).hour == 18
        finish_claim(db, alert, claim, Outcome("sent"), now=slot)  # type: ignore[arg-type]
        after = load_alert(db, created.alert_id)
        assert after is not None and after.next_run_at == new_next and not after.locked


class TestPauseResume:
    def test_pause_and_resume_one_alert_without_backlog(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        created = create_alert(db, report(), now=NOW - timedelta(days=10))
        code, out, _ = run(capsys, "pause", str(created.alert_id), "--db", alerts_db_url)
        assert code == 0 and f"paused 1 alert(s): {created.alert_id}" in out
        assert "already paused" in run(capsys, "pause", str(created.alert_id), "--db", alerts_db_url)[1]
        code, out, _ = run(capsys, "resume", str(created.alert_id), "--db", alerts_db_url)
        assert code == 0 and "not sent" in out
        alert = load_alert(db, created.alert_id)
        now = datetime.now(UTC)
        assert alert is not None and not alert.master_locked
        assert alert.next_run_at is not None and now < alert.next_run_at <= now + timedelta(days=1)
        assert "already active" in run(capsys, "resume", str(created.alert_id), "--db", alerts_db_url)[1]

    def test_pause_an_organization_and_all(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        org1 = create_alert(db, report(), now=NOW).alert_id
        org2 = create_alert(db, threshold(), now=NOW).alert_id
        db.execute("INSERT INTO cron_jobs (job_name) VALUES ('someone_elses_job')")
        code, out, _ = run(capsys, "--db", alerts_db_url, "pause", "--organization", "2")
        assert code == 0 and f"paused 1 alert(s): {org2}" in out
        assert load_alert(db, org1).master_locked is False  # type: ignore[union-attr]
        code, out, _ = run(capsys, "--db", alerts_db_url, "pause", "--all")
        assert f"paused 1 alert(s): {org1}" in out
        other = db.execute(
            "SELECT master_locked FROM cron_jobs WHERE job_name = 'someone_elses_job'"
        ).fetchone()
        assert other["master_locked"] is False  # never the database's other cron jobs
        code, out, _ = run(capsys, "--db", alerts_db_url, "resume", "--all")
        assert code == 0 and f"resumed 2 alert(s): {org1}, {org2}" in out
        assert all(not load_alert(db, i).master_locked for i in (org1, org2))  # type: ignore[union-attr]

    def test_pause_needs_a_target(self, alerts_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["pause", "--db", alerts_db_url])
        assert exc.value.code == 2
        assert run(capsys, "pause", "424242", "--db", alerts_db_url)[0] == 2

    def test_a_paused_alerts_due_slot_is_recorded_as_skipped_once(self, db: psycopg.Connection[Any]) -> None:
        created = create_alert(db, report(), now=NOW)
        alert_changes.pause_alert(db, created.alert_id)
        tick = created.next_run_at + timedelta(minutes=5)
        assert record_paused_slots(db, logical_time=tick, dag_run_id="run-1") == 1
        assert record_paused_slots(db, logical_time=tick, dag_run_id="run-2") == 0
        rows = db.execute("SELECT slot, status, error FROM cron_job_results").fetchall()
        assert [(r["slot"], r["status"], r["error"]) for r in rows] == [
            (created.next_run_at, "skipped", "paused by an operator")
        ]
        alert = load_alert(db, created.alert_id)
        assert alert is not None and alert.next_run_at == created.next_run_at + timedelta(days=1)


class TestDelete:
    def test_delete_keeps_the_ledger_and_history_still_reads_it(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        created = create_alert(db, report(), now=NOW)
        alert_changes.pause_alert(db, created.alert_id)
        record_paused_slots(db, logical_time=created.next_run_at, dag_run_id="r")
        code, out, _ = run(capsys, "delete-alert", str(created.alert_id), "--db", alerts_db_url)
        assert code == 0 and "1 ledger row(s) are kept" in out
        assert load_alert(db, created.alert_id) is None
        assert db.execute("SELECT count(*) AS n FROM kpi_schedules").fetchone()["n"] == 0
        assert db.execute("SELECT count(*) AS n FROM cron_job_results").fetchone()["n"] == 1
        tomb = db.execute(
            "SELECT master_locked, next_run_at FROM cron_jobs WHERE id = %s", (created.cron_job_id,)
        )
        assert tomb.fetchone() == {"master_locked": True, "next_run_at": None}
        code, out, _ = run(capsys, "history", str(created.alert_id), "--db", alerts_db_url)
        assert code == 0 and "skipped" in out
        event = db.execute(
            "SELECT definition FROM kpi_alert_events WHERE kpi_alert_id = %s AND action = 'deleted'",
            (created.alert_id,),
        ).fetchone()
        assert event["definition"]["alert_name"] == "Daily revenue"
        assert run(capsys, "delete-alert", str(created.alert_id), "--db", alerts_db_url)[0] == 2
        assert run(capsys, "show", str(created.alert_id), "--db", alerts_db_url)[0] == 2


class TestShowAndList:
    def test_show_lists_five_runs_in_the_alerts_timezone_and_utc(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        created = create_alert(db, report(), now=NOW)
        code, out, _ = run(capsys, "show", str(created.alert_id), "--json", "--db", alerts_db_url)
        detail = json.loads(out)
        assert code == 0
        assert detail["schedule_description"] == "Every day at 09:00 (Europe/London)"
        assert [r["utc"] for r in detail["next_runs"]] == [
            (created.next_run_at + timedelta(days=d)).isoformat() for d in range(5)
        ]
        assert detail["next_runs"][0]["local"] == "2026-11-29 09:00 GMT (Sun)"
        assert detail["definition"]["schedule"]["timezone"] == "Europe/London"
        assert detail["status"] == "active" and detail["recent_results"] == []
        code, out, _ = run(capsys, "show", str(created.alert_id), "--db", alerts_db_url)
        assert (
            code == 0
            and "next runs (Europe/London / UTC)" in out
            and "Sunday 29 November 2026, 09:00 GMT" in out
        )

    def test_list_alerts_with_filters(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        a = create_alert(db, report(), now=NOW).alert_id
        b = create_alert(db, threshold(), now=NOW).alert_id
        alert_changes.pause_alert(db, b)
        out = run(capsys, "list-alerts", "--db", alerts_db_url)[1]
        assert "Daily revenue" in out and "Orders above 1" in out and "paused" in out
        out = run(capsys, "list-alerts", "--paused", "--db", alerts_db_url)[1]
        assert str(b) in out and "Daily revenue" not in out
        out = run(capsys, "list-alerts", "--type", "schedule", "--db", alerts_db_url)[1]
        assert out.split()[0] == str(a) and "Orders above 1" not in out


class TestTrySends:
    def test_preview_writes_the_eml_and_attachment_and_sends_nothing(
        self,
        db: psycopg.Connection[Any],
        alerts_db_url: str,
        airflow_connections: dict[str, str],
        airflow_db: None,
        mailbox: MailCatcher,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        created = create_alert(db, report(), now=NOW)
        before = snapshot(db)
        code, _, err = run(
            capsys, "preview", str(created.alert_id), "--out", str(tmp_path / "out"), "--db", alerts_db_url
        )
        assert (code, err) == (0, "")
        emls = list((tmp_path / "out").glob("*.eml"))
        csvs = list((tmp_path / "out").glob("*.csv"))
        assert len(emls) == 1 and len(csvs) == 1
        message = email.message_from_bytes(emls[0].read_bytes(), policy=policy.default)
        assert str(message["Subject"]).startswith("[TEST] ")
        assert "orders" in csvs[0].read_text().lower() or csvs[0].read_text().count("\n") > 1
        assert mailbox.messages() == []
        assert snapshot(db) == before

    def test_test_send_goes_to_the_address_only_and_leaves_no_ledger_row(
        self,
        db: psycopg.Connection[Any],
        alerts_db_url: str,
        airflow_connections: dict[str, str],
        airflow_db: None,
        mailbox: MailCatcher,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        created = create_alert(db, threshold(), now=NOW)
        before = snapshot(db)
        code, out, err = run(
            capsys, "test-send", str(created.alert_id), "--to", "me@example.com", "--db", alerts_db_url
        )
        assert (code, err) == (0, "")
        assert "Subject: [TEST] " in out and "threshold" in out
        messages = mailbox.messages()
        assert len(messages) == 1
        assert str(messages[0]["To"]) == "me@example.com" and str(messages[0]["Subject"]).startswith(
            "[TEST] "
        )
        assert "ops@org2.example.com" not in messages[0].as_string()
        assert snapshot(db) == before  # no claim, no ledger slot, no state change
        event = db.execute(
            "SELECT details FROM kpi_alert_events WHERE kpi_alert_id = %s AND action = 'test_send'",
            (created.alert_id,),
        ).fetchone()
        assert event["details"]["to"] == "me@example.com"

    def test_test_send_refuses_a_bad_address(
        self,
        db: psycopg.Connection[Any],
        alerts_db_url: str,
        airflow_db: None,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        created = create_alert(db, threshold(), now=NOW)
        code, _, err = run(
            capsys, "test-send", str(created.alert_id), "--to", "a@b.com, c@d.com", "--db", alerts_db_url
        )
        assert code == 2 and err.startswith("error: ")


def test_update_refuses_a_non_object() -> None:
    with pytest.raises(AlertValidationError):
        update_alert(None, 1, [1])  # type: ignore[arg-type]
