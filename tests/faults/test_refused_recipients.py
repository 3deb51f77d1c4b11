"""Issue 23 item 1: recipients the SMTP server refuses while it takes the message for others, through the
real DAG (``dag.test()``), PostgreSQL, Cube.js and the real aiosmtpd server of the devstack (which
refuses ``bounce…`` mailboxes with 550 and greylists ``greylist…`` ones with 451).

Before: ok@ got the report, the other two nothing, and the slot said ``sent`` (the refusals only inside
``details.delivery``), the owner was not told, the 4xx recipient was never tried again and ``retry``
refused ("sent already"). Now the slot is retried for the greylisted recipient only (Airflow's next
try: it accepts then), ends ``failed`` naming the 550 mailbox and who has the message, the owner is
told, and a later re-attempt never sends to those who have it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.pipeline.alert_run import AlertFailed
from kpi_alerts.pipeline.inputs import RunSettings
from kpi_alerts.pipeline.retry import retry_slot
from tests.factories import report_spec
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

OK, BOUNCE, GREY = "ok@org1.example.com", "bounce@org1.example.com", "greylist@org1.example.com"
OWNER = "owner@org1.example.com"


def test_refused_recipients_are_retried_recorded_and_never_sent_twice(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    fault_table: FaultTable,
) -> None:
    mailbox.handler.greylist_delay = 0.5  # greylisting: refused at first, accepted when tried again later
    spec = report_spec(
        "Daily revenue",
        recipients=[OK, BOUNCE, GREY],
        owners=[OWNER],
        hour=LOGICAL_TIME.hour,
        minute=LOGICAL_TIME.minute,
    )
    create_alert(db, spec, now=LOGICAL_TIME.replace(minute=0))

    run = fast_retries.test(logical_date=LOGICAL_TIME)

    received = mailbox.messages()
    copies = deliveries(received)
    (row,) = ledger(db)
    reports = {rcpt for (rcpt, subject) in copies if subject.startswith("[KPI report]")}
    notices = {rcpt for (rcpt, subject) in copies if not subject.startswith("[KPI report]")}
    fault_table.record(
        fault="recipients refused at RCPT: 550 (mailbox) and 451 (greylisted), one accepted",
        alerts=1,
        messages=sum(copies.values()),
        duplicates=duplicates(received),
        lost=0 if row["status"] == "failed" and BOUNCE in (row["error"] or "") else 1,
        run_state=str(run.state),
    )
    assert reports == {OK, GREY}  # the greylisted one on the next try, when it accepted
    assert duplicates(received) == 0  # the next try did not send to ok@ again
    assert row["status"] == "failed" and row["attempts"] == 2
    assert "refused bounce@org1.example.com (550" in row["error"]
    assert f"delivered to 2 of 3 recipient(s) ({OK}, {GREY})" in row["error"]
    assert sorted(row["details"]["delivered_to"]) == sorted([OK, GREY])
    assert "451" in row["attempt_history"][0]["error"]  # the first try's greylisting, kept
    assert notices == {OWNER}  # the owner hears of it (with the reason)
    assert str(run.state) == "failed"


def test_an_operator_retry_sends_only_to_those_still_without_it(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    cube_server: CubeServer,
) -> None:
    spec = report_spec("Daily", recipients=[OK, BOUNCE], hour=LOGICAL_TIME.hour, minute=LOGICAL_TIME.minute)
    alert_id = create_alert(db, spec, now=LOGICAL_TIME.replace(minute=0)).alert_id
    fast_retries.test(logical_date=LOGICAL_TIME)
    assert ledger(db)[0]["status"] == "failed"
    mailbox.clear()

    with (
        CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube,
        pytest.raises(AlertFailed, match=r"delivered to 1 of 2 recipient\(s\)"),
    ):
        retry_slot(
            db,
            alert_id,
            LOGICAL_TIME,
            source=cube,
            mailer=SmtpMailer(),
            settings=RunSettings(logical_time=datetime.now(UTC)),
        )
    assert mailbox.messages() == []  # bounce@ refused again, and ok@ is never sent the slot twice
    assert ledger(db)[0]["attempts"] == 2
