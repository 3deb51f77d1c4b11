"""``airflow backfill create`` over two past days of ``kpi_alerts``, under the real scheduler (``airflow
standalone``, LocalExecutor): old slots are neither sent (two days late) nor re-sent nor silently lost.

A backfill run's logical time is two days old, so a misfire window measured from it alone would find a
two-day-old slot "on time" and send it now. The ledger's rule (docs/operations.md, "Backfills"): a slot a
backfill run finds is late by the wall clock; older than the misfire window it is recorded ``missed`` with
the reason, a sent slot is never sent again, and a slot a normal run may still send (today's, inside the
window) is left to it.

Two short backfills, one per past day (Airflow allows one active backfill per DAG), of two five-minute runs
each, over four daily alerts at the same time of day (UTC), while today's slot, 10-15 minutes old, is due
(the DAG is unpaused: Airflow 3.3 starts no backfill run of a paused DAG; the scheduler creates no cron run,
so that only the backfill decides the old slots); then a normal run sends today's slots, once each:

- ``sent both days``: sent on both past days, already moved on to today's slot;
- ``stale pointer``: sent on both past days, but its ``next_run_at`` still points at the first of them;
- ``never run``: due since two days ago, never run (its scheduler was down, say);
- ``ran only day-2``: sent two days ago, never run yesterday.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from devstack import free_port
from devstack.mail import MailCatcher
from devstack.stack import Stack, airflow_env
from kpi_alerts.ledger.alert_store import create_alert
from tests.factories import ledger_row
from tests.integration.test_under_the_scheduler import stop_process_tree
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.services]

BIN = Path(sys.executable).parent
REVENUE = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-07"]}
    ],
}
T = TypeVar("T")


def test_a_backfill_over_two_past_days_records_old_slots_missed_and_sends_nothing(
    tmp_path: Path, stack: Stack, db: psycopg.Connection[Any], mailbox: MailCatcher
) -> None:
    now = datetime.now(UTC)
    # Today's slot: 10-15 minutes ago — inside the misfire window, so a normal run may still send it.
    today = (now - timedelta(minutes=10)).replace(second=0, microsecond=0)
    today -= timedelta(minutes=today.minute % 5)
    day2, day1 = today - timedelta(days=2), today - timedelta(days=1)

    def daily(name: str) -> int:
        alert = create_alert(
            db,
            {
                "organization_id": 1,
                "alert_name": name,
                "recipients": [f"{name.replace(' ', '-')}@org1.example.com"],
                "cube_query": REVENUE,
                "schedule": {
                    "frequency_interval": "day",
                    "schedule_hour": today.hour,
                    "schedule_minute": today.minute,
                    "timezone": "UTC",
                    "attachment_type": "csv",
                },
            },
            now=day2 - timedelta(days=1),
        )
        return alert.alert_id

    both, stale, never, only_day2 = (
        daily(n) for n in ("sent both days", "stale pointer", "never run", "ran only day-2")
    )
    job = {
        a: r["cron_job_id"]
        for a, r in ((r["id"], r) for r in db.execute("SELECT id, cron_job_id FROM kpi_alerts").fetchall())
    }
    for alert_id, slots in ((both, (day2, day1)), (stale, (day2, day1)), (only_day2, (day2,))):
        for slot in slots:
            ledger_row(
                db,
                job[alert_id],
                slot=slot,
                status="sent",
                delivery="smtp",
                started_at=slot,
                finished_at=slot + timedelta(seconds=4),
                recipients=["earlier@org1.example.com"],
            )
    for alert_id, next_run_at in ((both, today), (stale, day2), (never, day2), (only_day2, day1)):
        db.execute(
            "UPDATE cron_jobs SET next_run_at = %s WHERE id = %s::kpi_cron_job_id",
            [next_run_at, job[alert_id]],
        )
    sent_before = {
        (r["kpi_alert_id"], r["slot"]): dict(r) for r in db.execute("SELECT * FROM cron_job_results")
    }

    home = tmp_path / "airflow"
    home.mkdir()
    env = {**os.environ, **airflow_env(stack, home)}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
            # Unpaused: the scheduler starts no backfill run of a paused DAG. No cron run either: a normal
            # run racing the backfill would record the old slots itself (missed too, but not by the backfill).
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port := free_port()),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    log_path = tmp_path / "standalone.log"

    def wait_for(what: str, probe: Callable[[], T], timeout: float = 150) -> T:
        try:
            return wait_until(probe, timeout=timeout, interval=1, what=what)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; standalone log:\n{log_path.read_text(errors='replace')[-3000:]}"
            ) from None

    def airflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True)

    def metadata(sql: str, *params: Any) -> list[sqlite3.Row]:
        with sqlite3.connect(home / "airflow.db", timeout=30) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()

    def backfill(day: datetime) -> None:
        """Two runs (the slot's tick and the next), both at once; wait until the backfill is complete."""
        args = ("--from-date", day.isoformat(), "--to-date", (day + timedelta(minutes=5)).isoformat())
        created: list[subprocess.CompletedProcess[str]] = []

        def create() -> bool:  # fails until the DAG processor has serialized the DAG
            created.append(
                airflow("backfill", "create", "--dag-id", "kpi_alerts", *args, "--max-active-runs", "2")
            )
            return created[-1].returncode == 0

        wait_for(f"backfill create {' '.join(args)}", create, timeout=90)
        wait_for(
            f"the backfill from {day.isoformat()} to complete",
            lambda: not metadata("SELECT id FROM backfill WHERE completed_at IS NULL"),
        )

    log = log_path.open("wb")
    standalone = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        backfill(day2)
        backfill(day1)
        after_backfill = {
            (r["kpi_alert_id"], r["slot"]): dict(r) for r in db.execute("SELECT * FROM cron_job_results")
        }
        next_runs = {
            r["alert_id"]: r["next_run_at"]
            for r in db.execute(
                "SELECT a.id AS alert_id, j.next_run_at FROM kpi_alerts a JOIN cron_jobs j ON j.id = a.cron_job_id"
            )
        }
        messages_after_backfill = [str(m["Subject"]) for m in mailbox.messages()]
        # Then a normal run (now): today's slot, which no backfill run touched, is sent once per alert.
        wait_for(
            "the normal run to be triggered", lambda: airflow("dags", "trigger", "kpi_alerts").returncode == 0
        )
        wait_for(
            "today's slots to be sent",
            lambda: (
                db.execute(
                    "SELECT count(*) AS n FROM cron_job_results WHERE slot = %s AND status = 'sent'", [today]
                ).fetchone()["n"]
                == 4
            ),
        )
        runs = metadata("SELECT run_type, state, logical_date FROM dag_run WHERE dag_id = 'kpi_alerts'")
    finally:
        stop_process_tree(standalone.pid)
        log.close()

    # Four backfill runs, all finished green (a missed slot is not a failure).
    assert sorted(r["state"] for r in runs if r["run_type"] == "backfill") == ["success"] * 4, runs

    # No e-mail for an old slot (nor any other) from the backfill.
    assert messages_after_backfill == []

    rows = after_backfill
    # The sent slots are untouched, and nothing is duplicated: the never-run old slots are recorded missed.
    assert {k: rows.get(k) for k in sent_before} == sent_before
    assert sorted((a, s, r["status"]) for (a, s), r in rows.items() if (a, s) not in sent_before) == sorted(
        [(never, day2, "missed"), (never, day1, "missed"), (only_day2, day1, "missed")]
    )
    for alert_id, slot in ((never, day2), (never, day1), (only_day2, day1)):
        row = rows[(alert_id, slot)]
        assert row["dag_run_id"].startswith("backfill__"), row["dag_run_id"]
        backfill_run = row["dag_run_id"].partition("__")[2]  # the tick of the slot, or the next one
        assert row["error"] == (
            f"missed 1 slot(s) from {slot.isoformat()} to {slot.isoformat()}: not run within the 60-minute "
            f"misfire window (found by a backfill run for {backfill_run}: the window is measured from the "
            "wall clock, so an old report is recorded, not sent late)"
        )
        assert backfill_run in (slot.isoformat(), (slot + timedelta(minutes=5)).isoformat())
    # Today's slot, due and inside the window, was left to the normal runs: every alert waits on it.
    assert next_runs == {both: today, stale: today, never: today, only_day2: today}

    # The normal run sent it, once per alert, and nothing else.
    rows = {(r["kpi_alert_id"], r["slot"]): dict(r) for r in db.execute("SELECT * FROM cron_job_results")}
    assert {k: r for k, r in rows.items() if k[1] != today} == after_backfill
    subjects = sorted(str(m["Subject"]) for m in mailbox.messages())
    assert len(subjects) == 4 and all(s.endswith(f" — {today.date().isoformat()}") for s in subjects), (
        subjects
    )
