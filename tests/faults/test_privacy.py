"""Privacy and leaks (issue 9, item 8), through the real DAG (``dag.test()``), PostgreSQL, Cube.js and SMTP.

- A report to 100 customers put all of them in ``To:``: each saw the 99 others. By default
  (``kpi_alerts_recipient_privacy`` = ``bcc``) the message says ``To: undisclosed-recipients:;`` and
  the recipients are envelope recipients only.
- Failure notices sent to recipients (a threshold alert without owners) carried Cube's answer and
  request id; recipients now get a generic line, owners the detail.
- A Cube URL with ``user:pass@`` was echoed into errors, the ledger and notices: it is redacted.
- Message-IDs were sha256(cron_job_id, slot)@kpi-alerts.local — equal across deployments. They now
  use the deployment's domain and a random token drawn once per slot (kept across its retries).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from devstack import free_port
from devstack.mail import MailCatcher
from kpi_alerts.delivery.email_message import slot_message_key
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from kpi_alerts.ledger.claim_terms import Claim, Claimant
from kpi_alerts.ledger.claims import claim_slot
from kpi_alerts.ledger.outcomes import release_for_retry
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

CUSTOMERS = [f"customer{n:03d}@org1.example.com" for n in range(100)]


def failing_threshold(
    db: psycopg.Connection[Any], name: str, recipients: list[str], owners: list[str]
) -> int:
    """A threshold alert whose query Cube rejects (an unknown member: permanent)."""
    return create_alert(
        db,
        {
            "organization_id": 1,
            "alert_name": name,
            "recipients": recipients,
            "owners": owners,
            "cube_query": {"measures": ["orders.no_such_measure"]},
            "threshold": {"condition": ">", "threshold_value": 1, "timezone": "UTC"},
        },
        now=LOGICAL_TIME - timedelta(minutes=4),
    ).alert_id


def raw(message: Any) -> str:
    """The message as its recipients see it: without the catcher's own envelope headers."""
    copy = message.__class__(policy=message.policy)
    for name, value in message.items():
        if not name.lower().startswith("x-envelope-"):
            copy[name] = value
    copy.set_payload(message.get_payload())
    return copy.as_string()


def test_recipients_stay_private_and_notices_say_only_what_they_should(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    fault_table: FaultTable,
) -> None:
    report = due_report(db, "Weekly numbers", CUSTOMERS)
    silent = failing_threshold(db, "No owners", ["viewer@org1.example.com"], [])
    owned = failing_threshold(db, "With owners", ["viewer2@org1.example.com"], ["owner@org1.example.com"])

    dag_run = kpi_dag.test(logical_date=LOGICAL_TIME)

    received = mailbox.messages()
    rows = {r["kpi_alert_id"]: r for r in ledger(db)}
    copies = deliveries(received)
    fault_table.record(
        fault="report to 100 recipients; failure notices to recipients and owners",
        alerts=3,
        messages=sum(copies.values()),
        duplicates=duplicates(received),
        lost=sum(1 for a in (report, silent, owned) if a not in rows),
        run_state=str(dag_run.state),
    )
    (sent,) = [m for m in received if m["Subject"].startswith("[KPI report]")]
    assert sorted(rcpt for rcpt, _ in copies if rcpt in CUSTOMERS) == CUSTOMERS  # each exactly once
    assert duplicates(received) == 0
    assert str(sent["To"]) == "undisclosed-recipients:;" and sent["Bcc"] is None and sent["Cc"] is None
    assert not any(customer in raw(sent) for customer in CUSTOMERS)  # nobody sees anybody
    assert sent["Message-ID"].endswith("@example.com>")  # the deployment's (sender's) domain
    assert rows[report]["message_id"] == sent["Message-ID"]

    notices = {str(m["X-Envelope-To"]): m for m in received if m["X-KPI-Alert-Kind"] == "alert_error"}
    assert set(notices) == {"viewer@org1.example.com", "owner@org1.example.com"}
    generic, detailed = (
        notices[a].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for a in ("viewer@org1.example.com", "owner@org1.example.com")
    )
    for leak in ("no_such_measure", "request", "Cube", "127.0.0.1", "HTTP"):
        assert leak not in generic, leak
    assert "could not be retrieved or checked" in generic
    assert "no_such_measure" in detailed  # owners get the reason (also in the ledger)
    assert "no_such_measure" in rows[silent]["error"] and rows[silent]["status"] == "failed"
    assert str(dag_run.state) == "failed"


def test_credentials_in_the_cube_url_are_never_recorded(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    fault_table: FaultTable,
) -> None:
    cube = json.loads(airflow_connections["AIRFLOW_CONN_CUBE_DEFAULT"])
    cube.update(host="http://admin:hunter2@127.0.0.1", port=free_port(), extra={"retries": 0})
    monkeypatch.setenv("AIRFLOW_CONN_CUBE_DEFAULT", json.dumps(cube))  # nothing listens there
    alert_id = due_report(db, "Report", ["r@org1.example.com"])

    dag_run = fast_retries.test(logical_date=LOGICAL_TIME)

    (row,) = ledger(db)
    fault_table.record(
        fault="Cube URL with user:pass@, Cube unreachable",
        alerts=1,
        messages=len(mailbox.messages()),
        duplicates=0,
        lost=0,  # retrying: later ticks continue it inside the misfire window
        run_state=str(dag_run.state),
    )
    recorded = json.dumps({k: row[k] for k in ("error", "attempt_history")}, default=str)
    assert row["kpi_alert_id"] == alert_id and row["status"] == "retrying"
    assert "unreachable" in recorded and "http://***@127.0.0.1" in recorded
    assert "hunter2" not in recorded and "admin" not in recorded
    assert str(dag_run.state) == "failed"


def test_a_slots_message_id_is_random_once_and_stable_across_its_retries(db: psycopg.Connection[Any]) -> None:
    alert_id = due_report(db, "Report", ["r@org1.example.com"])
    alert = load_alert(db, alert_id)
    assert alert is not None
    first, second = (
        Claimant(dag_run_id="run", task_instance="process_alert[0]", try_number=n) for n in (1, 2)
    )
    claim = claim_slot(db, alert, logical_time=LOGICAL_TIME, now=LOGICAL_TIME, claimant=first)
    assert isinstance(claim, Claim) and claim.message_token is not None
    release_for_retry(db, claim, now=LOGICAL_TIME, error="SMTP 421")
    retry = claim_slot(db, alert, logical_time=LOGICAL_TIME, now=LOGICAL_TIME, claimant=second)
    assert isinstance(retry, Claim) and retry.attempts == 2
    assert slot_message_key(retry.cron_job_id, retry.slot, retry.message_token) == slot_message_key(
        claim.cron_job_id, claim.slot, claim.message_token
    )  # same slot: same Message-ID
    # Another deployment (here: the same ids after the ledger was reset) draws another token.
    db.execute("TRUNCATE cron_job_results")
    db.execute(
        "UPDATE cron_jobs SET locked = false, next_run_at = %s, last_ran_at_date = NULL, "
        "last_ran_at_hour = NULL, last_ran_at_minute = NULL",
        [LOGICAL_TIME],
    )
    other = claim_slot(db, alert, logical_time=LOGICAL_TIME, now=LOGICAL_TIME, claimant=first)
    assert isinstance(other, Claim) and other.cron_job_id == claim.cron_job_id and other.slot == claim.slot
    assert slot_message_key(other.cron_job_id, other.slot, other.message_token) != slot_message_key(
        claim.cron_job_id, claim.slot, claim.message_token
    )
