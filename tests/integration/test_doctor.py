"""``python -m kpi_alerts doctor`` against real servers: healthy says so and exits 0; each thing that
needs a person (a claim past its lease, an alert overdue beyond the misfire window, failures in the
last 24 hours, pending migrations, an unreachable server) is named and exits 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack import free_port
from devstack.postgres import PostgresServer, drop_database, ensure_database
from kpi_alerts.cli import main
from kpi_alerts.ledger.alert_store import create_alert

pytestmark = pytest.mark.services

REPORT = {
    "organization_id": 1,
    "alert_name": "Doctor's report",
    "recipients": ["doctor@org1.example.com"],
    "cube_query": {"measures": ["orders.count"]},
    "schedule": {
        "frequency_interval": "day",
        "schedule_hour": 9,
        "schedule_minute": 0,
        "timezone": "UTC",
        "attachment_type": "csv",
    },
}


def doctor(capsys: pytest.CaptureFixture[str], db_url: str) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "--json", "--db", db_url])
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    return code, {c["name"]: c for c in report["checks"]}


def test_a_healthy_deployment_exits_0_and_says_so(
    capsys: pytest.CaptureFixture[str],
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    airflow_connections: Any,
) -> None:
    create_alert(db, REPORT, now=datetime.now(UTC))  # next run tomorrow at 09:00: not overdue
    code = main(["doctor", "--db", alerts_db_url])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("database", "cube", "smtp", "migrations", "claims past lease", "overdue alerts", "failures"):
        assert f"ok    {name}" in out
    assert "needs a person: no" in out
    assert "postgresql://***@127.0.0.1" in out  # the user part of the URL is redacted


def test_stale_claims_overdue_alerts_and_recent_failures_need_a_person(
    capsys: pytest.CaptureFixture[str],
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    airflow_connections: Any,
) -> None:
    now = datetime.now(UTC)
    stale = create_alert(db, {**REPORT, "alert_name": "Stale"}, now=now)
    overdue = create_alert(db, {**REPORT, "alert_name": "Overdue"}, now=now)
    failing = [create_alert(db, {**REPORT, "alert_name": f"Failing {n}"}, now=now) for n in range(3)]
    slot = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    db.execute(
        "INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at,"
        " claimed_by, lease_expires_at, dag_run_id, task_instance) VALUES (%s, %s, 1, %s, 'claimed', %s,"
        " 'worker-9:4242', %s, 'manual__x', 'process_alert[3]')",
        (stale.cron_job_id, stale.alert_id, slot, now - timedelta(minutes=40), now - timedelta(minutes=10)),
    )
    db.execute(
        "UPDATE cron_jobs SET next_run_at = %s WHERE id = %s", (now - timedelta(hours=3), overdue.cron_job_id)
    )
    for n, alert in enumerate(failing):
        status, error = (
            ("failed", f"Cube answered 500 for alert {alert.alert_id}\ndetails")
            if n < 2
            else ("delivery_unknown", "worker vm:77 (try 1) stopped during SMTP delivery; not resent")
        )
        db.execute(
            "INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, error,"
            " started_at, finished_at) VALUES (%s, %s, 1, %s, %s, %s, %s, %s)",
            (
                alert.cron_job_id,
                alert.alert_id,
                slot,
                status,
                error,
                now - timedelta(hours=2),
                now - timedelta(hours=2),
            ),
        )

    code, checks = doctor(capsys, alerts_db_url)

    assert code == 1
    assert checks["database"]["ok"] and checks["cube"]["ok"] and checks["smtp"]["ok"]
    assert checks["migrations"]["ok"]
    claims = checks["claims past lease"]
    assert not claims["ok"] and [i["alert"] for i in claims["items"]] == [stale.alert_id]
    assert claims["items"][0]["claimed_by"] == "worker-9:4242"
    late = checks["overdue alerts"]
    assert not late["ok"] and [i["alert"] for i in late["items"]] == [overdue.alert_id]
    failures = checks["failures (24 h)"]
    assert not failures["ok"]
    by_reason = {(i["status"], i["reason"]): i["count"] for i in failures["items"]}
    assert by_reason == {
        ("failed", "Cube answered N for alert N"): 2,  # one reason, however many alerts
        ("delivery_unknown", "worker vm:N (try N) stopped during SMTP delivery; not resent"): 1,
    }


def test_pending_migrations_need_a_person(
    capsys: pytest.CaptureFixture[str], pg: PostgresServer, airflow_connections: Any
) -> None:
    url = ensure_database(pg, "kpi_alerts_doctor_empty", recreate=True)
    try:
        code, checks = doctor(capsys, url)
    finally:
        drop_database(pg, "kpi_alerts_doctor_empty")
    assert code == 1
    assert checks["database"]["ok"]
    assert not checks["migrations"]["ok"] and checks["migrations"]["items"]


def test_unreachable_servers_are_named_and_the_database_checks_are_not_guessed(
    capsys: pytest.CaptureFixture[str],
    alerts_db_url: str,
    airflow_connections: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": closed,
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 3, "retry_limit": 0},
            }
        ),
    )
    code, checks = doctor(capsys, alerts_db_url)
    assert code == 1 and not checks["smtp"]["ok"] and checks["database"]["ok"]

    code, checks = doctor(capsys, f"postgresql://kpi:s3cret@127.0.0.1:{closed}/kpi_alerts")
    assert code == 1
    assert not checks["database"]["ok"] and "s3cret" not in checks["database"]["detail"]
    assert checks["migrations"]["detail"] == "not checked: the database is unreachable"
