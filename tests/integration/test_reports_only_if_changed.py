"""Reports only if changed: a scheduled report skips a slot whose data equals the last report sent,
through the real pipeline (real Cube, SMTP and ledger) while the data changes between slots."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.kpi_data import Column, KpiData
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import RunSettings, process_alert
from kpi_alerts.pipeline.trial import preview
from tests.polling import wait_until

pytestmark = pytest.mark.services

ORG = 7227
FIRST = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
QUERY = {
    "measures": ["orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": ["2026-10-01", "2026-10-31"]}],
}
IDS = itertools.count(1)


@pytest.fixture
def orders(pg: Any, cube_server: CubeServer) -> Iterator[Any]:
    """Sets organization 7227's October order count (fresh ids each time, so Cube's refresh key moves)."""
    cube = CubeClient(cube_server.url, api_secret=cube_server.api_secret)

    def cube_count() -> int:
        rows = cube.load(QUERY, security_context={"organization_id": ORG}, timezone="UTC").rows
        return int(rows[0]["orders.count"] or 0) if rows else 0

    with cube, psycopg.connect(pg.url("analytics"), autocommit=True) as conn:

        def set_count(n: int) -> None:
            conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))
            for _ in range(n):
                conn.execute(
                    "INSERT INTO orders VALUES (%s, %s, '2026-10-05T10:00Z', 'completed', 'books', 10)",
                    (ORG * 10_000 + next(IDS), ORG),
                )
            wait_until(lambda: cube_count() == n, timeout=30, interval=0.2, what=f"Cube to count {n} orders")

        yield set_count
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))


def report(db: psycopg.Connection[Any], *, only_if_changed: bool = True) -> int:
    spec = {
        "organization_id": ORG,
        "alert_name": "October orders",
        "recipients": ["ops@org7227.example.com"],
        "cube_query": QUERY,
        "schedule": {
            "frequency_interval": "day",
            "schedule_hour": 17,
            "timezone": "UTC",
            "attachment_type": "csv",
            "only_if_changed": only_if_changed,
        },
    }
    return create_alert(db, spec, now=FIRST - timedelta(minutes=1)).alert_id


def settings(day: int) -> RunSettings:
    return RunSettings(
        logical_time=FIRST + timedelta(days=day, minutes=5),
        final_attempt=True,
        claimant=Claimant(dag_run_id=f"changed-{day}", try_number=1),
    )


@pytest.mark.usefixtures("airflow_connections")
def test_unchanged_data_is_skipped_with_the_reason(
    db: psycopg.Connection[Any], mailbox: MailCatcher, orders: Any, cube_server: CubeServer
) -> None:
    alert_id = report(db)
    counts = [3, 3, 4, 4, 3]  # sent, same, changed, same, changed back (differs from the last sent: 4)
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        runs = []
        for day, count in enumerate(counts):
            orders(count)
            mailbox.clear()
            run = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings(day))
            runs.append((run.status, len(mailbox.messages())))

    assert runs == [("sent", 1), ("skipped", 0), ("sent", 1), ("skipped", 0), ("sent", 1)]
    rows = db.execute(
        "SELECT slot, status, error, details FROM cron_job_results WHERE kpi_alert_id = %s ORDER BY slot",
        (alert_id,),
    ).fetchall()
    assert rows[1]["error"] == (
        f"skipped: the data equals the report sent for {FIRST.isoformat()} (only if changed)"
    )
    assert rows[3]["error"] == (
        f"skipped: the data equals the report sent for {(FIRST + timedelta(days=2)).isoformat()} "
        "(only if changed)"
    )
    assert rows[0]["details"]["data_digest"] == rows[1]["details"]["data_digest"]
    assert rows[2]["details"]["data_digest"] != rows[0]["details"]["data_digest"]


@pytest.mark.usefixtures("airflow_connections")
def test_without_the_option_every_slot_is_sent(
    db: psycopg.Connection[Any], mailbox: MailCatcher, orders: Any, cube_server: CubeServer
) -> None:
    alert_id = report(db, only_if_changed=False)
    orders(2)
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        statuses = [
            process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings(day)).status
            for day in range(2)
        ]
    assert statuses == ["sent", "sent"]


@pytest.mark.usefixtures("airflow_connections")
def test_a_preview_says_a_run_would_skip_it(
    db: psycopg.Connection[Any], orders: Any, cube_server: CubeServer, tmp_path: Any
) -> None:
    alert_id = report(db)
    orders(5)
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings(0))
        files = preview(db, alert_id, tmp_path, source=cube, settings=settings(1))
        assert files.verdict == (
            f"skipped: the data equals the report sent for {FIRST.isoformat()} (only if changed) "
            "— a run would not send it now"
        )
        orders(6)
        assert preview(db, alert_id, tmp_path, source=cube, settings=settings(1)).verdict == (
            "a run would send this report"
        )


def test_digest_is_of_the_values_not_their_spelling() -> None:
    from decimal import Decimal

    column = (Column("orders.count", "Orders", "measure", "count"),)

    def data(*values: str) -> KpiData:
        return KpiData(column, tuple({"orders.count": Decimal(v)} for v in values), "UTC")

    assert data("10", "2").digest() == data("10.00", "2.0").digest()
    assert data("10", "2").digest() != data("10", "3").digest()
    assert data("10", "2").digest() != data("2", "10").digest()  # row order is part of the report


def test_show_describes_the_option(db: psycopg.Connection[Any]) -> None:
    from kpi_alerts.ledger.alert_views import alert_detail

    detail = alert_detail(db, report(db), now=FIRST)
    assert detail["schedule_description"].endswith("; sent only if the data changed since the last report")
    assert detail["definition"]["schedule"]["only_if_changed"] is True
