"""Reports that wait for fresh data, against the real Cube (a pre-aggregation the test refreshes), SMTP
server and ledger: a report whose data is older than it asks waits (``waiting``, nothing sent, no task
held), later ticks look again, it goes out once when Cube's rollup is rebuilt — or at its deadline, saying
how old its data is; a retry or a second claimant never sends it twice, and the misfire window does not
close on it before its deadline."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_changes import pause_alert, record_paused_slots
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.ledger.claims import claim_slot
from kpi_alerts.ledger.due_alerts import close_abandoned_waits, list_due_alerts
from kpi_alerts.pipeline.alert_run import RunSettings, process_alert
from tests.polling import wait_until

pytestmark = pytest.mark.services

ORG = 7331
QUERY = {
    "measures": ["loaded_orders.count"],
    "timeDimensions": [
        {
            "dimension": "loaded_orders.created_at",
            "granularity": "day",
            "dateRange": ["2026-11-01", "2026-11-07"],
        }
    ],
}
IDS = itertools.count(1)


@dataclass
class Rollup:
    """The ``loaded_orders`` pre-aggregation: when Cube last built it, and a way to run "the nightly load"."""

    cube: CubeClient
    conn: psycopg.Connection[Any]

    def refreshed_at(self) -> datetime:
        data = self.cube.load(QUERY, security_context={"organization_id": ORG}, timezone="UTC")
        assert data.refreshed_at is not None, "Cube answered without lastRefreshTime"
        return data.refreshed_at

    def load(self) -> datetime:
        """Insert an order (the rollup's refresh key is the newest order id) and wait for the rebuild."""
        before = self.refreshed_at()
        self.conn.execute(
            "INSERT INTO orders VALUES (%s, %s, '2026-11-03T10:00Z', 'completed', 'books', 10)",
            (ORG * 100_000 + next(IDS), ORG),
        )
        return wait_until(
            lambda: (t := self.refreshed_at()) > before and t,
            timeout=30,
            interval=0.3,
            what="the rollup rebuild",
        )


@pytest.fixture
def rollup(pg: Any, cube_server: CubeServer) -> Iterator[Rollup]:
    with (
        CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube,
        psycopg.connect(pg.url("analytics"), autocommit=True) as conn,
    ):
        yield Rollup(cube, conn)
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))


def next_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0) + timedelta(minutes=1)


def waiting_report(db: psycopg.Connection[Any], slot: datetime, *, max_age: int, max_wait: int) -> int:
    """A daily report due at ``slot`` that needs Cube's data at most ``max_age`` minutes old."""
    spec = {
        "organization_id": ORG,
        "alert_name": "Loaded orders",
        "recipients": ["cfo@org7331.example.com"],
        "cube_query": QUERY,
        "schedule": {
            "frequency_interval": "day",
            "schedule_hour": slot.hour,
            "schedule_minute": slot.minute,
            "timezone": "UTC",
            "attachment_type": "csv",
            "freshness": {"cube": True, "max_age_minutes": max_age, "max_wait_minutes": max_wait},
        },
    }
    return create_alert(db, spec, now=slot - timedelta(minutes=1)).alert_id


def tick(slot: datetime, minutes: int, run: str = "", try_number: int = 1) -> RunSettings:
    return RunSettings(
        logical_time=slot + timedelta(minutes=minutes),
        claimant=Claimant(
            dag_run_id=run or f"tick-{minutes}", task_instance="process_alert[0]", try_number=try_number
        ),
    )


def ledger(db: psycopg.Connection[Any], alert_id: int) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT slot, status, error, details, attempts FROM cron_job_results WHERE kpi_alert_id = %s ORDER BY slot",
        (alert_id,),
    ).fetchall()


@pytest.mark.usefixtures("airflow_connections")
def test_a_report_waits_for_the_rollup_and_is_sent_once_when_it_is_rebuilt(
    db: psycopg.Connection[Any], mailbox: MailCatcher, rollup: Rollup, cube_server: CubeServer
) -> None:
    built = rollup.load()  # the rollup as of now; the report needs it newer than the next minute
    fresh_after = next_minute(built)
    slot = fresh_after + timedelta(minutes=1)
    alert_id = waiting_report(db, slot, max_age=1, max_wait=60)
    source = rollup.cube

    first = process_alert(db, alert_id, source=source, mailer=SmtpMailer(), settings=tick(slot, 0))
    assert first.status == "waiting"
    assert mailbox.messages() == []
    (row,) = ledger(db, alert_id)
    assert row["status"] == "waiting"
    assert row["error"].startswith("waiting for fresh data: Cube's data is as of ")
    assert "then sent anyway" in row["error"]
    assert row["details"]["freshness"]["fresh"] is False
    assert row["details"]["freshness"]["deadline"] == (slot + timedelta(minutes=60)).isoformat()
    # Still due at the slot (the next tick looks again), and nobody holds it.
    assert [d.alert_id for d in list_due_alerts(db, logical_time=slot + timedelta(minutes=5), limit=10)] == [
        alert_id
    ]
    assert db.execute("SELECT locked FROM cron_jobs").fetchone()["locked"] is False

    second = process_alert(db, alert_id, source=source, mailer=SmtpMailer(), settings=tick(slot, 5))
    assert second.status == "waiting"  # not refreshed yet: still waiting, still one row
    assert len(ledger(db, alert_id)) == 1

    wait_until(lambda: datetime.now(UTC) >= fresh_after, timeout=70, interval=0.5, what="the next minute")
    rebuilt = rollup.load()  # the nightly load lands: Cube rebuilds the rollup
    assert rebuilt >= fresh_after

    sent = process_alert(db, alert_id, source=source, mailer=SmtpMailer(), settings=tick(slot, 10))
    assert sent.status == "sent", sent.detail
    (row,) = ledger(db, alert_id)
    assert (row["status"], row["error"]) == ("sent", None)
    assert row["details"]["freshness"]["fresh"] is True
    assert row["details"]["freshness"]["data_as_of"] == rebuilt.isoformat()
    (message,) = mailbox.messages()
    assert "Data as of" not in str(message["Subject"])

    # A retry of that tick's task, a later tick and a second claimant: nothing more is sent.
    again = process_alert(
        db, alert_id, source=source, mailer=SmtpMailer(), settings=tick(slot, 10, try_number=2)
    )
    later = process_alert(db, alert_id, source=source, mailer=SmtpMailer(), settings=tick(slot, 15))
    assert again.status == later.status == "skipped"
    alert = load_alert(db, alert_id)
    assert alert is not None
    other = claim_slot(db, alert, logical_time=slot + timedelta(minutes=15), now=datetime.now(UTC),
                       claimant=Claimant(dag_run_id="other-scheduler"))  # fmt: skip
    assert not hasattr(other, "token")
    assert len(mailbox.messages()) == 1
    assert [r["status"] for r in ledger(db, alert_id)] == ["sent"]


@pytest.mark.usefixtures("airflow_connections")
def test_at_the_deadline_it_is_sent_anyway_saying_how_old_the_data_is(
    db: psycopg.Connection[Any], mailbox: MailCatcher, rollup: Rollup
) -> None:
    built = rollup.load()
    slot = next_minute(built) + timedelta(minutes=1)
    alert_id = waiting_report(db, slot, max_age=1, max_wait=90)  # longer than the 60-minute misfire window

    statuses = []
    for minutes in (0, 5, 65):  # 65: past the misfire window, before the deadline: still waiting, not missed
        run = process_alert(
            db, alert_id, source=rollup.cube, mailer=SmtpMailer(), settings=tick(slot, minutes)
        )
        statuses.append(run.status)
    assert statuses == ["waiting", "waiting", "waiting"]
    assert mailbox.messages() == []

    sent = process_alert(db, alert_id, source=rollup.cube, mailer=SmtpMailer(), settings=tick(slot, 90))
    assert sent.status == "sent", sent.detail
    (row,) = ledger(db, alert_id)
    assert row["status"] == "sent"
    assert row["details"]["freshness"]["fresh"] is False
    assert row["details"]["freshness"]["data_as_of"] == built.isoformat()
    assert row["attempts"] == 4  # each tick's look is an attempt of the one slot
    (message,) = mailbox.messages()
    subject = " ".join(str(message["Subject"]).split())
    assert f"Data as of {built:%H:%M}" in subject or f"Data as of {built:%Y-%m-%d %H:%M}" in subject
    assert " old)" in subject
    body = message.get_body(("plain",)).get_content()
    assert "Cube's data was not refreshed within 1 h 30 min of the report's time; sent anyway" in body


@pytest.mark.usefixtures("airflow_connections")
def test_a_waiting_slot_of_an_alert_paused_meanwhile_is_recorded_skipped(
    db: psycopg.Connection[Any], mailbox: MailCatcher, rollup: Rollup
) -> None:
    built = rollup.load()
    slot = next_minute(built) + timedelta(minutes=1)
    alert_id = waiting_report(db, slot, max_age=1, max_wait=60)
    assert process_alert(
        db, alert_id, source=rollup.cube, mailer=SmtpMailer(), settings=tick(slot, 0)
    ).status == ("waiting")
    pause_alert(db, alert_id, now=slot + timedelta(minutes=2))
    record_paused_slots(db, logical_time=slot + timedelta(minutes=5), dag_run_id="tick-5")
    assert close_abandoned_waits(db, now=slot + timedelta(minutes=5)) == 1
    (row,) = ledger(db, alert_id)
    assert row["status"] == "skipped"
    assert row["error"] == "paused by an operator while its slot waited for fresh data; not sent"
    assert row["details"]["reason"] == "paused"
    assert mailbox.messages() == []
