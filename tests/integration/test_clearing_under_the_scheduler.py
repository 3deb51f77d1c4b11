"""An operator's habits under the real scheduler (``airflow standalone``, LocalExecutor): a failed
``process_alert`` task instance cleared after the alert was fixed sends the failed slot — once — and a
gated or not-triggered alert's task instance shows as skipped, not as a green success.

The clear is Airflow's own (``airflow tasks clear``, the same ``clear_task_instances`` the UI's Clear
button calls): a new try of the same DAG run and map index, after the task had used up its tries.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from devstack import free_port
from devstack.mail import MailCatcher
from devstack.stack import Stack, airflow_env
from kpi_alerts.ledger.alert_changes import update_alert
from kpi_alerts.ledger.alert_store import create_alert
from tests.integration.test_under_the_scheduler import stop_process_tree

pytestmark = [pytest.mark.slow, pytest.mark.services]

BIN = Path(sys.executable).parent
REVENUE = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-07"]}
    ],
}
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], log: Path, timeout: float = 420) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(
        f"timed out waiting for {what}; standalone log:\n" + log.read_text(errors="replace")[-3000:]
    )


def test_clearing_a_failed_task_instance_sends_the_fixed_alert_once_and_quiet_alerts_are_skipped(
    tmp_path: Path, stack: Stack, db: psycopg.Connection[Any], mailbox: MailCatcher
) -> None:
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=2)).replace(second=0, microsecond=0)
    logical = slot + timedelta(seconds=30)  # never a */5 boundary: a scheduled run is told apart by its date

    def daily(name: str, recipient: str, **extra: Any) -> dict[str, Any]:
        return {
            "organization_id": 1,
            "alert_name": name,
            "recipients": [recipient],
            "cube_query": REVENUE,
            "schedule": {
                "frequency_interval": "day",
                "schedule_hour": slot.hour,
                "schedule_minute": slot.minute,
                "timezone": "UTC",
                "attachment_type": "csv",
                **extra,
            },
        }

    broken = create_alert(
        db,
        {**daily("Broken query", "cfo@org1.example.com"), "cube_query": {"measures": ["orders.nope"]}},
        now=slot - timedelta(minutes=1),
    )
    gated = create_alert(
        db,
        daily(
            "Gated out",
            "board@org1.example.com",
            gating_condition={
                "measure": "orders.total_amount",
                "op": ">",
                "value": 10**12,
                "aggregate": "total",
            },
        ),
        now=slot - timedelta(minutes=1),
    )
    quiet = create_alert(
        db,
        {
            "organization_id": 2,
            "alert_name": "Orders below zero",
            "recipients": ["ops@org2.example.com"],
            "cube_query": {"measures": ["orders.count"]},
            "threshold": {"condition": "LESS_THAN", "threshold_value": "0", "timezone": "UTC"},
        },
        now=slot - timedelta(minutes=1),
    )

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
        rows = db.execute("SELECT * FROM cron_job_results").fetchall()
        return {r["kpi_alert_id"]: r for r in rows}

    def task_instance_of(alert_id: int) -> tuple[str, int] | None:
        """(state, try number) of the alert's process_alert task instance in the run that claimed its slot,
        once finished. (A scheduled run and the triggered one may share the alerts out between them.)"""
        run_id = ledger()[alert_id]["dag_run_id"]
        rows = metadata(
            "SELECT state, try_number FROM task_instance WHERE dag_id = 'kpi_alerts' AND run_id = ? "
            "AND task_id = 'process_alert' AND rendered_map_index LIKE ?",
            run_id,
            f"alert {alert_id}:%",
        )
        if len(rows) != 1 or rows[0]["state"] not in ("success", "failed", "skipped"):
            return None
        return rows[0]["state"], rows[0]["try_number"]

    def states(*alert_ids: int) -> dict[int, tuple[str, int]] | None:
        found = {a: task_instance_of(a) for a in alert_ids}
        return None if None in found.values() else found  # type: ignore[return-value]

    def run_state(run_id: str) -> str | None:
        (row,) = metadata("SELECT state FROM dag_run WHERE run_id = ?", run_id)
        return row["state"] if row["state"] in ("success", "failed") else None

    log_path = tmp_path / "standalone.log"
    log = log_path.open("wb")
    standalone = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        triggered = False

        def first_run_done() -> bool:
            nonlocal triggered
            if not triggered:  # fails until the DAG processor has parsed the file
                triggered = (
                    airflow("dags", "trigger", "kpi_alerts", "-l", logical.isoformat()).returncode == 0
                )
            rows = ledger()  # every alert's slot finished (a slow Cube may make a try retry first)
            return len(rows) == 3 and all(
                r["status"] not in ("claimed", "retrying", "sending") for r in rows.values()
            )

        wait_for("the first run to record the three alerts", first_run_done, log_path)
        rows = ledger()
        assert {a: rows[a]["status"] for a in rows} == {
            broken.alert_id: "failed",
            gated.alert_id: "gated",
            quiet.alert_id: "not_triggered",
        }
        run_id = rows[broken.alert_id]["dag_run_id"]
        first = wait_for("the task instances to finish", lambda: states(*rows), log_path)
        assert {a: s for a, (s, _) in first.items()} == {
            broken.alert_id: "failed",
            gated.alert_id: "skipped",  # not a green success indistinguishable from a sent report
            quiet.alert_id: "skipped",
        }
        assert wait_for("the run to fail", lambda: run_state(run_id), log_path) == "failed"
        assert mailbox.messages() == []
        failure_log = next(
            p.read_text(errors="replace")
            for p in (home / "logs").rglob("*.log")
            if "process_alert" in str(p) and "orders.nope" in p.read_text(errors="replace")
        )
        assert f"alert {broken.alert_id} (Broken query) failed:" in failure_log  # the reason, in one line

        # The owner fixes the query and clears the failed task instance (and the summary after it).
        update_alert(db, broken.alert_id, {"cube_query": REVENUE}, actor="test")
        (run_row,) = metadata("SELECT logical_date FROM dag_run WHERE run_id = ?", run_id)
        when = datetime.fromisoformat(run_row["logical_date"]).replace(tzinfo=UTC).isoformat()
        cleared = airflow(
            "tasks", "clear", "kpi_alerts", "-t", "process_alert", "-d", "-f", "-s", when, "-e", when, "-y"
        )
        assert cleared.returncode == 0, cleared.stderr[-2000:]

        wait_for(
            "the cleared slot to be sent", lambda: ledger()[broken.alert_id]["status"] == "sent", log_path
        )
        assert wait_for("the run to end", lambda: run_state(run_id), log_path) == "success"
        (message,) = mailbox.messages()
        assert message["To"] == "cfo@org1.example.com" and "Broken query" in message["Subject"]
        result = ledger()[broken.alert_id]
        assert (result["slot"], result["attempts"], result["dag_run_id"]) == (slot, 2, run_id)
        assert result["attempt_history"][0]["status"] == "failed"
        state, tried = wait_for(
            "the task instance to finish", lambda: task_instance_of(broken.alert_id), log_path
        )
        assert state == "success" and tried > first[broken.alert_id][1]

        # Cleared once more (a second reflex): it runs again, and nothing is sent twice.
        again = airflow("tasks", "clear", "kpi_alerts", "-t", "process_alert", "-s", when, "-e", when, "-y")
        assert again.returncode == 0, again.stderr[-2000:]

        def rerun() -> tuple[str, int] | None:
            found = task_instance_of(broken.alert_id)
            return found if found and found[1] > tried else None

        assert wait_for("the second clear to finish", rerun, log_path)[0] == "skipped"
        assert len(mailbox.messages()) == 1
        assert (ledger()[broken.alert_id]["status"], ledger()[broken.alert_id]["attempts"]) == ("sent", 2)
    finally:
        stop_process_tree(standalone.pid)
        log.close()
