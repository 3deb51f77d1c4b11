"""Attempting a failed slot again — a later try of the same DAG run (a cleared task instance) and
``python -m kpi_alerts retry ALERT SLOT`` — against real PostgreSQL, Cube.js and SMTP servers.

The rule (``reattempts.why_not_reattempted``): a failed slot runs again and is sent once; a slot that was
sent, or may have been (``sending``, ``delivery_unknown``), is never sent again, except that an
operator may replay a ``delivery_unknown`` one explicitly (``--replay``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cli import main
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_changes import pause_alert, update_alert
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.ledger.reattempts import why_not_reattempted
from kpi_alerts.pipeline.alert_run import AlertFailed, RunSettings, process_alert

pytestmark = pytest.mark.services

SLOT = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
SLOT_TEXT = "2026-12-07 17:00Z"  # as `history` prints it
QUERY = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": ["2026-11-01", "2026-11-07"]}],
}
BROKEN = {"measures": ["orders.nope"]}  # Cube refuses it: a permanent failure, recorded at once
RUN = "scheduled__2026-12-07T17:05:00+00:00"


def report(db: psycopg.Connection[Any], **overrides: Any) -> int:
    spec = {
        "organization_id": 1,
        "alert_name": "Revenue",
        "recipients": ["cfo@org1.example.com"],
        "owners": ["owner@org1.example.com"],
        "cube_query": BROKEN,
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


def try_of_the_run(try_number: int, map_index: int = 0) -> RunSettings:
    """What the DAG passes: a clear of the task instance makes a later try of the same run and map index."""
    return RunSettings(
        logical_time=SLOT + timedelta(minutes=5),
        claimant=Claimant(dag_run_id=RUN, task_instance=f"process_alert[{map_index}]", try_number=try_number),
    )


def row(db: psycopg.Connection[Any], alert_id: int) -> dict[str, Any]:
    return db.execute(
        "SELECT r.* FROM cron_job_results r JOIN kpi_alerts ka ON ka.cron_job_id = r.cron_job_id "
        "WHERE ka.id = %s",
        (alert_id,),
    ).fetchone()


@pytest.fixture
def cube(cube_server: CubeServer) -> CubeClient:
    return CubeClient(cube_server.url, api_secret=cube_server.api_secret, backoff=0.01, backoff_max=0.05)


def failed_once(db: psycopg.Connection[Any], cube: CubeClient, mailbox: MailCatcher, **overrides: Any) -> int:
    """A report whose first run failed (a query Cube refuses), then fixed by its owner."""
    alert_id = report(db, **overrides)
    with pytest.raises(AlertFailed, match=r"orders\.nope"):
        process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(1))
    assert row(db, alert_id)["status"] == "failed"
    assert [m["To"] for m in mailbox.messages()] == ["owner@org1.example.com"]  # the failure notice
    mailbox.clear()
    update_alert(db, alert_id, {"cube_query": QUERY}, actor="test")
    return alert_id


def cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--db", url])
    out, err = capsys.readouterr()
    return code, out, err


class TestTheRule:
    @pytest.mark.parametrize("status", ["failed", "retrying", "claimed"])
    def test_nothing_went_out_so_it_may_run_again(self, status: str) -> None:
        assert why_not_reattempted(status) is None

    @pytest.mark.parametrize("status", ["sent", "sending", "delivery_unknown"])
    def test_what_may_have_gone_out_is_never_sent_again(self, status: str) -> None:
        assert why_not_reattempted(status) is not None

    def test_only_an_explicit_replay_resends_an_unconfirmed_delivery(self) -> None:
        assert why_not_reattempted("delivery_unknown", replay=True) is None
        assert why_not_reattempted("sent", replay=True) is not None
        assert why_not_reattempted("sending", replay=True) is not None

    @pytest.mark.parametrize("status", ["gated", "not_triggered", "suppressed", "skipped", "missed"])
    def test_a_slot_that_did_not_fail_is_not_re_attempted(self, status: str) -> None:
        assert status in str(why_not_reattempted(status)) or "missed" in str(why_not_reattempted(status))


class TestAClearedTaskInstance:
    def test_a_later_try_of_the_run_sends_its_failed_slot_once(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        # Today's bug: the alert moved on to tomorrow, so the cleared try said "not due until …" and sent nothing.
        run = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(2))

        assert (run.status, run.slot) == ("sent", SLOT.isoformat())
        assert [m["To"] for m in mailbox.messages()] == ["cfo@org1.example.com"]
        result = row(db, alert_id)
        assert (result["status"], result["attempts"], result["try_number"], result["error"]) == (
            "sent",
            2,
            2,
            None,
        )
        (earlier,) = result["attempt_history"]  # the failure is kept
        assert (
            earlier["status"] == "failed" and "orders.nope" in earlier["error"] and earlier["try_number"] == 1
        )
        next_run = db.execute(
            "SELECT next_run_at, locked FROM cron_jobs WHERE id = %s", (result["cron_job_id"],)
        )
        assert next_run.fetchone() == {"next_run_at": SLOT + timedelta(days=1), "locked": False}

        # Cleared again (or retried): the slot was sent, so it is never sent again.
        again = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(3))
        assert again.status == "skipped" and "sent already" in again.detail
        assert len(mailbox.messages()) == 1 and row(db, alert_id)["attempts"] == 2

    def test_the_same_try_or_another_run_does_not_re_attempt(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        same_try = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(1))
        other_run = RunSettings(
            logical_time=SLOT + timedelta(minutes=10),
            claimant=Claimant(
                dag_run_id="scheduled__2026-12-07T17:10:00+00:00", task_instance="process_alert[0]"
            ),
        )
        later_tick = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=other_run)
        assert same_try.status == later_tick.status == "skipped"
        assert "not due" in later_tick.detail
        assert mailbox.messages() == [] and row(db, alert_id)["status"] == "failed"

    def test_failing_again_is_recorded_and_tells_the_owners_only_once(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        update_alert(db, alert_id, {"cube_query": BROKEN}, actor="test")  # the fix was wrong
        with pytest.raises(AlertFailed, match=r"orders\.nope"):
            process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(2))
        result = row(db, alert_id)
        assert (result["status"], result["attempts"]) == ("failed", 2) and len(result["attempt_history"]) == 1
        assert mailbox.messages() == []  # the owners heard of this slot's failure the first time

    @pytest.mark.parametrize("status", ["sending", "delivery_unknown"])
    def test_a_slot_that_may_have_been_delivered_is_not_resent_by_a_clear(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
        status: str,
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        db.execute(  # e.g. the worker died during SMTP delivery, its lease long expired
            "UPDATE cron_job_results SET status = %s, lease_expires_at = %s WHERE kpi_alert_id = %s",
            (status, SLOT, alert_id),
        )
        run = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(2))
        assert run.status == "skipped"
        assert mailbox.messages() == [] and row(db, alert_id)["status"] == "delivery_unknown"


class TestRetryCommand:
    def test_retry_sends_a_failed_slot_once_then_refuses(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
        alerts_db_url: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)

        code, out, err = cli(capsys, alerts_db_url, "retry", str(alert_id), SLOT_TEXT)

        assert (code, err) == (0, "")
        assert out.strip() == (
            f"alert {alert_id} slot {SLOT.isoformat()}: sent — report sent to 1 recipient(s) via smtp"
        )
        assert [m["To"] for m in mailbox.messages()] == ["cfo@org1.example.com"]
        result = row(db, alert_id)
        assert (result["status"], result["attempts"], result["dag_run_id"]) == (
            "sent",
            2,
            RUN,
        )  # still its run's
        assert result["claimed_by"].startswith("cli:") and result["task_instance"] == "cli retry"

        code, out, err = cli(capsys, alerts_db_url, "retry", str(alert_id), SLOT.isoformat())
        assert code == 2 and out == ""
        assert err.strip() == (
            f"error: alert {alert_id}: slot {SLOT.isoformat()} is not attempted again: "
            "it was sent already; a slot is never sent twice"
        )
        assert len(mailbox.messages()) == 1

    def test_delivery_unknown_is_refused_unless_replayed(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
        alerts_db_url: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        db.execute(
            "UPDATE cron_job_results SET status = 'delivery_unknown', message_id = '<m@x>' WHERE kpi_alert_id = %s",
            (alert_id,),
        )

        code, _, err = cli(capsys, alerts_db_url, "retry", str(alert_id), SLOT_TEXT)
        assert code == 2 and "delivery_unknown" in err and "--replay" in err and len(err.splitlines()) == 1
        assert mailbox.messages() == []

        code, out, err = cli(capsys, alerts_db_url, "retry", str(alert_id), SLOT_TEXT, "--replay")
        assert code == 0 and "sent" in out
        assert [m["To"] for m in mailbox.messages()] == ["cfo@org1.example.com"]
        (earlier,) = row(db, alert_id)["attempt_history"]
        assert earlier["status"] == "delivery_unknown"

    @pytest.mark.parametrize(
        ("setup", "expected"),
        [
            ("UPDATE cron_job_results SET status = 'gated', error = NULL", "finished as gated"),
            ("UPDATE cron_job_results SET status = 'missed'", "missed"),
            (
                "UPDATE cron_job_results SET status = 'sending', lease_expires_at = now() + interval '1 hour', "
                "claimed_by = 'vm:42'",
                "being processed by vm:42",
            ),
            (
                "UPDATE cron_job_results SET status = 'claimed', lease_expires_at = now() + interval '1 hour', "
                "claimed_by = 'vm:42'",
                "being processed by vm:42",
            ),
            ("DELETE FROM cron_job_results", "has no ledger row"),
            ("UPDATE cron_jobs SET master_locked = true", "paused"),
            ("UPDATE kpi_alerts SET is_active = false", "inactive"),
        ],
    )
    def test_refusals_are_one_line_and_change_nothing(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
        alerts_db_url: str,
        capsys: pytest.CaptureFixture[str],
        setup: str,
        expected: str,
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        db.execute(setup)
        before = db.execute("SELECT * FROM cron_job_results ORDER BY id").fetchall()

        code, out, err = cli(capsys, alerts_db_url, "retry", str(alert_id), SLOT_TEXT)

        assert (code, out) == (2, "")
        assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
        assert db.execute("SELECT * FROM cron_job_results ORDER BY id").fetchall() == before
        assert mailbox.messages() == []

    def test_unknown_alert_and_bad_slot(
        self, db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = cli(capsys, alerts_db_url, "retry", "999999", SLOT_TEXT)
        assert code == 2 and err.strip() == "error: alert 999999 does not exist"
        with pytest.raises(SystemExit) as exit_:
            main(["retry", "1", "yesterday", "--db", alerts_db_url])
        assert (
            exit_.value.code == 2 and "expected the slot as an ISO date and time" in capsys.readouterr().err
        )

    def test_a_retry_that_fails_again_exits_1_with_the_reason(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
        alerts_db_url: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        update_alert(db, alert_id, {"cube_query": BROKEN}, actor="test")

        code, out, err = cli(capsys, alerts_db_url, "retry", str(alert_id), SLOT_TEXT)

        assert code == 1 and out == "" and len(err.splitlines()) == 1
        assert err.startswith(f"error: alert {alert_id} (Revenue) failed: ") and "orders.nope" in err
        assert row(db, alert_id)["status"] == "failed" and mailbox.messages() == []

    def test_a_threshold_slot_superseded_by_a_later_evaluation_is_refused(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
        alerts_db_url: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        created = create_alert(
            db,
            {
                "organization_id": 1,
                "alert_name": "Orders above 1",
                "recipients": ["ops@org1.example.com"],
                "cube_query": {"measures": ["orders.count"]},
                "threshold": {"condition": "GREATER_THAN", "threshold_value": "1", "timezone": "UTC"},
            },
            now=SLOT - timedelta(minutes=1),
        )
        for slot, status in ((SLOT, "failed"), (SLOT + timedelta(hours=1), "not_triggered")):
            db.execute(
                "INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, "
                "started_at, finished_at, updated_at, error) VALUES (%s, %s, 1, %s, %s, %s, %s, %s, 'Cube down')",
                (created.cron_job_id, created.alert_id, slot, status, slot, slot, slot),
            )

        code, _, err = cli(capsys, alerts_db_url, "retry", str(created.alert_id), SLOT_TEXT)

        assert code == 2 and "superseded" in err and "2026-12-07T18:00:00+00:00 (not_triggered)" in err
        assert mailbox.messages() == []

    def test_a_paused_alert_is_not_re_attempted_by_a_clear_either(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
    ) -> None:
        alert_id = failed_once(db, cube, mailbox)
        pause_alert(db, alert_id, actor="test")
        run = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(2))
        assert run.status == "skipped" and "paused" in run.detail and mailbox.messages() == []


class TestAClearedDagRun:
    """Clearing the whole run (the UI's Clear on a DAG run) runs its due listing again as a later try: the
    alerts whose slot the run left unsent are listed again, though they are no longer due."""

    def test_a_later_try_of_the_listing_lists_the_runs_unsent_alerts(
        self,
        db: psycopg.Connection[Any],
        cube: CubeClient,
        mailbox: MailCatcher,
        airflow_connections: dict[str, str],
    ) -> None:
        from types import SimpleNamespace

        from kpi_alerts.operators.tasks import find_due_alerts

        alert_id = failed_once(db, cube, mailbox)
        sent = report(db, alert_name="Sent fine", cube_query=QUERY)
        assert (
            process_alert(db, sent, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(1)).status
            == "sent"
        )

        def listing(try_number: int) -> list[dict[str, Any]]:
            context = {
                "run_id": RUN,
                "logical_date": SLOT + timedelta(minutes=5),
                "ti": SimpleNamespace(try_number=try_number),
            }
            return find_due_alerts(context)

        assert listing(1) == []  # the first try lists due alerts only: nothing is due any more
        assert listing(2) == [
            {
                "alerts": [{"alert_id": alert_id, "alert_name": "Revenue"}],
                "label": f"alert {alert_id}: Revenue",
            }
        ]

        # Its task instance (a new map index, a later try) re-attempts the slot; a third listing has nothing.
        run = process_alert(
            db, alert_id, source=cube, mailer=SmtpMailer(), settings=try_of_the_run(2, map_index=0)
        )
        assert run.status == "sent" and [m["To"] for m in mailbox.messages()] == ["cfo@org1.example.com"] * 2
        assert listing(3) == []


def test_retry_without_the_cube_connection_refuses_before_claiming(
    db: psycopg.Connection[Any],
    cube: CubeClient,
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    alerts_db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A laptop without the connections must not record the slot as failed once more."""
    alert_id = failed_once(db, cube, mailbox)
    before = row(db, alert_id)
    monkeypatch.delenv("AIRFLOW_CONN_CUBE_DEFAULT")

    code, out, err = cli(capsys, alerts_db_url, "retry", str(alert_id), SLOT_TEXT)

    assert (code, out) == (2, "") and "'cube_default' is not available here" in err
    assert len(err.strip().splitlines()) == 1 and row(db, alert_id) == before
