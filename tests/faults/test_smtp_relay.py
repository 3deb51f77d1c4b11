"""Issue 23 item 8: the SMTP relay refusing the deployment itself, through the real DAG (``dag.test()``),
PostgreSQL, Cube.js and a real aiosmtpd server that requires authentication (``auth_required``: 530
before AUTH, 535 for a wrong password; no STARTTLS offered).

Before: 535 (bad credentials) was retried as "cannot reach the SMTP server"; 530 (authentication or TLS
required) and a TLS setting the relay cannot honour failed every alert of the tick for good, even once
the relay was fixed minutes later. Now each says what it is (the relay refused this deployment: fix
``smtp_default``), once per batch, and the slots go out when it is fixed, inside the misfire window.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from devstack import free_port
from devstack.mail import MaildirHandler, read_message
from kpi_alerts.doctor import check_smtp
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

USER, PASSWORD = "kpi-alerts", "right-password"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535 itself


@pytest.fixture
def auth_relay(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real SMTP server (aiosmtpd) that takes mail only after AUTH with USER / PASSWORD."""
    folder = tmp_path / "relay"
    controller = Controller(
        MaildirHandler(folder),
        hostname="127.0.0.1",
        port=free_port(),
        auth_required=True,
        auth_require_tls=False,
        authenticator=_authenticate,
    )
    controller.start()
    yield int(controller.port), folder
    controller.stop()


def smtp_conn(port: int, *, login: str | None = None, password: str | None = None, tls: bool = False) -> str:
    extra = {
        "disable_ssl": True,
        "disable_tls": not tls,
        "from_email": "kpi-alerts@example.com",
        "timeout": 5,
    }
    conn: dict[str, Any] = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {**extra, "retry_limit": 1},
    }
    if login is not None:
        conn.update(login=login, password=password)
    return json.dumps(conn)


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        pytest.param(
            {"login": USER, "password": "wrong"},
            "refused the login of this deployment: 535",
            id="535 bad password",
        ),
        pytest.param({}, "refused this deployment: SMTP 530 to MAIL FROM", id="530 no AUTH"),
        pytest.param(
            {"login": USER, "password": PASSWORD, "tls": True},
            "does not offer STARTTLS",
            id="STARTTLS not offered",
        ),
    ],
)
def test_a_relay_that_refuses_the_deployment_is_retried_and_sent_once_fixed(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    airflow_connections: dict[str, str],
    auth_relay: tuple[int, Path],
    monkeypatch: pytest.MonkeyPatch,
    fault_table: FaultTable,
    broken: dict[str, Any],
    said: str,
    request: pytest.FixtureRequest,
) -> None:
    port, folder = auth_relay
    for n in range(3):
        due_report(db, f"Report {n}", [f"r{n}@org1.example.com"])
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_PARALLELISM", "1")  # one batch of three
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(port, **broken))
    first = fast_retries.test(logical_date=LOGICAL_TIME)
    rows = ledger(db)
    assert [r["status"] for r in rows] == ["retrying"] * 3, [r["error"] for r in rows]
    errors = [entry["error"] for r in rows for entry in r["attempt_history"]]
    assert errors and all(said in e and "fix the smtp_default connection" in e for e in errors), errors
    assert not any("cannot reach" in e for e in errors)

    doctor = check_smtp()  # what the on-call person's probe says meanwhile
    assert not doctor.ok and ("refuse" in doctor.detail or "STARTTLS" in doctor.detail), doctor

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(port, login=USER, password=PASSWORD))  # fixed
    later = fast_retries.test(logical_date=LOGICAL_TIME + timedelta(minutes=5))

    received = [read_message(p) for p in sorted(folder.glob("*.eml"))]
    rows = ledger(db)
    fault_table.record(
        fault=f"SMTP relay refuses the deployment ({request.node.callspec.id}), fixed 5 min later",
        alerts=3,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=sum(r["status"] != "sent" for r in rows),
        run_state=f"{first.state} → {later.state}",
    )
    assert [r["status"] for r in rows] == ["sent"] * 3
    assert sorted(deliveries(received).values()) == [1, 1, 1]
    assert (str(first.state), str(later.state)) == ("failed", "success")
    # said once for the batch: the first alert met it, the two others were not even tried
    assert [r["attempts"] for r in rows].count(2) >= 1
