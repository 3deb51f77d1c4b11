"""Fault: one alert row written by plain SQL that no code should recurse into (issue 9, item 1).

Valid ``jsonb`` nested 3,000 levels deep in a ``cube_query`` (or a gate of 3,000 nested ``not``) used to
make ``find_due_alerts`` raise ``RecursionError`` on every try of every tick — the driver decoded the
column for the whole listing — so no other alert was ever processed, and ``list-alerts`` crashed the
same way. Now every per-row step isolates its row: the JSON columns are read as text and decoded per
row with a depth guard, a bad row's slot is recorded ``failed`` with a readable reason (and the alert
moves on to its next slot, so it fails once per slot, not on every tick), the other alerts are sent,
and the run is not green. Real DAG run (``dag.test()``), real PostgreSQL, Cube.js and SMTP.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.cli import main
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

DEEP = 3_000
DEEP_QUERY = (
    '{"measures": ["orders.count"], "filters": ' + "[" * DEEP + "]" * DEEP + "}"
)  # valid jsonb, 3,000 levels
DEEP_GATE = '{"not": ' * DEEP + '{"measure": "orders.count", "op": ">", "value": 1}' + "}" * DEEP

PLAIN_SQL_ALERT = """
WITH job AS (
    INSERT INTO cron_jobs (job_name, locked, master_locked, next_run_at)
    VALUES (%(name)s, false, false, NULL) RETURNING id
), alert AS (
    INSERT INTO kpi_alerts (cron_job_id, organization_id, alert_type, alert_name, recipients, is_active,
                            cube_query)
    SELECT id, 1, 'schedule', %(name)s, ARRAY[%(rcpt)s], true, %(query)s::jsonb FROM job
    RETURNING id
)
INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_hour, schedule_minute, timezone,
                           gating_condition, attachment_type)
SELECT id, 'day', %(hour)s, %(minute)s, 'UTC', %(gate)s::jsonb, 'csv' FROM alert
RETURNING kpi_alert_id
"""


def plain_sql_alert(db: psycopg.Connection[Any], name: str, *, query: str, gate: str | None = None) -> int:
    row = db.execute(
        PLAIN_SQL_ALERT,
        {
            "name": name,
            "rcpt": f"{name.lower().replace(' ', '-')}@org1.example.com",
            "query": query,
            "gate": gate,
            "hour": LOGICAL_TIME.hour,
            "minute": LOGICAL_TIME.minute,
        },
    ).fetchone()
    assert row is not None
    return int(row["kpi_alert_id"])


def test_a_row_nested_3000_deep_fails_alone_and_the_others_are_sent(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    fault_table: FaultTable,
) -> None:
    deep_query = plain_sql_alert(db, "Deep query", query=DEEP_QUERY)
    deep_gate = plain_sql_alert(db, "Deep gate", query='{"measures": ["orders.count"]}', gate=DEEP_GATE)
    good = [due_report(db, f"Report {n}", [f"r{n}@org1.example.com"]) for n in range(3)]
    plain_good = plain_sql_alert(db, "Plain good", query='{"measures": ["orders.count"]}')

    dag_run = kpi_dag.test(logical_date=LOGICAL_TIME)

    rows = {r["kpi_alert_id"]: r for r in ledger(db)}
    received = mailbox.messages()
    fault_table.record(
        fault="alert row with jsonb nested 3,000 deep (query, gate)",
        alerts=6,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=sum(1 for a in [deep_query, deep_gate, *good, plain_good] if a not in rows),
        run_state=str(dag_run.state),
    )
    assert sorted(deliveries(received).values()) == [1, 1, 1, 1]  # the four sound alerts, once each
    assert [rows[a]["status"] for a in [*good, plain_good]] == ["sent"] * 4
    for bad in (deep_query, deep_gate):
        assert rows[bad]["status"] == "failed"
        assert "nested too deeply" in rows[bad]["error"]
        assert rows[bad]["dag_run_id"] == dag_run.run_id
    parked = db.execute(
        "SELECT min(cj.next_run_at) AS t FROM cron_jobs cj JOIN kpi_alerts ka ON ka.cron_job_id = cj.id "
        "WHERE ka.id = ANY(%(ids)s)",
        {"ids": [deep_query, deep_gate]},
    ).fetchone()
    next_slot = LOGICAL_TIME + timedelta(hours=23)
    assert parked is not None and parked["t"] >= next_slot  # its next slot, not the next tick
    assert str(dag_run.state) == "failed"  # a failed slot: the run is not green

    capsys.readouterr()
    assert main(["list-alerts", "--db", alerts_db_url]) == 0
    listing = capsys.readouterr().out
    assert listing.count("cannot run: cube_query is nested too deeply") == 1
    assert listing.count("cannot run: gating_condition is nested too deeply") == 1
    assert main(["show", str(deep_gate), "--db", alerts_db_url]) == 0


def test_a_row_no_step_can_read_is_recorded_once_and_parked_for_a_day(db: psycopg.Connection[Any]) -> None:
    from kpi_alerts.ledger.due_alerts import UNUSABLE_RECHECK, park_unusable_alert

    alert_id = due_report(db, "Unreadable", ["r@org1.example.com"])
    job = db.execute("SELECT cron_job_id FROM kpi_alerts WHERE id = %s", [alert_id]).fetchone()
    assert job is not None
    kwargs: dict[str, Any] = {
        "alert_id": alert_id,
        "cron_job_id": job["cron_job_id"],
        "reason": "TypeError: " + "x" * 5_000,
        "logical_time": LOGICAL_TIME,
        "now": LOGICAL_TIME,
        "dag_run_id": "run 1",
    }
    assert park_unusable_alert(db, **kwargs) is True
    (row,) = ledger(db)
    assert row["status"] == "failed" and row["slot"] == LOGICAL_TIME and row["dag_run_id"] == "run 1"
    assert row["error"].startswith("alert could not be read: TypeError") and len(row["error"]) < 600
    parked = db.execute("SELECT next_run_at FROM cron_jobs WHERE id = %s", [job["cron_job_id"]]).fetchone()
    assert parked is not None and parked["next_run_at"] == LOGICAL_TIME + UNUSABLE_RECHECK
