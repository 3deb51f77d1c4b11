"""Issue 23 item 2: the alerts database behind PgBouncer in transaction pooling mode (Debian's
``pgbouncer``, started by the ``pgbouncer`` fixture), through the real DAG, Cube.js and SMTP.

Before: psycopg prepares a statement on the server after its fifth use (``prepare_threshold=5``), and
the next transaction runs on another server connection, where ``_pg3_0`` does not exist: every alert
after the fifth of a batch failed with ``InvalidSqlStatementName``. The ledger's connections now never
prepare statements (``ledger.database.configure``), so a pooler may hand each transaction anywhere.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.ledger.database import connect
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

ALERTS = 12


def test_a_batch_behind_pgbouncer_in_transaction_mode_sends_every_alert(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    pooled_db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fault_table: FaultTable,
) -> None:
    for n in range(ALERTS):
        due_report(db, f"Report {n}", [f"r{n}@org1.example.com"])
    monkeypatch.setenv("AIRFLOW_CONN_KPI_ALERTS_DB", pooled_db_url)
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_PARALLELISM", "1")  # one batch: one connection, 12 alerts

    run = kpi_dag.test(logical_date=LOGICAL_TIME)

    received = mailbox.messages()
    rows = ledger(db)
    fault_table.record(
        fault="alerts DB behind PgBouncer (transaction pooling), one batch of 12",
        alerts=ALERTS,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=sum(r["status"] != "sent" for r in rows),
        run_state=str(run.state),
    )
    assert [r["status"] for r in rows] == ["sent"] * ALERTS, [r["error"] for r in rows]
    assert len(received) == ALERTS and duplicates(received) == 0
    assert str(run.state) == "success"


def test_the_ledgers_connections_never_prepare_statements(pooled_db_url: str) -> None:
    with connect(pooled_db_url) as conn:
        pids = {
            conn.execute("SELECT pg_backend_pid() AS pid, %s::int AS n", (n,)).fetchone()["pid"]
            for n in range(12)
        }
    assert len(pids) == 2  # each transaction went to the other server connection, and none failed
