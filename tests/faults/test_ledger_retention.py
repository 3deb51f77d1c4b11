"""Fault: a run whose logical time is far from the wall clock prunes the ledger (issue 9, item 3).

``airflow dags test kpi_alerts 2027-03-15T09:05:00+00:00`` used to delete every finished row created
before *logical time* - 90 days — on a machine whose clock says 2026, that is every row, including
the one the run had just written. Retention now compares the database's wall clock with
``created_at`` (also the database's wall clock), and never touches the current run's rows or an
unfinished one. Real DAG run (``dag.test()``), real Postgres, Cube.js and SMTP.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.ledger.alert_store import create_alert
from tests.factories import ledger_row, report_spec
from tests.fault_table import FaultTable, deliveries, duplicates

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

FAR_AHEAD = datetime(2027, 3, 15, 9, 5, tzinfo=UTC)


def test_a_run_far_ahead_of_the_wall_clock_keeps_its_own_rows_and_prunes_only_old_ones(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    fault_table: FaultTable,
) -> None:
    created = create_alert(
        db, report_spec("Quarterly numbers", hour=9, minute=5), now=FAR_AHEAD - timedelta(minutes=4)
    )
    # History by the database's wall clock: 91 days old (pruned), 89 days old (kept), and a claim
    # abandoned 100 days ago (unfinished: kept, whatever its age).
    for days, status in [(91, "sent"), (89, "sent"), (100, "retrying")]:
        ledger_row(
            db, created.cron_job_id, status=status, age=timedelta(days=days), dag_run_id="an earlier run"
        )

    dag_run = kpi_dag.test(logical_date=FAR_AHEAD)

    rows = db.execute(
        "SELECT status, dag_run_id, round(extract(epoch FROM now() - created_at) / 86400) AS age_days "
        "FROM cron_job_results ORDER BY created_at"
    ).fetchall()
    this_run = [r for r in rows if r["dag_run_id"] == dag_run.run_id]
    received = mailbox.messages()
    fault_table.record(
        fault="run at a logical time 3 months ahead of the wall clock prunes the ledger",
        alerts=1,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=1 - len(this_run),
        run_state=str(dag_run.state),
    )
    assert [(r["status"], r["age_days"]) for r in rows] == [("retrying", 100), ("sent", 89), ("sent", 0)]
    assert [r["status"] for r in this_run] == ["sent"]
    assert [m["To"] for m in received] == ["cfo@org1.example.com"]
    assert str(dag_run.state) == "success"


def test_prune_results_from_the_cli_uses_the_same_rule(
    db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kpi_alerts.cli import main

    job = db.execute(
        "INSERT INTO cron_jobs (job_name) VALUES ('kpi_alert_schedule_1') RETURNING id"
    ).fetchone()
    for days, status in [(40, "sent"), (40, "sending"), (20, "failed")]:
        ledger_row(db, job["id"], status=status, age=timedelta(days=days))
    assert main(["--db", alerts_db_url, "prune-results", "--days", "30"]) == 0
    assert "deleted 1 ledger row(s)" in capsys.readouterr().out
    left = db.execute("SELECT status FROM cron_job_results ORDER BY status").fetchall()
    assert [r["status"] for r in left] == ["failed", "sending"]
    with pytest.raises(SystemExit):
        main(["--db", alerts_db_url, "prune-results", "--days", "0"])
