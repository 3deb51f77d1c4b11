"""Fault: timezones PostgreSQL accepts but Cube.js refuses (issue 9, item 6).

``localtime``, ``Factory``, ``posix/…``, ``right/…`` and ``posixrules`` pass PostgreSQL's check and
Python's ``ZoneInfo``, and Cube answered them at run time with ``500 Unknown timezone``. One rule
(:mod:`kpi_alerts.scheduling.timezones`) now refuses them at creation and before each run, with a
clear permanent reason. Real PostgreSQL, Cube.js (its own moment-timezone list) and SMTP, real DAG run.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import psycopg
import pytest

from devstack.cube import CUBE_DIR
from devstack.mail import MailCatcher
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.scheduling.timezones import known_timezones
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.services]

REFUSED_BY_CUBE = ["localtime", "Factory", "posixrules", "posix/Europe/Paris", "right/UTC", "utc"]


def cube_timezone_names() -> set[str]:
    """The names the Cube server's own timezone library (moment-timezone) knows."""
    script = 'console.log(JSON.stringify(require("moment-timezone").tz.names()))'
    out = subprocess.run(["node", "-e", script], cwd=CUBE_DIR, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_every_accepted_timezone_is_one_cube_knows() -> None:
    cube = cube_timezone_names()
    assert known_timezones() <= cube, sorted(known_timezones() - cube)
    assert not set(REFUSED_BY_CUBE) & cube
    assert {"UTC", "America/Los_Angeles", "Europe/Paris", "Asia/Kolkata"} <= known_timezones()


@pytest.mark.parametrize("tz", REFUSED_BY_CUBE)
def test_creation_refuses_them(db: psycopg.Connection[Any], tz: str) -> None:
    report = {
        "organization_id": 1,
        "alert_name": "Report",
        "recipients": ["r@org1.example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "schedule": {"frequency_interval": "day", "timezone": tz},
    }
    threshold = {
        **report,
        "schedule": None,
        "threshold": {"condition": ">", "threshold_value": 1, "timezone": tz},
    }
    for spec in (report, threshold):
        with pytest.raises(AlertValidationError, match="unknown timezone"):
            create_alert(db, spec)
    assert db.execute("SELECT count(*) AS n FROM kpi_alerts").fetchone()["n"] == 0


@pytest.mark.slow
def test_a_stored_factory_zone_fails_its_slot_at_once_and_the_others_are_sent(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    fault_table: FaultTable,
) -> None:
    good = due_report(db, "Good", ["good@org1.example.com"])
    bad = due_report(db, "Factory zone", ["bad@org1.example.com"])
    db.execute("UPDATE kpi_schedules SET timezone = 'Factory' WHERE kpi_alert_id = %s", [bad])  # plain SQL

    dag_run = kpi_dag.test(logical_date=LOGICAL_TIME)

    rows = {r["kpi_alert_id"]: r for r in ledger(db)}
    received = mailbox.messages()
    fault_table.record(
        fault="stored timezone 'Factory' (PostgreSQL accepts, Cube refuses)",
        alerts=2,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=sum(1 for a in (good, bad) if a not in rows),
        run_state=str(dag_run.state),
    )
    assert rows[good]["status"] == "sent" and list(deliveries(received)) == [
        ("good@org1.example.com", received[0]["Subject"])
    ]
    assert rows[bad]["status"] == "failed" and "unknown timezone 'Factory'" in rows[bad]["error"]
    assert rows[bad]["attempts"] == 1  # permanent: no Airflow retry, no Cube request
    assert str(dag_run.state) == "failed"
