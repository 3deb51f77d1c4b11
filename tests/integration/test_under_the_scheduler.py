"""The production path: the real scheduler, DAG processor and API server (``airflow standalone``,
LocalExecutor), where every task runs in its own process through Airflow's Task SDK.

``dag.test()`` runs tasks in-process; this catches what only the real executor path can break:
connections and Variables read through the execution API, mapped-task labels, task subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack import free_port
from devstack.mail import MailCatcher
from devstack.stack import Stack, airflow_env
from kpi_alerts.ledger.alert_store import create_alert

pytestmark = [pytest.mark.slow, pytest.mark.services]

BIN = Path(sys.executable).parent


def test_a_triggered_run_sends_each_due_alert_once_under_the_scheduler(
    tmp_path: Path,
    stack: Stack,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
) -> None:
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=2)).replace(second=0, microsecond=0)
    report = create_alert(
        db,
        {
            "organization_id": 1,
            "alert_name": "Under the scheduler",
            "recipients": ["s1@org1.example.com"],
            "cube_query": {
                "measures": ["orders.total_amount"],
                "timeDimensions": [
                    {
                        "dimension": "orders.created_at",
                        "granularity": "day",
                        "dateRange": ["2026-11-01", "2026-11-07"],
                    }
                ],
            },
            "schedule": {
                "frequency_interval": "day",
                "schedule_hour": slot.hour,
                "schedule_minute": slot.minute,
                "timezone": "UTC",
                "attachment_type": "csv",
            },
        },
        now=slot - timedelta(minutes=1),
    )
    threshold = create_alert(
        db,
        {
            "organization_id": 2,
            "alert_name": "Threshold under the scheduler",
            "recipients": ["s2@org2.example.com"],
            "cube_query": {"measures": ["orders.count"]},
            "threshold": {"condition": "GREATER_THAN", "threshold_value": "1"},
        },
        now=now,
    )

    home = tmp_path / "airflow"
    home.mkdir()
    env = {**os.environ, **airflow_env(stack, home)}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env['PATH']}",  # standalone starts its components as `airflow ...`
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__PORT": str(api_port := free_port()),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    log = (tmp_path / "standalone.log").open("wb")
    standalone = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        triggered = False
        while time.monotonic() < deadline:
            if not triggered:
                trigger = subprocess.run(
                    [str(BIN / "airflow"), "dags", "trigger", "kpi_alerts"],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                triggered = trigger.returncode == 0  # fails until the DAG processor has parsed the file
            sent = db.execute("SELECT count(*) AS n FROM cron_job_results WHERE status = 'sent'").fetchone()[
                "n"
            ]
            if sent == 2:
                break
            time.sleep(2)
        assert triggered, (tmp_path / "standalone.log").read_text(errors="replace")[-3000:]
        rows = db.execute(
            "SELECT cron_job_id, status, delivery, task_instance FROM cron_job_results ORDER BY cron_job_id"
        ).fetchall()
        assert [(r["cron_job_id"], r["status"], r["delivery"]) for r in rows] == [
            (report.cron_job_id, "sent", "smtp"),
            (threshold.cron_job_id, "sent", "smtp"),
        ]
        assert all(r["task_instance"].startswith("process_alert[") for r in rows)
        time.sleep(3)  # a second, scheduled run may start meanwhile: it must send nothing more
        assert sorted(str(m["To"]) for m in mailbox.messages()) == [
            "s1@org1.example.com",
            "s2@org2.example.com",
        ]

        runs = subprocess.run(
            [str(BIN / "airflow"), "dags", "list-runs", "kpi_alerts", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        listing = next(
            line for line in runs.stdout.splitlines() if line.startswith("[{")
        )  # after any warnings
        states = [r["state"] for r in json.loads(listing)]
        assert "failed" not in states
        secret = stack.cube_secret
        logs = [p.read_text(errors="replace") for p in (home / "logs").rglob("*.log")]
        assert logs and not any(secret in text for text in logs)  # no secret in any task log
    finally:
        stop_process_tree(standalone.pid)
        log.close()


def stop_process_tree(pid: int) -> None:
    """standalone's components start sessions of their own: stop every descendant, not just the group."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    processes = [parent, *parent.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=20)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
