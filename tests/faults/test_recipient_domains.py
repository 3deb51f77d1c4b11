"""Issue 23 item 11: data leaving the organization. A per-organization recipient domain allow-list
(``kpi_organization_settings.recipient_domains``, migration 0011; ``python -m kpi_alerts
recipient-domains ORG DOMAIN...``), applied to recipients, owners and test sends, on the real CLI,
pipeline, PostgreSQL, Cube.js and SMTP.

Before: an editor's ``test-send`` sent any organization's live data to any address
(``attacker@evil.example`` got organization 2's KPI). Now an address outside the list is refused with
one line wherever it is given, and an alert that already had one (created by plain SQL, or before the
list) fails its slot naming it, sending nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts import cli
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import AlertFailed, process_alert
from kpi_alerts.pipeline.inputs import RunSettings
from tests.factories import report_spec
from tests.fault_table import FaultTable, deliveries
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.services]

EVIL = "attacker@evil.example"


def run_cli(db_url: str, *args: str) -> int:
    try:
        return cli.main(["--db", db_url, *args])
    except SystemExit as exit_:  # argparse's refusals
        return int(exit_.code or 0)


def test_addresses_outside_the_organizations_domains_are_refused_everywhere(
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    cube_server: CubeServer,
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fault_table: FaultTable,
) -> None:
    # made before the list (the seed's way would do the same): a recipient and an owner outside it
    legacy = due_report(db, "Legacy", ["cfo@org2.example.com", EVIL], org=2)
    db.execute("UPDATE kpi_alerts SET owners = %s WHERE id = %s", [[EVIL], legacy])
    assert run_cli(alerts_db_url, "recipient-domains", "2", "ORG2.example.com") == 0
    assert "organization 2 may send to: org2.example.com" in capsys.readouterr().out

    refusals: list[str] = []
    spec = tmp_path / "alert.json"
    for recipients, owners in (([EVIL], []), (["cfo@org2.example.com"], [EVIL])):
        spec.write_text(json.dumps(report_spec("New", org=2, recipients=recipients, owners=owners)))
        assert run_cli(alerts_db_url, "create-alert", str(spec)) == 2
        refusals.append(capsys.readouterr().err.strip())
    spec.write_text(json.dumps(report_spec("Sub", org=2, recipients=["cfo@sales.org2.example.com"])))
    assert run_cli(alerts_db_url, "create-alert", str(spec)) == 0  # a subdomain is inside
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"recipients": ["cfo@org2.example.com", EVIL]}))
    assert run_cli(alerts_db_url, "update-alert", str(legacy), str(patch)) == 2
    refusals.append(capsys.readouterr().err.strip())
    assert run_cli(alerts_db_url, "test-send", str(legacy), "--to", EVIL) == 2
    refusals.append(capsys.readouterr().err.strip())
    assert all(
        len(r.splitlines()) == 1 and EVIL in r and "outside organization 2's allowed recipient domains" in r
        for r in refusals
    ), refusals

    settings = RunSettings(logical_time=LOGICAL_TIME, claimant=Claimant(dag_run_id="domains"))
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube, pytest.raises(AlertFailed):
        process_alert(db, legacy, source=cube, mailer=SmtpMailer(), settings=settings)
    (row,) = [r for r in ledger(db) if r["kpi_alert_id"] == legacy]

    received = mailbox.messages()
    fault_table.record(
        fault="recipients, owners, test send outside the organization's domains",
        alerts=1,
        messages=sum(deliveries(received).values()),
        duplicates=0,
        lost=0 if row["status"] == "failed" else 1,
        run_state="n/a: 4 refusals (exit 2), the legacy slot failed",
    )
    assert received == []  # nothing left: not the report, not the test, not the owner's notice
    assert row["status"] == "failed" and EVIL in row["error"] and "allowed recipient domains" in row["error"]
    assert db.execute("SELECT count(*) AS n FROM kpi_alerts").fetchone()["n"] == 2  # Legacy and Sub only
