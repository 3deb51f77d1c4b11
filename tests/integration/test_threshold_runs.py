"""Threshold alerts over several DAG runs while the data changes: exactly the expected messages.

The real DAG runs at consecutive hourly logical times against the real Cube server; rows for a
throw-away organization are added and removed in the analytics database between runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.ledger.alert_store import create_alert
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.services]

ORG = 7001
START = datetime(2026, 12, 7, 10, 5, tzinfo=UTC)
OCTOBER_ORDERS = {
    "measures": ["orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": ["2026-10-01", "2026-10-31"]}],
}


@pytest.fixture
def orders(pg: Any, cube_server: CubeServer) -> Iterator[Any]:
    """Sets how many October orders organization 7001 has (and cleans them up), then waits until Cube
    answers with the new count (it re-checks its refresh key at most once a second)."""
    cube = CubeClient(cube_server.url, api_secret=cube_server.api_secret)

    def cube_count() -> Decimal:
        rows = cube.load(OCTOBER_ORDERS, security_context={"organization_id": ORG}, timezone="UTC").rows
        return Decimal(rows[0]["orders.count"] or 0) if rows else Decimal(0)

    with cube, psycopg.connect(pg.url("analytics"), autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))

        def set_count(n: int) -> None:
            conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))
            for i in range(n):
                conn.execute(
                    "INSERT INTO orders VALUES (%s, %s, '2026-10-05T10:00Z', 'completed', 'books', 10)",
                    (ORG * 1000 + i, ORG),
                )
            wait_until(lambda: cube_count() == n, timeout=30, interval=0.2, what=f"Cube to count {n} orders")

        yield set_count
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))


def test_notify_on_breach_rearm_and_recovery_only(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    orders: Any,
) -> None:
    created = create_alert(
        db,
        {
            "organization_id": ORG,
            "alert_name": "October orders above 2",
            "recipients": ["ops@org7001.example.com"],
            "cube_query": OCTOBER_ORDERS,
            "threshold": {
                "condition": "GREATER_THAN",
                "threshold_value": "2",
                "timezone": "UTC",
                "rearm_minutes": 120,
                "notify_on_recovery": True,
            },
        },
        now=START - timedelta(minutes=1),
    )
    counts_per_run = [1, 3, 3, 4, 1, 1]  # OK, breach, still (quiet), still (re-armed), recovered, OK
    subjects: list[list[str]] = []
    for hour, count in enumerate(counts_per_run):
        orders(count)
        mailbox.clear()
        run = kpi_dag.test(logical_date=START + timedelta(hours=hour))
        assert str(run.state) == "success"
        subjects.append([str(m["Subject"]) for m in mailbox.messages()])

    assert [len(s) for s in subjects] == [0, 1, 0, 1, 1, 0]
    assert "above" in subjects[1][0].lower() or ">" in subjects[1][0]
    assert subjects[4][0].startswith("Resolved")
    rows = db.execute("SELECT status, value FROM cron_job_results ORDER BY slot").fetchall()
    assert [r["status"] for r in rows] == [
        "not_triggered",
        "sent",
        "suppressed",
        "sent",
        "sent",
        "not_triggered",
    ]
    assert [int(r["value"]) for r in rows] == counts_per_run
    state = db.execute("SELECT * FROM kpi_thresholds WHERE kpi_alert_id = %s", (created.alert_id,)).fetchone()
    assert state["state"] == "OK" and int(state["last_value"]) == 1
    assert state["last_notified_at"] == START + timedelta(hours=4) - timedelta(minutes=5)  # the recovery slot
