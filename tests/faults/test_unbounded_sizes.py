"""Unbounded sizes and lost history (issue 9, item 9).

- One 10 MB cell made an 83 MB e-mail (and ~1 GB of memory): the body's table is now capped in rows
  and in characters per cell, as the attachment is capped in bytes.
- A slot from 1970 reported "missed 10000 slot(s)": counting stops at a cap, so it says "at least".
- A successful retry erased the earlier attempt's error: ``history`` shows ``attempt_history``.

The message is built for real and parsed back; the ledger cases use the real PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from kpi_alerts.cli import main
from kpi_alerts.delivery.email_message import BODY_CELL_CHARS, BODY_ROWS, Envelope, build_message
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from kpi_alerts.ledger.claim_terms import Claim, Claimant, NotClaimed
from kpi_alerts.ledger.claims import MAX_COUNTED_MISSES, claim_slot
from kpi_alerts.ledger.outcomes import Outcome, finish_claim, release_for_retry
from tests.unit.reports.test_reports import REGION, REVENUE, context

pytestmark = [pytest.mark.faults]

T = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)


def test_a_10_mb_cell_makes_a_small_email() -> None:
    huge = "x" * 10_000_000
    rows = tuple({REGION.key: huge if i == 0 else f"r{i}", REVENUE.key: Decimal(i)} for i in range(500))
    data = KpiData(columns=(REGION, REVENUE), rows=rows, timezone="UTC")
    message = build_message(
        ctx=context(),
        data=data,
        recipients=["ops@example.com"],
        envelope=Envelope(sender="KPI Alerts <alerts@kpi-alerts.local>", max_attachment_bytes=10_000_000),
        attachment=None,
        message_key="1:2026-12-07T17:00:00+00:00",
    )
    size = len(message.as_bytes())
    assert size < 200_000, size
    text = message.get_body(("plain",))
    assert text is not None
    body = str(text.get_content())
    assert "x" * BODY_CELL_CHARS not in body and "x" * (BODY_CELL_CHARS - 5) in body
    assert f"r{BODY_ROWS}" not in body  # rows capped too


def hourly(db: psycopg.Connection[Any]) -> int:
    return create_alert(
        db,
        {
            "organization_id": 1,
            "alert_name": "Hourly",
            "recipients": ["ops@org1.example.com"],
            "cube_query": {"measures": ["orders.count"]},
            "schedule": {"frequency_interval": "hour", "schedule_minute": 0, "timezone": "UTC"},
        },
        now=T - timedelta(minutes=30),
    ).alert_id


@pytest.mark.services
def test_a_slot_from_1970_says_at_least(db: psycopg.Connection[Any]) -> None:
    alert_id = hourly(db)
    db.execute(
        "UPDATE cron_jobs SET next_run_at = '1970-01-01T00:00:00Z' "
        "WHERE id = (SELECT cron_job_id FROM kpi_alerts WHERE id = %s)",
        [alert_id],
    )
    alert = load_alert(db, alert_id)
    assert alert is not None
    claim_slot(db, alert, logical_time=T, now=T, claimant=Claimant(dag_run_id="run"))
    (missed,) = db.execute("SELECT * FROM cron_job_results WHERE status = 'missed'").fetchall()
    assert f"missed at least {MAX_COUNTED_MISSES} slot(s) from 1970-01-01" in missed["error"]


@pytest.mark.services
def test_history_keeps_the_error_of_an_attempt_a_retry_then_finished(
    db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alert_id = hourly(db)
    alert = load_alert(db, alert_id)
    assert alert is not None
    first, second = (
        Claimant(dag_run_id="run", task_instance="process_alert[0]", try_number=n) for n in (1, 2)
    )
    claim = claim_slot(db, alert, logical_time=T, now=T, claimant=first)
    assert isinstance(claim, Claim)
    release_for_retry(db, claim, now=T, error="SMTP 421 4.3.2 try again later")
    again = claim_slot(db, alert, logical_time=T, now=T + timedelta(minutes=1), claimant=second)
    assert not isinstance(again, NotClaimed)
    finish_claim(db, alert, again, Outcome("sent"), now=T + timedelta(minutes=2))

    capsys.readouterr()
    assert main(["history", str(alert_id), "--db", alerts_db_url]) == 0
    out = capsys.readouterr().out
    assert "sent" in out
    assert "attempt 1, try 1" in out and "SMTP 421 4.3.2 try again later" in out
