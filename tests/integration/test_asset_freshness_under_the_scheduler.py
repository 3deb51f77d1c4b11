"""A report that waits for an Airflow asset, under the real scheduler (``airflow standalone``, LocalExecutor):
a small upstream DAG updates the asset, and the report — ``waiting`` until then, its task instances ending
at once (no worker slot held) — is sent once by the next ``kpi_alerts`` run, which reads the asset's latest
event through the Task SDK (the execution API), never the metadata database."""

from __future__ import annotations

import json
import os
import shutil
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
from tests.conftest import REPO_ROOT
from tests.integration.test_under_the_scheduler import stop_process_tree
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.services]

BIN = Path(sys.executable).parent
ASSET = "warehouse://analytics/orders"
UPSTREAM_DAG = f'''
"""The nightly load: updates the asset a KPI report waits for."""
import pendulum
from airflow.sdk import Asset, dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["test"])
def nightly_orders_load():
    @task(outlets=[Asset("{ASSET}")])
    def load_orders():
        return "loaded"

    load_orders()


nightly_orders_load()
'''


def test_a_report_waits_for_an_asset_until_an_upstream_dag_updates_it(
    tmp_path: Path, stack: Stack, db: psycopg.Connection[Any], mailbox: MailCatcher
) -> None:
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=2)).replace(second=0, microsecond=0)
    report = create_alert(
        db,
        {
            "organization_id": 1,
            "alert_name": "After the nightly load",
            "recipients": ["cfo@org1.example.com"],
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
                "freshness": {"asset": ASSET, "max_age_minutes": 60, "max_wait_minutes": 120},
            },
        },
        now=slot - timedelta(minutes=1),
    )
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO_ROOT / "dags" / "kpi_alerts_dag.py", dags)
    (dags / "nightly_orders_load.py").write_text(UPSTREAM_DAG)

    home = tmp_path / "airflow"
    home.mkdir()
    env = {**os.environ, **airflow_env(stack, home)}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__PORT": str(api_port := free_port()),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )

    def trigger(dag_id: str) -> bool:
        done = subprocess.run([str(BIN / "airflow"), "dags", "trigger", dag_id], env=env, capture_output=True)
        return done.returncode == 0  # fails until the DAG processor has parsed the file

    def status() -> str | None:
        row = db.execute("SELECT status FROM cron_job_results WHERE cron_job_id = %s", (report.cron_job_id,))
        found = row.fetchone()
        return found["status"] if found else None

    def upstream_succeeded() -> bool:
        runs = subprocess.run(
            [str(BIN / "airflow"), "dags", "list-runs", "nightly_orders_load", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
        )
        listing = next((line for line in runs.stdout.splitlines() if line.startswith("[")), "[]")
        return any(r["state"] == "success" for r in json.loads(listing))

    log_path = tmp_path / "standalone.log"
    log = log_path.open("wb")
    standalone = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        try:
            # Before the load: the report's slot waits (the run's own task instance is over at once).
            wait_until(
                lambda: trigger("kpi_alerts"), timeout=180, interval=2, what="kpi_alerts to be triggerable"
            )
            wait_until(lambda: status() == "waiting", timeout=180, interval=1, what="the slot to wait")
            assert mailbox.messages() == []
            row = db.execute(
                "SELECT error, details FROM cron_job_results WHERE cron_job_id = %s", (report.cron_job_id,)
            ).fetchone()
            assert row["error"].startswith(f"waiting for fresh data: asset '{ASSET}' is never refreshed")
            assert row["details"]["freshness"]["data_as_of"] is None

            # The upstream DAG updates the asset; the next kpi_alerts run sends the report, once.
            loaded_at = datetime.now(UTC)
            wait_until(
                lambda: trigger("nightly_orders_load"), timeout=120, interval=2, what="the upstream DAG"
            )
            wait_until(lambda: upstream_succeeded(), timeout=180, interval=3, what="the upstream run")
            assert trigger("kpi_alerts")
            wait_until(lambda: status() == "sent", timeout=180, interval=1, what="the report after the load")
        except AssertionError:
            raise AssertionError(log_path.read_text(errors="replace")[-4000:]) from None
        assert status() == "sent"
        row = db.execute(
            "SELECT details, attempts FROM cron_job_results WHERE cron_job_id = %s", (report.cron_job_id,)
        ).fetchone()
        freshness = row["details"]["freshness"]
        assert freshness["fresh"] is True
        as_of = datetime.fromisoformat(freshness["data_as_of"])
        assert (
            loaded_at - timedelta(seconds=5) <= as_of <= datetime.now(UTC)
        )  # the upstream run's asset event
        assert row["attempts"] >= 2
        time.sleep(3)  # another scheduled run may start meanwhile: it must send nothing more
        (message,) = mailbox.messages()
        assert "Data as of" not in str(message["Subject"])
    finally:
        stop_process_tree(standalone.pid)
        log.close()
