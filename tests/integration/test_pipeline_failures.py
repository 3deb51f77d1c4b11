"""Failures of Cube.js and SMTP, one alert at a time, through the real pipeline and real servers.

Transient failures (a server down) release the slot for Airflow's retry, which resumes it and sends
once; on the last try they are recorded as failed. Permanent ones (a query Cube rejects, a mailbox
the SMTP server refuses) are recorded at once. Either way the next alert is processed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack import free_port
from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.errors import TransientAlertError
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import Claimant, ClaimSettings
from kpi_alerts.pipeline.alert_run import AlertFailed, RunSettings, process_alert
from kpi_alerts.pipeline.inputs import KpiSource

pytestmark = pytest.mark.services

SLOT = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
QUERY = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": ["2026-11-01", "2026-11-07"]}],
}


def report(db: psycopg.Connection[Any], org: int, recipients: list[str], **overrides: Any) -> int:
    spec = {
        "organization_id": org,
        "alert_name": f"Revenue org {org}",
        "recipients": recipients,
        "cube_query": QUERY,
        "schedule": {
            "frequency_interval": "day",
            "schedule_hour": 17,
            "schedule_minute": 0,
            "timezone": "UTC",
            "attachment_type": "csv",
        },
        **overrides,
    }
    return create_alert(db, spec, now=SLOT - timedelta(minutes=1)).alert_id


def settings(final: bool, try_number: int = 1) -> RunSettings:
    return RunSettings(
        logical_time=SLOT + timedelta(minutes=5),
        final_attempt=final,
        claimant=Claimant(dag_run_id="test-run", try_number=try_number),
    )


def ledger(db: psycopg.Connection[Any], alert_id: int) -> dict[str, Any]:
    return db.execute(
        "SELECT r.*, cj.locked, cj.next_run_at FROM cron_job_results r JOIN kpi_alerts ka "
        "ON ka.cron_job_id = r.cron_job_id JOIN cron_jobs cj ON cj.id = r.cron_job_id "
        "WHERE ka.id = %s",
        (alert_id,),
    ).fetchone()


@pytest.fixture
def live_cube(cube_server: CubeServer) -> CubeClient:
    return CubeClient(cube_server.url, api_secret=cube_server.api_secret, backoff=0.01, backoff_max=0.05)


@pytest.fixture
def stopped_cube(cube_server: CubeServer) -> CubeClient:
    """Nothing listens on this port: the Cube process is stopped."""
    return CubeClient(
        f"http://127.0.0.1:{free_port()}",
        api_secret=cube_server.api_secret,
        retries=2,
        backoff=0.01,
        backoff_max=0.05,
    )


class ByOrganization(KpiSource):
    """Routes each organization to its own client (one tenant's Cube unreachable, the other's fine)."""

    def __init__(self, clients: Mapping[int, CubeClient]) -> None:
        self.clients = clients

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData:
        return self.clients[security_context["organization_id"]].load(
            query, security_context=security_context, timezone=timezone
        )


def test_cube_down_then_back_resumes_the_slot_and_sends_once(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    live_cube: CubeClient,
    stopped_cube: CubeClient,
) -> None:
    alert_id = report(db, 1, ["cfo@org1.example.com"])
    with pytest.raises(TransientAlertError, match="gave up after"):
        process_alert(db, alert_id, source=stopped_cube, mailer=SmtpMailer(), settings=settings(final=False))
    row = ledger(db, alert_id)
    assert row["status"] == "retrying" and not row["locked"] and "gave up after" in row["error"]

    run = process_alert(db, alert_id, source=live_cube, mailer=SmtpMailer(), settings=settings(False, 2))
    assert run.status == "sent"
    row = ledger(db, alert_id)
    assert (row["status"], row["attempts"], row["try_number"]) == ("sent", 2, 2)
    assert [m["To"] for m in mailbox.messages()] == ["cfo@org1.example.com"]
    # A third try (or a late duplicate) finds the slot finished.
    again = process_alert(db, alert_id, source=live_cube, mailer=SmtpMailer(), settings=settings(True, 3))
    assert again.status == "skipped" and len(mailbox.messages()) == 1


def test_cube_down_on_the_last_try_is_recorded_and_the_next_alert_goes_on(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    live_cube: CubeClient,
    stopped_cube: CubeClient,
) -> None:
    down = report(db, 1, ["cfo@org1.example.com"])
    fine = report(db, 2, ["cfo@org2.example.com"])
    source = ByOrganization({1: stopped_cube, 2: live_cube})
    # The last Airflow try, inside the misfire window: released for a later tick, not lost.
    with pytest.raises(TransientAlertError, match="later ticks retry the slot"):
        process_alert(db, down, source=source, mailer=SmtpMailer(), settings=settings(final=True))
    assert (
        process_alert(db, fine, source=source, mailer=SmtpMailer(), settings=settings(True)).status == "sent"
    )
    waiting = ledger(db, down)
    assert (waiting["status"], waiting["locked"], waiting["next_run_at"]) == ("retrying", False, SLOT)
    # A tick after the window closed records it as failed for good and moves the alert on.
    past_window = RunSettings(logical_time=SLOT + timedelta(minutes=65), final_attempt=True)
    assert (
        process_alert(db, down, source=source, mailer=SmtpMailer(), settings=past_window).status == "skipped"
    )
    failed = ledger(db, down)
    assert failed["status"] == "failed" and "Cube" in failed["error"] and not failed["locked"]
    assert "gave up after 1 attempt(s)" in failed["error"] and len(failed["attempt_history"]) == 1
    assert failed["next_run_at"] == SLOT + timedelta(days=1)  # moved on: nothing half-written
    assert [m["To"] for m in mailbox.messages()] == ["cfo@org2.example.com"]


def test_cube_database_down_is_retried_then_recorded(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    pg: Any,
) -> None:
    from devstack.cube import ensure_cube, stop_cube

    broken = ensure_cube(pg, port=free_port(), db_port=free_port())
    try:
        client = CubeClient(
            broken.url, api_secret=broken.api_secret, retries=2, backoff=0.01, backoff_max=0.05
        )
        alert_id = report(db, 1, ["cfo@org1.example.com"])
        with pytest.raises(AlertFailed):
            # a misfire window that closes at this tick: no later tick may retry, so it fails for good
            last_tick = RunSettings(
                logical_time=SLOT + timedelta(minutes=5),
                claim=ClaimSettings(misfire_window=timedelta(minutes=5)),
            )
            process_alert(db, alert_id, source=client, mailer=SmtpMailer(), settings=last_tick)
        row = ledger(db, alert_id)
        assert row["status"] == "failed" and "ECONNREFUSED" in row["error"] and "stack" not in row["error"]
        assert mailbox.messages() == []
    finally:
        stop_cube(broken.port, remove_log=True)


def test_smtp_down_is_transient_and_a_refused_mailbox_is_permanent(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    live_cube: CubeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = report(db, 1, ["bounce@org1.example.com"])
    fine = report(db, 2, ["cfo@org2.example.com"])
    with pytest.raises(AlertFailed, match="refused every recipient"):
        process_alert(db, refused, source=live_cube, mailer=SmtpMailer(), settings=settings(final=False))
    assert ledger(db, refused)["status"] == "failed"

    smtp = json.loads(airflow_connections["AIRFLOW_CONN_SMTP_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({**smtp, "port": free_port()}))
    with pytest.raises(TransientAlertError, match="SMTP"):
        process_alert(db, fine, source=live_cube, mailer=SmtpMailer(), settings=settings(final=False))
    assert ledger(db, fine)["status"] == "retrying"  # not 'sending': nothing went out, the retry may send
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(smtp))
    assert (
        process_alert(db, fine, source=live_cube, mailer=SmtpMailer(), settings=settings(True, 2)).status
        == "sent"
    )
    assert [m["To"] for m in mailbox.messages()] == ["cfo@org2.example.com"]


def test_alert_creation_checks_the_query_against_cube_meta(
    db: psycopg.Connection[Any],
    live_cube: CubeClient,
) -> None:
    from kpi_alerts.errors import AlertValidationError

    meta = live_cube.meta({"organization_id": 1})
    with pytest.raises(AlertValidationError, match=r"orders\.nope"):
        create_alert(
            db,
            {
                "organization_id": 1,
                "alert_name": "x",
                "recipients": ["a@example.com"],
                "cube_query": {"measures": ["orders.nope"]},
                "threshold": {"condition": "GREATER_THAN", "threshold_value": 1},
            },
            cube_meta=meta,
        )
    assert db.execute("SELECT count(*) AS n FROM kpi_alerts").fetchone()["n"] == 0


def test_failure_notices_go_out_once_per_streak(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    live_cube: CubeClient,
) -> None:
    """A report's owners hear of the first failure only; a threshold alert's ERROR state re-arms."""
    bad_query = {"measures": ["orders.nope"]}
    report_id = report(
        db, 1, ["cfo@org1.example.com"], owners=["owner@org1.example.com"], cube_query=bad_query
    )
    threshold_id = create_alert(
        db,
        {
            "organization_id": 2,
            "alert_name": "Broken threshold",
            "recipients": ["ops@org2.example.com"],
            "cube_query": bad_query,
            "threshold": {
                "condition": "GREATER_THAN",
                "threshold_value": 1,
                "timezone": "UTC",
                "rearm_minutes": 120,
            },
        },
        now=SLOT - timedelta(minutes=1),
    ).alert_id
    db.execute("UPDATE cron_jobs SET next_run_at = %s", (SLOT,))
    notices: list[list[str]] = []
    for hour in range(3):  # three hourly ticks; the daily report is made due each time
        mailbox.clear()
        db.execute(
            "UPDATE cron_jobs cj SET next_run_at = %s FROM kpi_alerts ka "
            "WHERE ka.cron_job_id = cj.id AND ka.id = %s",
            (SLOT + timedelta(hours=hour), report_id),
        )
        tick = RunSettings(logical_time=SLOT + timedelta(hours=hour, minutes=5), final_attempt=True)
        for alert_id in (report_id, threshold_id):
            with pytest.raises(AlertFailed, match=r"orders\.nope"):
                process_alert(db, alert_id, source=live_cube, mailer=SmtpMailer(), settings=tick)
        notices.append(sorted(str(m["To"]) for m in mailbox.messages()))

    assert notices == [["ops@org2.example.com", "owner@org1.example.com"], [], ["ops@org2.example.com"]]
    state = db.execute("SELECT state FROM kpi_thresholds WHERE kpi_alert_id = %s", (threshold_id,)).fetchone()
    assert state["state"] == "ERROR"
    subjects = [str(m["Subject"]) for m in mailbox.messages()]
    assert subjects and all(s.startswith("[KPI alert] Failed: Broken threshold") for s in subjects), subjects


def test_a_worker_whose_claim_was_taken_over_stops_without_sending(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    live_cube: CubeClient,
) -> None:
    """A hung worker (its lease expired while Cube was slow) must not send once another took over."""
    from kpi_alerts.ledger.alert_store import load_alert
    from kpi_alerts.ledger.claim_terms import Claim, ClaimSettings
    from kpi_alerts.ledger.claims import claim_slot

    alert_id = report(db, 1, ["cfo@org1.example.com"])
    short = ClaimSettings(lease=timedelta(seconds=1))
    taken_over: list[Any] = []

    class SlowCube(KpiSource):
        """While the first worker fetches, its lease expires and a second claimant takes the slot."""

        def load(self, query: Mapping[str, Any], **kwargs: Any) -> KpiData:
            alert = load_alert(db, alert_id)
            assert alert is not None
            later = datetime.now(UTC) + timedelta(seconds=5)
            taken_over.append(
                claim_slot(
                    db,
                    alert,
                    logical_time=SLOT + timedelta(minutes=5),
                    now=later,
                    claimant=Claimant(worker="second"),
                    settings=short,
                )
            )
            return live_cube.load(query, **kwargs)

    hung = RunSettings(logical_time=SLOT + timedelta(minutes=5), claim=short)
    run = process_alert(db, alert_id, source=SlowCube(), mailer=SmtpMailer(), settings=hung)

    assert run.status == "skipped" and "taken over" in run.detail
    assert isinstance(taken_over[0], Claim) and taken_over[0].took_over
    assert mailbox.messages() == []
    row = ledger(db, alert_id)
    assert row["status"] == "claimed" and row["claimed_by"] == "second" and row["takeovers"] == 1


def test_inactive_alerts_leave_the_due_index_and_come_back_when_reactivated(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    live_cube: CubeClient,
) -> None:
    from kpi_alerts.ledger.due_alerts import initialise_first_runs, list_due_alerts, park_inactive_alerts

    alert_id = report(db, 1, ["cfo@org1.example.com"])
    db.execute("UPDATE kpi_alerts SET is_active = false WHERE id = %s", (alert_id,))
    tick = SLOT + timedelta(minutes=5)
    assert park_inactive_alerts(db, logical_time=tick) == 1
    assert db.execute("SELECT next_run_at FROM cron_jobs").fetchone()["next_run_at"] is None
    assert list_due_alerts(db, logical_time=tick, limit=10) == []

    db.execute("UPDATE kpi_alerts SET is_active = true WHERE id = %s", (alert_id,))
    assert initialise_first_runs(db, logical_time=tick, oldest_slot=tick - timedelta(hours=1)) == 1
    assert [d.alert_id for d in list_due_alerts(db, logical_time=tick, limit=10)] == [alert_id]
    assert (
        process_alert(db, alert_id, source=live_cube, mailer=SmtpMailer(), settings=settings(True)).status
        == "sent"
    )
