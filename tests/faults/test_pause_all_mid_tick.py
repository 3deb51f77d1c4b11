"""Issue 23, "also to prove": ``python -m kpi_alerts pause --all`` during a large tick, through the real
DAG (``dag.test``), PostgreSQL, Cube.js and the SMTP mail catcher.

The issue asks for a 10,000-alert tick; this test uses 200 alerts due at one slot to keep CI fast (the
claim path is the same per chunk of 32; a 10,000-alert tick only has more chunks). The operator's
``pause --all`` runs as its own process once the first messages have arrived. Every alert must end
either sent once (before the pause took effect) or recorded ``skipped`` with the reason — none
without a ledger row, none sent twice, none sent after being recorded paused.

Before: the alerts the run had listed as due but not yet claimed when the pause landed got no ledger
row in that run (the claim said "paused by an operator" in the task log only); the next tick's listing
recorded them. Now the claim records them ``skipped`` at once, as the listing does.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger
from tests.polling import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

ALERTS = 200
PAUSE_AFTER = 20  # messages received before the operator pauses everything


def test_pause_all_during_a_tick_leaves_each_alert_sent_once_or_recorded_skipped(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    alerts_db_url: str,
    fault_table: FaultTable,
) -> None:
    ids = {
        due_report(db, f"Report {n}", [f"r{n}@org1.example.com"]): f"r{n}@org1.example.com"
        for n in range(ALERTS)
    }
    paused: dict[str, Any] = {}

    def operator() -> None:
        wait_until(
            lambda: len(list(mailbox.folder.glob("*.eml"))) >= PAUSE_AFTER,
            timeout=300,
            what=f"{PAUSE_AFTER} messages",
        )
        done = subprocess.run(
            [sys.executable, "-m", "kpi_alerts", "pause", "--all", "--db", alerts_db_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        paused["answer"] = done
        paused["messages_then"] = len(list(mailbox.folder.glob("*.eml")))

    thread = threading.Thread(target=operator)
    thread.start()
    run = kpi_dag.test(logical_date=LOGICAL_TIME)
    thread.join(timeout=300)

    answer = paused["answer"]
    assert answer.returncode == 0, answer.stderr
    received = mailbox.messages()
    got = deliveries(received)
    rows = {r["kpi_alert_id"]: r for r in ledger(db)}
    sent = {a for a, r in rows.items() if r["status"] == "sent"}
    skipped = {a for a, r in rows.items() if r["status"] == "skipped"}
    lost = [a for a in ids if a not in rows]
    fault_table.record(
        fault=f"pause --all after {PAUSE_AFTER} of {ALERTS} messages of one tick",
        alerts=ALERTS,
        messages=sum(got.values()),
        duplicates=duplicates(received),
        lost=len(lost) + sum(1 for a in ids if a in rows and a not in sent | skipped),
        run_state=f"{run.state}: {len(sent)} sent, {len(skipped)} skipped (paused)",
    )
    assert lost == [], f"{len(lost)} alerts have no ledger row"
    assert sent | skipped == set(ids), {r["status"] for r in rows.values()}
    assert duplicates(received) == 0
    assert {rcpt for rcpt, _ in got} == {ids[a] for a in sent}  # the skipped ones got nothing
    assert sent and skipped, "the pause must land mid-tick"
    for a in skipped:
        assert "paused by an operator" in rows[a]["error"], rows[a]["error"]
