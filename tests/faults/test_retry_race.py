"""Issue 23, "also to prove": ``python -m kpi_alerts retry ALERT SLOT --replay`` racing the scheduler's
own retry of the same slot, under the real scheduler (``airflow standalone``, LocalExecutor) with the
real SMTP mail catcher.

Three daily reports fail in their run (a broken Cube query: the slot is ``failed``, the task instance
failed). The owner fixes them; one slot is then marked ``delivery_unknown`` (as an unconfirmed SMTP
reply leaves it; set by SQL, the fault itself is tested in ``test_smtp_faults.py``). Then Airflow
retries the three task instances (``airflow tasks clear``: a new try of the same run and map index, as
the UI's Clear) while an operator runs ``retry ... --replay`` on each slot: on two of them at once with
the clear (the operator is usually first), on the third once Airflow's new try has claimed it (Airflow
first). Whichever claims a slot first sends it; the other is refused in one line or skipped: one
message per report, never two. The ``delivery_unknown`` slot is sent by the replay only (a task's
retry never resends what may have gone out).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack import free_port
from devstack.mail import MailCatcher
from devstack.stack import Stack, airflow_env
from kpi_alerts.ledger.alert_changes import update_alert
from kpi_alerts.ledger.alert_store import create_alert
from tests.fault_table import FaultTable, deliveries, duplicates
from tests.integration.test_clearing_under_the_scheduler import REVENUE, wait_for
from tests.integration.test_under_the_scheduler import stop_process_tree

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.faults]

BIN = Path(sys.executable).parent


def test_retry_replay_racing_the_schedulers_retry_sends_each_slot_once(
    tmp_path: Path, stack: Stack, db: psycopg.Connection[Any], mailbox: MailCatcher, fault_table: FaultTable
) -> None:
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=2)).replace(second=0, microsecond=0)
    logical = slot + timedelta(seconds=30)

    def broken_daily(name: str, recipient: str) -> int:
        spec = {
            "organization_id": 1,
            "alert_name": name,
            "recipients": [recipient],
            "cube_query": {"measures": ["orders.nope"]},
            "schedule": {
                "frequency_interval": "day",
                "schedule_hour": slot.hour,
                "schedule_minute": slot.minute,
                "timezone": "UTC",
                "attachment_type": "csv",
            },
        }
        return create_alert(db, spec, now=slot - timedelta(minutes=1)).alert_id

    failed = broken_daily("Failed slot", "cfo@org1.example.com")
    unknown = broken_daily("Unconfirmed slot", "ceo@org1.example.com")
    late = broken_daily("Failed slot, operator late", "cto@org1.example.com")

    home = tmp_path / "airflow"
    home.mkdir()
    env = {**os.environ, **airflow_env(stack, home)}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port := free_port()),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )

    def airflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True)

    def metadata(sql: str, *params: Any) -> list[sqlite3.Row]:
        with sqlite3.connect(home / "airflow.db", timeout=30) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()

    def ledger() -> dict[int, dict[str, Any]]:
        return {r["kpi_alert_id"]: r for r in db.execute("SELECT * FROM cron_job_results").fetchall()}

    def finished_tries(run_id: str) -> dict[str, int]:
        rows = metadata(
            "SELECT state, try_number, rendered_map_index FROM task_instance WHERE dag_id = 'kpi_alerts' "
            "AND run_id = ? AND task_id = 'process_alert'",
            run_id,
        )
        return {
            r["rendered_map_index"]: r["try_number"]
            for r in rows
            if r["state"] in ("success", "failed", "skipped")
        }

    log_path = tmp_path / "standalone.log"
    log = log_path.open("wb")
    standalone = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        triggered = False

        def first_run_failed() -> bool:
            nonlocal triggered
            if not triggered:  # fails until the DAG processor has parsed the file
                triggered = (
                    airflow("dags", "trigger", "kpi_alerts", "-l", logical.isoformat()).returncode == 0
                )
            rows = ledger()
            return len(rows) == 3 and all(r["status"] == "failed" for r in rows.values())

        wait_for("the run to record both slots failed", first_run_failed, log_path)
        run_id = ledger()[failed]["dag_run_id"]
        assert {r["dag_run_id"] for r in ledger().values()} == {run_id}
        first = wait_for(
            "both task instances to finish",
            lambda: len(finished_tries(run_id)) == 3 and finished_tries(run_id),
            log_path,
        )
        assert mailbox.messages() == []

        for alert_id in (failed, unknown, late):
            update_alert(db, alert_id, {"cube_query": REVENUE}, actor="test")
        db.execute(
            "UPDATE cron_job_results SET status = 'delivery_unknown', message_id = '<race@x>' "
            "WHERE kpi_alert_id = %s",
            (unknown,),
        )
        (run_row,) = metadata("SELECT logical_date FROM dag_run WHERE run_id = ?", run_id)
        when = datetime.fromisoformat(run_row["logical_date"]).replace(tzinfo=UTC).isoformat()
        slot_text = slot.strftime("%Y-%m-%d %H:%MZ")

        def operator_retry(alert_id: int) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [str(BIN / "python"), "-m", "kpi_alerts", "retry", str(alert_id), slot_text, "--replay"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        # The race: the operator's retries start while Airflow's clear is being picked up ...
        retries = {a: operator_retry(a) for a in (failed, unknown)}
        cleared = airflow("tasks", "clear", "kpi_alerts", "-t", "process_alert", "-s", when, "-e", when, "-y")
        assert cleared.returncode == 0, cleared.stderr[-2000:]
        # ... and, on the third slot, once Airflow's new try has claimed it.
        wait_for("Airflow's new try to claim a slot", lambda: ledger()[late]["attempts"] > 1, log_path)
        retries[late] = operator_retry(late)
        answers = {a: (p.wait(timeout=300), *p.communicate()) for a, p in retries.items()}

        def retried() -> bool:
            tries = finished_tries(run_id)
            return len(tries) == 3 and all(tries[k] > first[k] for k in first)

        wait_for("Airflow's retries to finish", retried, log_path)
        messages = mailbox.messages()
        rows = ledger()
        got = deliveries(messages)
        senders = {a: "operator" if r["task_instance"] == "cli retry" else "Airflow" for a, r in rows.items()}
        fault_table.record(
            fault="retry --replay racing Airflow's retry (a clear): 2 failed slots, 1 delivery_unknown",
            alerts=3,
            messages=len(messages),
            duplicates=duplicates(messages),
            lost=sum(1 for r in rows.values() if r["status"] != "sent"),
            run_state="n/a: sent by " + ", ".join(senders[a] for a in (failed, late, unknown)),
        )
        assert duplicates(messages) == 0, got
        assert sorted(str(m["To"]) for m in messages) == [
            "ceo@org1.example.com",
            "cfo@org1.example.com",
            "cto@org1.example.com",
        ]
        assert {a: r["status"] for a, r in rows.items()} == {failed: "sent", unknown: "sent", late: "sent"}
        for alert_id, (code, out, err) in answers.items():  # the winner says sent; the loser one line
            if senders[alert_id] == "operator":
                assert code == 0 and "sent" in out, (out, err)
            else:
                assert code == 2 and len(err.strip().splitlines()) == 1, (code, out, err)
        assert senders[unknown] == "operator"  # only the replay may send what may have gone out
        assert senders[late] == "Airflow"
    finally:
        stop_process_tree(standalone.pid)
        log.close()
