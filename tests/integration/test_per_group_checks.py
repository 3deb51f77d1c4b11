"""Per-group checks through the real pipeline: a query by category on the real Cube server, hourly slots
while each category's orders change, real SMTP and the real ledger."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_changes import update_alert
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import RunSettings, process_alert
from kpi_alerts.pipeline.trial import preview
from tests.polling import wait_until

pytestmark = pytest.mark.services

ORG = 7327
START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
QUERY = {
    "measures": ["orders.count"],
    "dimensions": ["orders.category"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": ["2026-10-01", "2026-10-31"]}],
}
IDS = itertools.count(1)


@pytest.fixture
def orders(pg: Any, cube_server: CubeServer) -> Iterator[Any]:
    """Sets organization 7327's October orders per category, then waits until Cube counts them."""
    cube = CubeClient(cube_server.url, api_secret=cube_server.api_secret)

    def cube_counts() -> dict[str, int]:
        rows = cube.load(QUERY, security_context={"organization_id": ORG}, timezone="UTC").rows
        return {str(r["orders.category"]): int(r["orders.count"] or 0) for r in rows}

    with cube, psycopg.connect(pg.url("analytics"), autocommit=True) as conn:

        def set_counts(**counts: int) -> None:
            conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))
            for category, n in counts.items():
                for _ in range(n):
                    conn.execute(
                        "INSERT INTO orders VALUES (%s, %s, '2026-10-05T10:00Z', 'completed', %s, 10)",
                        (ORG * 10_000 + next(IDS), ORG, category),
                    )
            wanted = {c: n for c, n in counts.items() if n}
            wait_until(
                lambda: cube_counts() == wanted, timeout=30, interval=0.2, what=f"Cube to count {wanted}"
            )

        yield set_counts
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))


def alert(db: psycopg.Connection[Any]) -> int:
    spec = {
        "organization_id": ORG,
        "alert_name": "Orders per category",
        "recipients": ["ops@org7327.example.com"],
        "cube_query": QUERY,
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "2", "group_by": "orders.category"},
    }
    return create_alert(db, spec, now=START).alert_id


def settings(hour: int) -> RunSettings:
    return RunSettings(
        logical_time=START + timedelta(hours=hour, minutes=5),
        final_attempt=True,
        claimant=Claimant(dag_run_id=f"groups-{hour}", try_number=1),
    )


def why(message: Any) -> str:
    text = " ".join(message.get_body(("plain",)).get_content().split())
    found = re.search(r"Why: (.*?\(\d+ group\(s\) checked\))", text)
    assert found is not None, text
    return found.group(1)


@pytest.mark.usefixtures("airflow_connections")
def test_one_notice_lists_the_groups_that_changed(
    db: psycopg.Connection[Any], mailbox: MailCatcher, orders: Any, cube_server: CubeServer
) -> None:
    alert_id = alert(db)
    ticks = [
        {"books": 3, "garden": 1},  # books breaches
        {"books": 3, "garden": 4},  # garden is new: notified; books still breaching: listed, not re-notified
        {"books": 3, "garden": 4},  # nothing new (re-arm 4 h)
        {"books": 1, "garden": 4},  # books recovered while garden breaches
        {"books": 1, "garden": 1},  # all recovered
        {"books": 1},  # garden gone while OK: not checked
    ]
    seen = []
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        for hour, counts in enumerate(ticks):
            orders(**counts)
            mailbox.clear()
            run = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings(hour))
            messages = mailbox.messages()
            seen.append((run.status, [(str(m["Subject"]), why(m)) for m in messages]))

    assert [status for status, _ in seen] == ["sent", "sent", "suppressed", "sent", "sent", "not_triggered"]
    assert [len(m) for _, m in seen] == [1, 1, 0, 1, 1, 0]
    subject, sentence = seen[0][1][0]
    assert subject == "[KPI alert] Orders per category: Orders > 2 per Category — 2026-12-07"
    assert sentence == ("breaching: books (Orders is 3: Orders > 2 is met) (2 group(s) checked)")
    assert seen[1][1][0][1] == (
        "breaching: garden (Orders is 4: Orders > 2 is met); breaching, already notified: books "
        "(2 group(s) checked)"
    )
    assert seen[3][1][0][1] == (
        "recovered: books (Orders is 1: Orders > 2 is not met); breaching, already notified: garden "
        "(2 group(s) checked)"
    )
    subject, sentence = seen[4][1][0]
    assert subject.startswith("Resolved: [KPI alert] Orders per category is back to normal")
    assert sentence == "recovered: garden (Orders is 1: Orders > 2 is not met) (2 group(s) checked)"

    rows = db.execute(
        "SELECT details FROM cron_job_results WHERE kpi_alert_id = %s ORDER BY slot", (alert_id,)
    ).fetchall()
    assert rows[2]["details"]["groups"]["books"]["transition"].startswith("still TRIGGERED; re-arm in")
    assert (
        db.execute(
            "SELECT count(*) AS n FROM kpi_threshold_groups WHERE kpi_alert_id = %s", (alert_id,)
        ).fetchone()["n"]
        == 0
    )  # every group back to OK: nothing to remember
    assert (
        db.execute("SELECT state FROM kpi_thresholds WHERE kpi_alert_id = %s", (alert_id,)).fetchone()[
            "state"
        ]
        == "OK"
    )


@pytest.mark.usefixtures("airflow_connections")
def test_group_states_are_kept_and_reset_with_what_is_measured(
    db: psycopg.Connection[Any], orders: Any, cube_server: CubeServer, tmp_path: Any
) -> None:
    alert_id = alert(db)
    orders(books=3, garden=5)
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings(0))
        states = db.execute(
            "SELECT group_key, state, last_value FROM kpi_threshold_groups WHERE kpi_alert_id = %s ORDER BY 1",
            (alert_id,),
        ).fetchall()
        assert [(s["group_key"], s["state"], int(s["last_value"])) for s in states] == [
            ("books", "TRIGGERED", 3),
            ("garden", "TRIGGERED", 5),
        ]
        files = preview(db, alert_id, tmp_path, source=cube, settings=settings(1))
        assert files.verdict == (
            "groups: breaching, already notified: books, garden (2 group(s) checked) — a run now would send "
            "no notice"
        )
    update_alert(db, alert_id, {"threshold": {"threshold_value": "4"}}, now=START)
    assert (
        db.execute(
            "SELECT count(*) AS n FROM kpi_threshold_groups WHERE kpi_alert_id = %s", (alert_id,)
        ).fetchone()["n"]
        == 0
    )


def test_refused_with_one_line(db: psycopg.Connection[Any]) -> None:
    from kpi_alerts.errors import AlertValidationError

    spec = {
        "organization_id": ORG,
        "alert_name": "bad",
        "recipients": ["ops@org7327.example.com"],
        "cube_query": QUERY,
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "2", "group_by": "orders.status"},
    }
    with pytest.raises(
        AlertValidationError, match=re.escape("group_by 'orders.status' is not one of the query's dimensions")
    ):
        create_alert(db, spec, now=START)


@pytest.mark.usefixtures("airflow_connections")
def test_quiet_hours_hold_the_groups_notice_until_they_end(
    db: psycopg.Connection[Any], mailbox: MailCatcher, orders: Any, cube_server: CubeServer
) -> None:
    """Quiet 10:00-12:00 UTC: the checks at 10:00 and 11:00 find books breaching and send nothing (the groups'
    states stay OK); the 12:00 check, after their end, still finds it and notifies once (issue 26)."""
    alert_id = alert(db)
    update_alert(db, alert_id, {"quiet_hours": {"from": "10:00", "to": "12:00"}}, now=START)
    orders(books=3, garden=1)
    statuses = []
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        for hour in range(3):
            run = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings(hour))
            statuses.append((run.slot, run.status, len(mailbox.messages())))
            if hour < 2:
                groups = db.execute(
                    "SELECT count(*) AS n FROM kpi_threshold_groups WHERE kpi_alert_id = %s", (alert_id,)
                ).fetchone()
                assert groups["n"] == 0  # nothing remembered while held
    assert statuses == [
        ("2026-12-07T10:00:00+00:00", "suppressed", 0),
        ("2026-12-07T11:00:00+00:00", "suppressed", 0),
        ("2026-12-07T12:00:00+00:00", "sent", 1),
    ]
    held = db.execute(
        "SELECT details FROM cron_job_results WHERE kpi_alert_id = %s ORDER BY slot LIMIT 1", (alert_id,)
    ).fetchone()
    assert held["details"]["quiet_hours"] == {"until": "2026-12-07T12:00:00+00:00", "held": "triggered"}
