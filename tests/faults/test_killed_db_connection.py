"""Fault: the database connection of a worker is killed mid-tick (issue 9, item 4).

A real PostgreSQL backend is terminated (``pg_terminate_backend``, from a trigger that fires once, when
the first alert's claim is marked ``sending``) while the real DAG runs (``dag.test()``), with real
Cube.js and SMTP. The task instance's next try (same DAG run, same map index) must resume its
predecessor's claim at once — not wait 30 minutes for the lease and show the run green meanwhile —
and every report goes out once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

KILL_ONCE = """
CREATE SEQUENCE fault_kills;
CREATE FUNCTION fault_kill_backend_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'sending' AND OLD.status = 'claimed' AND nextval('fault_kills') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fault_kill_backend_once BEFORE UPDATE ON cron_job_results
    FOR EACH ROW EXECUTE FUNCTION fault_kill_backend_once();
"""


@pytest.fixture
def backend_killed_once(db: psycopg.Connection[Any]) -> Iterator[None]:
    db.execute(KILL_ONCE)
    try:
        yield
    finally:
        db.execute("DROP TRIGGER fault_kill_backend_once ON cron_job_results")
        db.execute("DROP FUNCTION fault_kill_backend_once()")
        db.execute("DROP SEQUENCE fault_kills")


def test_a_retry_of_the_same_task_instance_resumes_its_claim_at_once(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    backend_killed_once: None,
    fault_table: FaultTable,
) -> None:
    for n in range(3):
        due_report(db, f"Report {n}", [f"r{n}@org1.example.com"])

    dag_run = fast_retries.test(logical_date=LOGICAL_TIME)

    rows = ledger(db)
    received = mailbox.messages()
    fault_table.record(
        fault="DB backend of a worker killed mid-claim (before sending)",
        alerts=3,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=sum(r["status"] != "sent" for r in rows),
        run_state=str(dag_run.state),
    )
    assert db.execute("SELECT last_value FROM fault_kills").fetchone()["last_value"] >= 1  # it did fire
    assert sorted(deliveries(received).values()) == [1, 1, 1]
    assert [r["status"] for r in rows] == ["sent"] * 3
    (resumed,) = [r for r in rows if r["attempts"] == 2]
    assert resumed["try_number"] == 2 and resumed["dag_run_id"] == dag_run.run_id
    (entry,) = resumed["attempt_history"]
    assert "resumed from worker" in entry["error"] and entry["try_number"] == 1
    assert str(dag_run.state) == "success"


def test_a_run_that_leaves_a_claim_unfinished_is_not_green(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    backend_killed_once: None,
    monkeypatch: pytest.MonkeyPatch,
    fault_table: FaultTable,
) -> None:
    monkeypatch.setattr(kpi_dag.task_dict["process_alert"], "retries", 0)  # no retry to resume it
    due_report(db, "Report", ["r@org1.example.com"])

    dag_run = kpi_dag.test(logical_date=LOGICAL_TIME)

    (row,) = ledger(db)
    fault_table.record(
        fault="DB backend killed mid-claim, no retry left",
        alerts=1,
        messages=len(mailbox.messages()),
        duplicates=duplicates(mailbox.messages()),
        lost=0,  # left claimed: the next tick (or the lease) takes it over, see test_claims
        run_state=str(dag_run.state),
    )
    assert row["status"] == "claimed" and mailbox.messages() == []
    assert str(dag_run.state) == "failed"
    summary = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert summary["summarize"] == "failed"
