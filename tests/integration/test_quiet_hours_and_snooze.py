"""Quiet hours and snooze (issue 26, part 4) against real PostgreSQL, Cube.js and SMTP, and the real DAG
(`dag.test()`) ticking on either side of a quiet time's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.cli import main
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_changes import snooze_alert, update_alert
from kpi_alerts.ledger.alert_store import create_alert, load_alert, set_organization_quiet_hours
from kpi_alerts.scheduling.quiet_hours import QuietHours
from tests.factories import report_spec

pytestmark = [pytest.mark.slow, pytest.mark.services]

FIRST_WEEK_OF_NOVEMBER = {
    "measures": ["orders.total_amount", "orders.count"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-07"]}
    ],
}
DAY = datetime(2026, 12, 8, tzinfo=UTC)  # a Tuesday


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def ledger(db: psycopg.Connection[Any], alert_id: int) -> list[tuple[str, str, Any]]:
    rows = db.execute(
        "SELECT slot, status, details FROM cron_job_results WHERE kpi_alert_id = %s ORDER BY slot",
        (alert_id,),
    ).fetchall()
    return [(r["slot"].astimezone(UTC).strftime("%H:%M"), r["status"], r["details"]) for r in rows]


def next_run(db: psycopg.Connection[Any], alert_id: int) -> datetime:
    alert = load_alert(db, alert_id)
    assert alert is not None and alert.next_run_at is not None
    return alert.next_run_at


def breach_alert(**extra: Any) -> dict[str, Any]:
    return {
        "organization_id": 2,
        "alert_name": "Org 2 orders above 0",
        "recipients": ["ops@org2.example.com"],
        "cube_query": FIRST_WEEK_OF_NOVEMBER,
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "0"},
        **extra,
    }


@pytest.fixture
def org2_quiet_hours_removed(db: psycopg.Connection[Any]) -> Any:
    yield
    set_organization_quiet_hours(db, 2, None)


def test_quiet_hours_across_their_end_under_the_real_dag(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    org2_quiet_hours_removed: None,
) -> None:
    """Ticks at 06:00 (quiet) and 07:00 (their end): the breach found at 06:00 is held, not sent, and
    notified at 07:00 because it still holds; a report due at 06:00 inside the organization's quiet hours
    (set after its slot was planned) waits and is sent at 07:00, once."""
    threshold = create_alert(
        db,
        breach_alert(quiet_hours={"from": "22:00", "to": "07:00"}, alert_name="Held breach"),
        now=at(6, 0, 30),
    )
    assert threshold.next_run_at == at(6)
    report = create_alert(
        db,
        report_spec(
            "Report at 06:00",
            org=2,
            recipients=["cfo@org2.example.com"],
            hour=6,
            minute=0,
            cube_query=FIRST_WEEK_OF_NOVEMBER,
        ),
        now=at(5, 30),
    )
    assert report.next_run_at == at(6)
    set_organization_quiet_hours(db, 2, QuietHours("Europe/Lisbon", 5 * 60 + 30, 7 * 60))  # UTC+0 in winter

    first = kpi_dag.test(logical_date=at(6))
    assert str(first.state) == "success"
    assert mailbox.messages() == []
    [(slot, status, details)] = ledger(db, threshold.alert_id)
    assert (slot, status) == ("06:00", "suppressed")
    assert details["quiet_hours"] == {"until": at(7).isoformat(), "held": "triggered"}
    state = db.execute("SELECT state FROM kpi_thresholds WHERE kpi_alert_id = %s", (threshold.alert_id,))
    assert state.fetchone()["state"] == "OK"  # the state waits for the quiet hours' end
    [(slot, status, details)] = ledger(db, report.alert_id)
    assert (slot, status, details["reason"]) == ("06:00", "skipped", "quiet_hours")
    assert next_run(db, report.alert_id) == at(7)

    second = kpi_dag.test(logical_date=at(7))
    assert str(second.state) == "success"
    assert [s[:2] for s in ledger(db, threshold.alert_id)] == [("06:00", "suppressed"), ("07:00", "sent")]
    assert [s[:2] for s in ledger(db, report.alert_id)] == [("06:00", "skipped"), ("07:00", "sent")]
    assert sorted(m["To"] for m in mailbox.messages()) == ["cfo@org2.example.com", "ops@org2.example.com"]
    # planned from now on with the organization's quiet hours: tomorrow's 06:00 is sent at 07:00
    assert next_run(db, report.alert_id) == at(24 + 7)


def test_a_snooze_that_expires_mid_tick(
    kpi_dag: Any, db: psycopg.Connection[Any], mailbox: MailCatcher, airflow_connections: dict[str, str]
) -> None:
    """A report due at 09:00 and snoozed until 09:02 (by plain SQL, after its slot was planned) is not sent
    by the 09:05 tick although the snooze is over by then: it resumes at its next slot, no backlog. A
    threshold checked every 5 minutes snoozed until 09:02:30 is checked again by that same tick."""
    report = create_alert(
        db,
        report_spec("Snoozed report", org=2, hour=9, minute=0, cube_query=FIRST_WEEK_OF_NOVEMBER),
        now=at(8),
    )
    db.execute("UPDATE kpi_alerts SET snoozed_until = %s WHERE id = %s", (at(9, 2), report.alert_id))
    checked = create_alert(
        db,
        breach_alert(
            threshold={"condition": "GREATER_THAN", "threshold_value": "0", "check_every_minutes": 5}
        ),
        now=at(8, 40),
    )
    change = snooze_alert(db, checked.alert_id, at(9, 2, 30), now=at(8, 41))
    assert change.next_run_at == at(9, 5)

    run = kpi_dag.test(logical_date=at(9, 5))
    assert str(run.state) == "success"
    [(slot, status, details)] = ledger(db, report.alert_id)
    assert (slot, status, details) == (
        "09:00",
        "skipped",
        {"reason": "snoozed", "until": at(9, 2).isoformat()},
    )
    assert next_run(db, report.alert_id) == at(24 + 9)
    assert [s[:2] for s in ledger(db, checked.alert_id)] == [("09:05", "sent")]
    assert [m["To"] for m in mailbox.messages()] == ["ops@org2.example.com"]


def test_quiet_hours_are_stored_shown_changed_and_refused(
    db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = report_spec("Early report", hour=6, minute=0, tz="Europe/Berlin")
    created = create_alert(db, {**spec, "quiet_hours": {"from": "22:00", "to": "07:00"}}, now=DAY)
    assert created.next_run_at == at(6)  # 06:00 in Berlin waits for 07:00 (CET)
    alert = load_alert(db, created.alert_id)
    assert alert is not None and alert.quiet_hours == QuietHours("Europe/Berlin", 1320, 420)

    code = main(["show", str(created.alert_id), "--db", alerts_db_url])
    out = capsys.readouterr().out
    assert code == 0
    assert "quiet      Quiet 22:00-07:00 (the next day) (Europe/Berlin) (alert)" in out
    assert '"quiet_hours": {' in out and '"reports": "delay"' in out

    code = main(["snooze", str(created.alert_id), "--until", "2026-12-10T12:00+01:00", "--db", alerts_db_url])
    out = capsys.readouterr().out
    assert code == 0 and "next run 2026-12-11T06:00:00+00:00" in out
    assert main(["snooze", str(created.alert_id), "--off", "--db", alerts_db_url]) == 0
    capsys.readouterr()

    changed = update_alert(db, created.alert_id, {"quiet_hours": None}, now=DAY)
    assert "quiet_hours" in changed.changed and changed.alert.quiet_hours is None
    assert next_run(db, created.alert_id) == at(5)  # 06:00 CET again

    with pytest.raises(AlertValidationError, match="never fires outside quiet hours"):
        create_alert(
            db, {**spec, "quiet_hours": {"from": "05:00", "to": "08:00", "reports": "skip"}}, now=DAY
        )
    with pytest.raises(AlertValidationError, match=r"quiet_hours\.reports is for scheduled reports"):
        create_alert(
            db, breach_alert(quiet_hours={"from": "22:00", "to": "07:00", "reports": "skip"}), now=DAY
        )
    with pytest.raises(AlertValidationError, match="never end"):
        create_alert(db, {**spec, "quiet_hours": {"from": "07:00", "to": "07:00"}}, now=DAY)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE kpi_alerts SET quiet_from_minute = 600 WHERE id = %s", (created.alert_id,))
