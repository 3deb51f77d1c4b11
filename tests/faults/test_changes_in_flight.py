"""Issue 23 item 9: an operator's change while a slot is in flight, through the real pipeline, Cube.js,
PostgreSQL and SMTP. The change is made with the command line (its own connection, committed) from inside
the Cube fetch — the moment a slow Cube answer leaves open — so the race is the same on every run.

Before: ``update-alert`` (new recipients), ``delete-alert`` and ``pause`` were each acknowledged during a
slow Cube answer, and all three alerts were then sent to their old recipients — the deleted one
included. Now a pause or a deletion acknowledged before the send stops it (the slot is recorded
``skipped`` with the reason), and an update says that the in-flight slot goes out under the old
definition.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts import cli
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import process_alert
from kpi_alerts.pipeline.inputs import KpiSource, RunSettings
from tests.fault_table import FaultTable, deliveries
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.services]

OLD, NEW = "old@org1.example.com", "new@org1.example.com"


class ChangedDuringFetch(KpiSource):
    """The real Cube; ``change`` runs once, while the first answer is awaited."""

    def __init__(self, cube: CubeClient, change: Callable[[], None]) -> None:
        self.cube, self.change = cube, change
        self.done = False

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData:
        if not self.done:
            self.done = True
            self.change()
        return self.cube.load(query, security_context=security_context, timezone=timezone)


def test_pause_and_delete_stop_an_in_flight_slot_and_an_update_says_it_goes_out_as_it_was(
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    cube_server: CubeServer,
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fault_table: FaultTable,
) -> None:
    updated, deleted, paused = (due_report(db, name, [OLD]) for name in ("Updated", "Deleted", "Paused"))
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"recipients": [NEW]}))
    changes = {
        updated: ["update-alert", str(updated), str(patch)],
        deleted: ["delete-alert", str(deleted)],
        paused: ["pause", str(paused)],
    }
    said: dict[int, str] = {}
    settings = RunSettings(logical_time=LOGICAL_TIME, claimant=Claimant(dag_run_id="in-flight"))
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        for alert_id, command in changes.items():

            def change(command: list[str] = command, alert_id: int = alert_id) -> None:
                assert cli.main(["--db", alerts_db_url, *command]) == 0  # acknowledged
                said[alert_id] = capsys.readouterr().out

            source = ChangedDuringFetch(cube, change)
            process_alert(db, alert_id, source=source, mailer=SmtpMailer(), settings=settings)

    rows = {r["alert_name"]: r for r in ledger(db)}
    # the deleted alert's row has no kpi_alerts row to join any more
    rows["Deleted"] = db.execute(
        "SELECT * FROM cron_job_results WHERE kpi_alert_id = %s", [deleted]
    ).fetchone()
    received = mailbox.messages()
    copies = deliveries(received)
    fault_table.record(
        fault="update / delete / pause acknowledged while the slot's Cube answer is awaited",
        alerts=3,
        messages=sum(copies.values()),
        duplicates=0,
        lost=0 if {r["status"] for n, r in rows.items() if n != "Updated"} == {"skipped"} else 1,
        run_state="n/a (pipeline): 1 sent as it was, 2 stopped (skipped)",
    )
    assert [rcpt for rcpt, _ in copies] == [OLD]  # only the updated alert's in-flight slot, as it was
    assert rows["Updated"]["status"] == "sent"
    assert "goes out under the previous definition" in said[updated] and "note: slot" in said[updated]
    assert rows["Deleted"]["status"] == "skipped" and "deleted by an operator" in rows["Deleted"]["error"]
    assert rows["Paused"]["status"] == "skipped" and "paused by an operator" in rows["Paused"]["error"]
    locked = db.execute("SELECT id, locked FROM cron_jobs").fetchall()
    assert not any(r["locked"] for r in locked)  # no claim left holding its alert
