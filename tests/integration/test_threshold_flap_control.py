"""Hysteresis (a recovery threshold) and the pending period, through the real pipeline: hourly slots of
one threshold alert against the real Cube server while the data changes, real SMTP, the real ledger.

Each slot's expected decision is computed here from the count alone (plain Python), and the e-mails'
numbers are read back from the received messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.alert_views import alert_detail
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import RunSettings, process_alert
from kpi_alerts.pipeline.inputs import KpiSource
from kpi_alerts.pipeline.trial import compose_trial
from tests.polling import wait_until

pytestmark = pytest.mark.services

ORG = 7027
START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
OCTOBER_ORDERS = {
    "measures": ["orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": ["2026-10-01", "2026-10-31"]}],
}


@pytest.fixture
def cube(cube_server: CubeServer) -> Iterator[CubeClient]:
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as client:
        yield client


@pytest.fixture
def orders(pg: Any, cube: CubeClient) -> Iterator[Any]:
    """Sets how many October orders organization 7027 has, then waits until Cube counts them."""

    def cube_count() -> int:
        rows = cube.load(OCTOBER_ORDERS, security_context={"organization_id": ORG}, timezone="UTC").rows
        return int(rows[0]["orders.count"] or 0) if rows else 0

    with psycopg.connect(pg.url("analytics"), autocommit=True) as conn:

        def set_count(n: int) -> None:
            conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))
            conn.execute(
                "INSERT INTO orders SELECT %s * 1000 + i, %s, '2026-10-05T10:00Z', 'completed', 'books', 10 "
                "FROM generate_series(1, %s) AS i",
                (ORG, ORG, n),
            )
            wait_until(lambda: cube_count() == n, timeout=30, interval=0.2, what=f"Cube to count {n} orders")

        yield set_count
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))


def alert(db: psycopg.Connection[Any], **threshold: Any) -> int:
    spec = {
        "organization_id": ORG,
        "alert_name": "October orders",
        "recipients": ["ops@org7027.example.com"],
        "cube_query": OCTOBER_ORDERS,
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "10", "rearm_minutes": 0, **threshold},
    }
    return create_alert(db, spec, now=START).alert_id  # first slot: START


def tick(db: psycopg.Connection[Any], alert_id: int, hour: int, source: KpiSource) -> str:
    settings = RunSettings(
        logical_time=START + timedelta(hours=hour, minutes=5),
        final_attempt=True,
        claimant=Claimant(dag_run_id=f"flap-{hour}", try_number=1),
    )
    return process_alert(db, alert_id, source=source, mailer=SmtpMailer(), settings=settings).status


def run_ticks(
    db: psycopg.Connection[Any],
    alert_id: int,
    counts: list[int],
    orders: Any,
    mailbox: MailCatcher,
    cube: CubeClient,
) -> list[tuple[str, list[str]]]:
    """One slot per count; what each recorded and the subjects it sent."""
    out = []
    for hour, count in enumerate(counts):
        orders(count)
        mailbox.clear()
        status = tick(db, alert_id, hour, cube)
        out.append((status, [str(m["Subject"]) for m in mailbox.messages()]))
    return out


def expected_hysteresis(counts: list[int], threshold: int, recovery: int) -> list[str | None]:
    """The notice each slot sends, computed from the counts: enter above ``threshold``, leave below
    ``recovery`` (re-arm 0 repeats a standing breach at every slot)."""
    triggered, notices = False, []
    for count in counts:
        if count > threshold:
            notices.append("still_triggered" if triggered else "triggered")
            triggered = True
        elif triggered and count >= recovery:
            notices.append("still_triggered")
        elif triggered:
            notices.append("recovered")
            triggered = False
        else:
            notices.append(None)
    return notices


@pytest.mark.usefixtures("airflow_connections")
def test_recovery_threshold(
    db: psycopg.Connection[Any], mailbox: MailCatcher, orders: Any, cube: CubeClient
) -> None:
    alert_id = alert(db, recovery_threshold="5")
    counts = [3, 12, 8, 5, 4, 8, 11]  # OK, breach, holds (8 ≥ 5), holds at 5, recovers below 5, OK, breach
    seen = run_ticks(db, alert_id, counts, orders, mailbox, cube)

    expected = expected_hysteresis(counts, threshold=10, recovery=5)
    assert [status for status, _ in seen] == ["not_triggered" if n is None else "sent" for n in expected]
    kinds = [("Resolved" if s[0].startswith("Resolved") else "alert") if s else None for _, s in seen]
    assert kinds == [None if n is None else ("Resolved" if n == "recovered" else "alert") for n in expected]

    rows = db.execute(
        "SELECT value, details FROM cron_job_results WHERE kpi_alert_id = %s ORDER BY slot", (alert_id,)
    ).fetchall()
    assert rows[2]["details"]["description"] == (
        "Orders is 8: Orders > 10 is not met, but the breach holds until Orders < 5 (recovery threshold)"
    )
    assert rows[2]["details"]["observation"] == "breached"
    assert rows[4]["details"]["observation"] == "ok"


@pytest.mark.usefixtures("airflow_connections")
def test_recovered_e_mail_says_why_with_its_numbers(
    db: psycopg.Connection[Any], mailbox: MailCatcher, orders: Any, cube: CubeClient
) -> None:
    alert_id = alert(db, recovery_threshold="5", rearm_minutes=240)
    seen = run_ticks(db, alert_id, [12, 4], orders, mailbox, cube)
    assert seen[1][0] == "sent"
    (message,) = mailbox.messages()
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    why = re.search(r"Why: Orders is (\d+): Orders > (\d+) is not met and Orders < (\d+) \(recovery", text)
    assert why is not None, text
    assert [int(g) for g in why.groups()] == [4, 10, 5]


def expected_pending(counts: list[int], threshold: int, n: int, m: int) -> list[str | None]:
    """Notices under a pending period: N breaches in a row to notify, M OK checks in a row to recover
    (re-arm 4 h: a standing breach checked hourly is not repeated here)."""
    triggered, run, notices = False, 0, []
    for count in counts:
        away = (count > threshold) != triggered
        run = run + 1 if away else 0
        notice = None
        if away and run == (m if triggered else n):
            notice = "recovered" if triggered else "triggered"
            triggered, run = not triggered, 0
        notices.append(notice)
    return notices


@pytest.mark.usefixtures("airflow_connections")
def test_pending_period(
    db: psycopg.Connection[Any], mailbox: MailCatcher, orders: Any, cube: CubeClient
) -> None:
    alert_id = alert(db, pending_checks=3, recovery_checks=2, rearm_minutes=240)
    counts = [12, 12, 3, 12, 12, 12, 3, 12, 3, 3]  # flap, then 3 in a row, flap back, 2 OK in a row
    seen = run_ticks(db, alert_id, counts, orders, mailbox, cube)

    expected = expected_pending(counts, threshold=10, n=3, m=2)
    assert expected.count("triggered") == 1 and expected.count("recovered") == 1
    assert [bool(subjects) for _, subjects in seen] == [n is not None for n in expected]
    assert [status for status, _ in seen] == [
        "suppressed", "suppressed", "not_triggered", "suppressed", "suppressed", "sent",
        "not_triggered", "suppressed", "not_triggered", "sent",
    ]  # fmt: skip
    rows = db.execute(
        "SELECT details FROM cron_job_results WHERE kpi_alert_id = %s ORDER BY slot", (alert_id,)
    ).fetchall()
    assert rows[1]["details"]["transition"] == "breached 2 of 3 checks in a row: still OK (pending)"
    assert rows[6]["details"]["transition"] == "OK 1 of 2 checks in a row: still TRIGGERED (pending)"
    assert [r["details"]["streak"] for r in rows] == [1, 2, 0, 1, 2, 0, 1, 0, 1, 0]

    orders(12)
    mailbox.clear()
    db.execute("UPDATE kpi_thresholds SET state = 'OK', streak = 2 WHERE kpi_alert_id = %s", (alert_id,))
    assert tick(db, alert_id, 10, cube) == "sent"
    (triggered,) = mailbox.messages()
    mailbox_text = triggered.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Why: Orders is 12: Orders > 10 is met; breached for 3 checks in a row" in mailbox_text


@pytest.mark.usefixtures("airflow_connections")
def test_show_and_trial_state_the_rule_and_the_decision(
    db: psycopg.Connection[Any], orders: Any, cube: CubeClient
) -> None:
    alert_id = alert(db, recovery_threshold="5", pending_checks=2, on_no_data="alert")
    orders(12)
    tick(db, alert_id, 0, cube)
    detail = alert_detail(db, alert_id, now=START)
    assert detail["threshold_rule"] == (
        "Orders > 10; recovers when Orders < 5; notifies after 2 breached checks in a row; "
        "no data: alert; error: alert"
    ).replace("Orders", "orders.count")
    assert detail["threshold_streak"] == 1
    assert detail["definition"]["threshold"]["recovery_threshold"] == "5"

    from kpi_alerts.ledger.alert_store import load_alert

    loaded = load_alert(db, alert_id)
    assert loaded is not None
    settings = RunSettings(
        logical_time=START + timedelta(hours=1, minutes=5),
        final_attempt=True,
        claimant=Claimant(dag_run_id="trial", try_number=1),
    )
    trial = compose_trial(loaded, "me@example.com", source=cube, settings=settings)
    assert trial.verdict == (
        "threshold breached: Orders is 12: Orders > 10 is met; breached for 2 checks in a row — "
        "a run now would send triggered (OK → TRIGGERED)"
    )
    assert Decimal(str(detail["threshold_last_value"])) == 12


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        pytest.param(
            {"recovery_threshold": "12"},
            "the recovery threshold must be at or below the threshold for GREATER_THAN: 12 vs 10",
            id="wrong-side",
        ),
        pytest.param(
            {"condition": "EQUAL", "recovery_threshold": "5"},
            "a recovery threshold needs one of GREATER_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN, "
            "LESS_THAN_OR_EQUAL, not EQUAL",
            id="equality",
        ),
        pytest.param(
            {"pending_checks": 0},
            "threshold.pending_checks: Input should be greater than or equal to 1",
            id="zero",
        ),
    ],
)
def test_refused_with_one_line(db: psycopg.Connection[Any], threshold: dict[str, Any], message: str) -> None:
    from kpi_alerts.errors import AlertValidationError

    with pytest.raises(AlertValidationError) as refused:
        alert(db, **threshold)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_plain_sql_rows_are_checked_too(db: psycopg.Connection[Any]) -> None:
    alert_id = alert(db)
    for statement in (
        "UPDATE kpi_thresholds SET recovery_threshold = 11 WHERE kpi_alert_id = %s",
        "UPDATE kpi_thresholds SET pending_checks = 0 WHERE kpi_alert_id = %s",
        "UPDATE kpi_thresholds SET streak = -1 WHERE kpi_alert_id = %s",
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(statement, (alert_id,))


def test_changing_the_recovery_threshold_keeps_the_state(db: psycopg.Connection[Any]) -> None:
    from kpi_alerts.ledger.alert_changes import update_alert

    alert_id = alert(db, recovery_threshold="5")
    db.execute("UPDATE kpi_thresholds SET state = 'TRIGGERED' WHERE kpi_alert_id = %s", (alert_id,))
    updated = update_alert(
        db, alert_id, {"threshold": {"recovery_threshold": "8", "pending_checks": 2}}, now=START
    )
    assert not updated.state_reset
    row = db.execute("SELECT * FROM kpi_thresholds WHERE kpi_alert_id = %s", (alert_id,)).fetchone()
    assert (row["state"], row["recovery_threshold"], row["pending_checks"]) == ("TRIGGERED", 8, 2)
    update_alert(db, alert_id, {"threshold": {"recovery_threshold": None}}, now=START)
    row = db.execute(
        "SELECT recovery_threshold FROM kpi_thresholds WHERE kpi_alert_id = %s", (alert_id,)
    ).fetchone()
    assert row["recovery_threshold"] is None
