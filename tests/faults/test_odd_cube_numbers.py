"""Issue 23 items 5 and 6: odd numbers from Cube, through the real pipeline, the real Cube.js behind the
fault suite's proxy (``cube_proxy``: a real Cube over PostgreSQL never answers ``sNaN``, ``1_000`` or a
time of ``not-a-date``; the proxy rewrites a real answer's values), PostgreSQL and SMTP.

Before: ``1e308`` failed a slot with ``internal error: InvalidOperation: [<class
'decimal.InvalidOperation'>]`` (and the owner's notice said so); ``preview`` printed a traceback for
``1e308``, ``sNaN`` and ``not-a-date``; ``NaN`` / ``Infinity`` were written in every cell of the e-mail,
with no headline and no note; zero rows gave an empty report without a word; ``-0`` read "now -0";
``1_000`` was taken as 1000. Now every value Cube sends is read by one rule
(:func:`kpi_alerts.cube.rest_format.cube_number`).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts import cli
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import AlertFailed, process_alert
from kpi_alerts.pipeline.inputs import RunSettings
from tests.factories import report_spec, threshold_spec
from tests.fault_table import FaultTable
from tests.faults.conftest import LOGICAL_TIME, ledger
from tests.faults.cube_proxy import ProxySettings, cube_proxy

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

DAILY = {
    "measures": ["orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 7 days"}],
}
SLOT = LOGICAL_TIME.replace(minute=0)  # a threshold alert's hourly slot, a report's daily one


@pytest.fixture
def proxied(
    cube_server: CubeServer, airflow_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The proxy, with ``cube_default`` (for the CLI) pointed at it too."""
    with cube_proxy(cube_server.url) as (url, settings):
        conn = json.loads(airflow_connections["AIRFLOW_CONN_CUBE_DEFAULT"])
        conn.update(port=int(url.rsplit(":", 1)[1]), extra={"retries": 0})
        monkeypatch.setenv("AIRFLOW_CONN_CUBE_DEFAULT", json.dumps(conn))
        yield url, settings


def run(db: psycopg.Connection[Any], alert_id: int, cube_url: str, secret: str) -> tuple[str, str]:
    """Process the alert's slot; (status, error or detail)."""
    settings = RunSettings(logical_time=LOGICAL_TIME, claimant=Claimant(dag_run_id="odd-numbers"))
    with CubeClient(cube_url, api_secret=secret, retries=0) as cube:
        try:
            done = process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings)
        except AlertFailed:
            row = next(r for r in ledger(db) if r["kpi_alert_id"] == alert_id)
            return row["status"], row["error"]
    return done.status, done.detail


def report(db: psycopg.Connection[Any], name: str, **overrides: Any) -> int:
    spec = report_spec(name, hour=SLOT.hour, minute=0, owners=["owner@org1.example.com"], **overrides)
    return create_alert(db, {**spec, "cube_query": DAILY}, now=SLOT - timedelta(minutes=1)).alert_id


def texts_of(texts: dict[str, str], name: str) -> str:
    (text,) = [t for s, t in texts.items() if s.startswith(f"[KPI report] {name} ")]
    return text


REFUSED = [
    pytest.param("orders.count", "1e308", "beyond any KPI", id="1e308"),
    pytest.param("orders.count", "1_000", "not a number", id="1_000"),
    pytest.param("orders.count", "0x10", "not a number", id="hex"),
    pytest.param("orders.created_at", "not-a-date", "not a date and time", id="not-a-date"),
]


@pytest.mark.parametrize(("member", "value", "why"), REFUSED)
def test_a_value_that_is_no_number_fails_the_slot_with_the_value_named(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    proxied: tuple[str, ProxySettings],
    cube_server: CubeServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    member: str,
    value: str,
    why: str,
) -> None:
    url, proxy = proxied
    proxy.values = {member: value}
    alert_id = report(db, "Odd")

    assert cli.main(["preview", str(alert_id), "--out", str(tmp_path)]) == 1  # one line, no traceback
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and repr(value) in line and why in line, line

    status, error = run(db, alert_id, url, cube_server.api_secret)
    assert status == "failed" and repr(value) in error and why in error and "internal error" not in error
    (notice,) = mailbox.messages()  # the owner's notice names the value, not an InvalidOperation
    assert notice["X-Envelope-To"] == "owner@org1.example.com"
    assert repr(value) in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_odd_numbers_in_the_fault_table(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    proxied: tuple[str, ProxySettings],
    cube_server: CubeServer,
    fault_table: FaultTable,
) -> None:
    url, proxy = proxied
    outcomes: dict[str, tuple[str, str]] = {}
    for name, values, rows in [
        ("NaN", {"orders.count": "NaN"}, None),
        ("Infinity", {"orders.count": "Infinity"}, None),
        ("sNaN", {"orders.count": "sNaN"}, None),
        ("zero rows", {}, 0),
        ("1e308", {"orders.count": "1e308"}, None),
        ("1_000", {"orders.count": "1_000"}, None),
        ("not-a-date", {"orders.created_at": "not-a-date"}, None),
    ]:
        proxy.values, proxy.rows = values, rows
        outcomes[name] = run(db, report(db, f"Odd {len(outcomes)}"), url, cube_server.api_secret)
    proxy.values, proxy.rows = {"orders.count": "-0"}, None
    negative_zero = create_alert(
        db,
        threshold_spec("Orders below 1", threshold={"condition": "LESS_THAN", "threshold_value": 1}),
        now=SLOT - timedelta(minutes=1),
    ).alert_id
    outcomes["-0"] = run(db, negative_zero, url, cube_server.api_secret)

    messages = {m["Subject"]: m for m in mailbox.messages()}
    texts = {s: m.get_body(("plain",)).get_content() for s, m in messages.items()}  # type: ignore[union-attr]
    fault_table.record(
        fault="Cube answers NaN, Infinity, sNaN, 0 rows, 1e308, 1_000, not-a-date, -0",
        alerts=len(outcomes),
        messages=len(messages),
        duplicates=0,
        lost=sum(status not in ("sent", "failed") for status, _ in outcomes.values()),
        run_state="n/a (pipeline): 4 failed naming the value, 4 sent with notes",
    )
    assert {k: s for k, (s, _) in outcomes.items()} == {
        "NaN": "sent",
        "Infinity": "sent",
        "sNaN": "sent",
        "zero rows": "sent",
        "1e308": "failed",
        "1_000": "failed",
        "not-a-date": "failed",
        "-0": "sent",
    }
    sent_reports = ("NaN", "Infinity", "sNaN", "zero rows")  # "Odd 0" to "Odd 3", in that order
    by_case = {name: texts_of(texts, f"Odd {n}") for n, name in enumerate(sent_reports)}
    for name in ("NaN", "Infinity", "sNaN"):
        text = by_case[name]
        assert "were not numbers (NaN or infinity) and are left empty" in text
        assert "NaN" not in text.replace("(NaN or infinity)", "") and "Infinity" not in text
    assert "No data for this period" in by_case["zero rows"]
    (alert,) = [s for s in messages if s.startswith("[KPI alert] Orders below 1")]
    assert "(now 0)" in alert and "now -0" not in alert
