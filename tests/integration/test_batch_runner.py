"""The batch runner against the real servers: shared Cube queries, SMTP sessions kept and renewed, each
claim exactly once under a thread pool."""

from __future__ import annotations

import smtplib
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from devstack.stack import Stack
from kpi_alerts.cube.client import CubeClient, CubeQueryError
from kpi_alerts.delivery.email_message import Envelope
from kpi_alerts.delivery.mailers import SessionMailer
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.ledger.database import connect
from kpi_alerts.pipeline.batch import WAIT_SHARE_FOR_THREADS, run_batch
from kpi_alerts.pipeline.inputs import RunSettings
from kpi_alerts.pipeline.kpi_source import CachingKpiSource
from kpi_alerts.reports.query_plan import expected_report_queries

pytestmark = [pytest.mark.services]

LOGICAL_TIME = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)


def query(first_day: int) -> dict[str, Any]:
    return {
        "measures": ["orders.total_amount", "orders.count"],
        "timeDimensions": [
            {
                "dimension": "orders.created_at",
                "granularity": "day",
                "dateRange": [f"2026-11-{first_day:02d}", f"2026-11-{first_day + 6:02d}"],
            }
        ],
    }


def make_alerts(db: psycopg.Connection[Any], n: int) -> list[int]:
    """n daily 17:00 UTC reports; alerts 2k and 2k+1 subscribe to the same graph (query)."""
    ids = []
    for k in range(n):
        alert = create_alert(
            db,
            {
                "organization_id": 1 + (k // 2) % 2,
                "alert_name": f"Batch {k}",
                "recipients": [f"b{k}@org{1 + (k // 2) % 2}.example.com"],
                "cube_query": query(1 + k // 2),
                "schedule": {
                    "frequency_interval": "day",
                    "schedule_hour": 17,
                    "schedule_minute": 0,
                    "timezone": "UTC",
                    "attachment_type": "csv" if k % 3 else "pdf",
                },
            },
            now=LOGICAL_TIME - timedelta(hours=1),
        )
        ids.append(alert.alert_id)
    return ids


def settings(try_number: int = 1) -> RunSettings:
    return RunSettings(
        logical_time=LOGICAL_TIME,
        claimant=Claimant(dag_run_id="batch-test", task_instance="process_alert[0]", try_number=try_number),
        envelope=Envelope(sender="KPI Alerts <kpi-alerts@example.com>"),
    )


def test_a_batch_shares_queries_and_sessions_and_sends_each_alert_once(
    db: psycopg.Connection[Any], stack: Stack, mailbox: MailCatcher, alerts_db_url: str
) -> None:
    ids = make_alerts(db, 12)
    with CubeClient(stack.cube_url, api_secret=stack.cube_secret) as cube:

        def run() -> Any:
            return run_batch(
                ids,
                connect=lambda: connect(alerts_db_url),
                open_mailer=lambda: SessionMailer(
                    lambda: smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10)
                ),
                source=cube,
                settings=settings(),
                threads=4,
            )

        first = run()
        again = run()  # a retry of the same batch: everything is finished, nothing is sent twice

    assert first.failures == []
    assert [r.status for r in first.runs] == ["sent"] * 12
    # two subscribers per graph; each of the 6 graphs needs its rows and its previous week (the report's
    # change, issue 14: one query for an additive KPI): a daily series, so both periods come from one query
    # over the two weeks (reports.model.PeriodPair), asked once for both subscribers; the chunk's queries
    # go to Cube before its alerts start, in one request per organization (batch._prefetch)
    assert first.cube_requests == 2 and first.cube_shared == 12
    assert 1 <= first.smtp_sessions <= 4  # one per thread, not one per message
    assert sorted(str(m["To"]) for m in mailbox.messages()) == sorted(
        f"b{k}@org{1 + (k // 2) % 2}.example.com" for k in range(12)
    )
    assert [r.status for r in again.runs] == ["skipped"] * 12
    rows = db.execute("SELECT status, count(*) AS n FROM cron_job_results GROUP BY status").fetchall()
    assert [(r["status"], r["n"]) for r in rows] == [("sent", 12)]


@pytest.mark.parametrize("claim_chunk", [32, 1])
def test_a_report_and_a_threshold_on_one_graph_cost_one_cube_request(
    db: psycopg.Connection[Any], stack: Stack, mailbox: MailCatcher, alerts_db_url: str, claim_chunk: int
) -> None:
    # The report asks both weeks at once (PeriodPair), the threshold alert on the same graph its week. In
    # one chunk both are asked ahead in one request; in two, the report's pair leaves its week in the
    # batch's shared queries (CachingKpiSource.remember) for the threshold.
    (report,) = make_alerts(db, 1)
    watcher = create_alert(
        db,
        {
            "organization_id": 1,
            "alert_name": "Watching the report's graph",
            "recipients": ["w@org1.example.com"],
            "cube_query": query(1),
            "threshold": {"condition": "GREATER_THAN", "threshold_value": "1", "timezone": "UTC"},
        },
        now=LOGICAL_TIME - timedelta(hours=1),
    )
    with CubeClient(stack.cube_url, api_secret=stack.cube_secret) as cube:
        batch = run_batch(
            [report, watcher.alert_id],
            connect=lambda: connect(alerts_db_url),
            open_mailer=lambda: SessionMailer(lambda: smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10)),
            source=cube,
            settings=settings(),
            threads=1,
            claim_chunk=claim_chunk,
        )
    assert batch.failures == [] and [r.status for r in batch.runs] == ["sent", "sent"]
    assert batch.cube_requests == 1


def test_a_period_pair_cube_refuses_is_asked_as_two_queries(
    db: psycopg.Connection[Any], stack: Stack, mailbox: MailCatcher, alerts_db_url: str
) -> None:
    # A client allowed 10 rows: the two weeks in one query are 14 rows, each week alone 7. The pair is
    # refused (a permanent error), and the report is still sent with its change, from two queries.
    ids = make_alerts(db, 1)
    with CubeClient(stack.cube_url, api_secret=stack.cube_secret, max_rows=10) as cube:
        batch = run_batch(
            ids,
            connect=lambda: connect(alerts_db_url),
            open_mailer=lambda: SessionMailer(lambda: smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10)),
            source=cube,
            settings=settings(),
            threads=1,
        )
    assert batch.failures == [] and [r.status for r in batch.runs] == ["sent"]
    # the refused pair (asked ahead by the chunk, then by the report), then both weeks in one request
    assert batch.cube_requests == 3
    (message,) = mailbox.messages()
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "previous week" in text


def test_a_session_closed_by_the_server_is_renewed_and_nothing_is_sent_twice(mailbox: MailCatcher) -> None:
    clients: list[smtplib.SMTP] = []

    def open_session() -> smtplib.SMTP:
        clients.append(smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10))
        return clients[-1]

    mailer = SessionMailer(open_session)
    for n in range(3):
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", f"r{n}@example.com", f"m{n}"
        message.set_content("hello")
        if n == 2:
            assert clients[-1].sock is not None
            clients[-1].sock.shutdown(socket.SHUT_RDWR)  # the session died before the third message
        mailer.deliver(message)
    mailer.close()

    assert mailer.sessions == 2
    assert sorted(str(m["To"]) for m in mailbox.messages()) == [
        "r0@example.com",
        "r1@example.com",
        "r2@example.com",
    ]


def test_shared_queries_ask_a_report_and_its_previous_period_in_one_request(stack: Stack) -> None:
    org = {"organization_id": 1}
    with CubeClient(stack.cube_url, api_secret=stack.cube_secret) as cube:
        queries = CachingKpiSource(cube)
        wanted = [query(1), *expected_report_queries(query(1), "UTC", LOGICAL_TIME)]
        assert len(wanted) == 2 and wanted[1]["timeDimensions"][0]["dateRange"] == [
            "2026-10-25",
            "2026-10-31",
        ]
        rows = queries.load_many(wanted, security_context=org, timezone="UTC")
        assert (queries.requests, queries.shared) == (1, 0)
        assert queries.load(wanted[1], security_context=org, timezone="UTC") is rows[1]  # from the batch
        assert (queries.requests, queries.shared) == (1, 1)

        bad = {**query(8), "measures": ["orders.nope"]}
        with pytest.raises(CubeQueryError, match="nope"):
            queries.load_many([query(8), bad], security_context=org, timezone="UTC")
        # a failed request is not kept: the good query alone is asked again, and answers
        assert queries.load(query(8), security_context=org, timezone="UTC").rows
        assert queries.requests == 3


class _DistantMailer:
    """A real SMTP session behind 100 ms of latency per message, as a relay across a network would add
    (a fake delay: the local server cannot be made slow)."""

    def __init__(self, port: int) -> None:
        self.mailer = SessionMailer(lambda: smtplib.SMTP("127.0.0.1", port, timeout=10))
        self.sessions = 0

    def deliver(self, message: EmailMessage) -> Any:
        threading.Event().wait(0.1)
        delivery = self.mailer.deliver(message)
        self.sessions = self.mailer.sessions
        return delivery

    def close(self) -> None:
        self.mailer.close()


@pytest.mark.parametrize("distant", [False, True], ids=["local servers", "distant SMTP"])
def test_threads_overlap_waits_only_when_there_are_waits(
    db: psycopg.Connection[Any], stack: Stack, mailbox: MailCatcher, alerts_db_url: str, distant: bool
) -> None:
    ids = make_alerts(db, 40)  # more than the first chunk (32), which measures the waits
    with CubeClient(stack.cube_url, api_secret=stack.cube_secret) as cube:
        batch = run_batch(
            ids,
            connect=lambda: connect(alerts_db_url),
            open_mailer=lambda: (
                _DistantMailer(mailbox.port)
                if distant
                else SessionMailer(lambda: smtplib.SMTP("127.0.0.1", mailbox.port, timeout=10))
            ),
            source=cube,
            settings=settings(),
            threads=4,
        )
    assert [r.status for r in batch.runs] == ["sent"] * 40
    assert batch.wait_share is not None
    if distant:  # 100 ms per message: most of the time is waiting, worth overlapping
        assert batch.wait_share >= WAIT_SHARE_FOR_THREADS and batch.threads == 4
    else:  # local servers: ~0.2 on an idle machine, one at a time (a loaded one may tip it; the rule holds)
        assert batch.threads == (4 if batch.wait_share >= WAIT_SHARE_FOR_THREADS else 1)
    assert len(mailbox.messages()) == 40
