"""Two independent Airflow installations run the same tick against one alerts database.

Each has its own ``AIRFLOW_HOME`` and SQLite metadata DB (``airflow db migrate`` in each), and runs
``airflow dags test kpi_alerts <T>`` as a separate OS process, both at once — as two schedulers
that share nothing but the alerts database would. Real Cube.js, real SMTP: every due alert's report
arrives exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from devstack.stack import Stack, airflow_env
from kpi_alerts.ledger.alert_store import create_alert

pytestmark = [pytest.mark.slow, pytest.mark.services]

T = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)  # a Monday: 09:05 in Los Angeles, 02:05 on Tuesday in Tokyo
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
QUERY = {
    "measures": ["orders.count", "orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-07"]}
    ],
}
# (timezone, frequency, local hour, minute, selected_days): each fires at 17:00 or 17:05 UTC on T's day.
SCHEDULES = [
    ("UTC", "day", 17, 5, []),
    ("UTC", "day", 17, 0, []),
    ("UTC", "hour", 0, 5, []),
    ("UTC", "hour", 0, 0, [1]),
    ("UTC", "week", 17, 5, [1]),
    ("UTC", "month", 17, 5, [7]),
    ("Europe/London", "day", 17, 5, [1, 2, 3, 4, 5]),
    ("Europe/London", "week", 17, 0, [1, 4]),
    ("Europe/Berlin", "day", 18, 5, []),
    ("Europe/Berlin", "month", 18, 0, [7, 21]),
    ("America/Los_Angeles", "day", 9, 5, []),
    ("America/Los_Angeles", "week", 9, 0, [1]),
    ("America/New_York", "day", 12, 5, []),
    ("America/New_York", "month", 12, 0, [7]),
    ("Asia/Tokyo", "day", 2, 5, []),
    ("Asia/Tokyo", "week", 2, 0, [2]),  # Tuesday in Tokyo
    ("Asia/Kolkata", "day", 22, 35, []),
    ("Australia/Sydney", "day", 4, 5, []),  # summer time: UTC+11, Tuesday 04:05
    ("America/Sao_Paulo", "day", 14, 5, []),
    ("Pacific/Auckland", "day", 6, 0, []),  # summer time: UTC+13, Tuesday 06:00
]


def installation(home: Path, stack: Stack) -> dict[str, str]:
    home.mkdir()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return {**inherited, **airflow_env(stack, home, production=True), "AIRFLOW__CORE__PARALLELISM": "2"}


def run_both(args: list[str], envs: list[dict[str, str]], timeout: float) -> list[tuple[int, int, str]]:
    """Start ``airflow <args>`` in every installation at once; return (pid, exit code, log) of each."""
    processes = []
    for env in envs:
        log = Path(env["AIRFLOW_HOME"]) / f"{args[0]}.log"
        with log.open("w") as out:
            processes.append(
                (subprocess.Popen([AIRFLOW, *args], env=env, stdout=out, stderr=subprocess.STDOUT), log)
            )
    results = []
    for process, log in processes:
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        results.append((process.pid, code, log.read_text(errors="replace")))
    return results


def test_two_airflows_at_the_same_logical_time_send_each_report_exactly_once(
    db: psycopg.Connection[Any],
    stack: Stack,
    mailbox: MailCatcher,
    tmp_path: Path,
) -> None:
    recipients = {}
    for n, (tz, frequency, hour, minute, days) in enumerate(SCHEDULES):
        org = 1 + n % 2
        address = f"report{n:02d}@org{org}.example.com"
        created = create_alert(
            db,
            {
                "organization_id": org,
                "alert_name": f"Report {n:02d} {frequency} {tz}",
                "recipients": [address],
                "cube_query": QUERY,
                "schedule": {
                    "frequency_interval": frequency,
                    "schedule_hour": hour,
                    "schedule_minute": minute,
                    "selected_days": days,
                    "timezone": tz,
                    "attachment_type": "csv",
                },
            },
            now=T - timedelta(minutes=10),
        )
        assert created.next_run_at in (T, T - timedelta(minutes=5)), (tz, frequency, created.next_run_at)
        recipients[created.alert_id] = address
    envs = [installation(tmp_path / name, stack) for name in ("airflow_a", "airflow_b")]

    for _, code, log in run_both(["db", "migrate"], envs, timeout=120):
        assert code == 0, log[-3000:]
    runs = run_both(["dags", "test", "kpi_alerts", T.isoformat()], envs, timeout=240)

    for _, code, log in runs:
        assert code == 0, log[-5000:]
    received = Counter(address for m in mailbox.messages() for address in m["To"].split(", "))
    assert received == Counter(recipients.values())  # every due report, each exactly once
    attachments = [[a.get_filename() for a in m.iter_attachments()] for m in mailbox.messages()]
    assert all(len(names) == 1 and str(names[0]).endswith(".csv") for names in attachments)
    rows = db.execute("SELECT * FROM cron_job_results ORDER BY kpi_alert_id").fetchall()
    assert [r["kpi_alert_id"] for r in rows] == sorted(recipients)
    assert {(r["status"], r["delivery"], r["takeovers"]) for r in rows} == {("sent", "smtp", 0)}
    assert [r["recipients"] for r in rows] == [[recipients[a]] for a in sorted(recipients)]
    # Each slot was sent by one of the two installations (their `airflow dags test` processes).
    pids = {str(pid) for pid, _, _ in runs}
    assert {r["claimed_by"].rsplit(":", 1)[1] for r in rows} <= pids
    per_installation = Counter(r["claimed_by"].rsplit(":", 1)[1] for r in rows)
    print(f"reports sent per installation: {dict(per_installation)}")
    jobs = db.execute("SELECT bool_or(locked) AS locked, min(next_run_at) AS next FROM cron_jobs").fetchone()
    assert jobs == {"locked": False, "next": datetime(2026, 12, 7, 18, 0, tzinfo=UTC)}  # the hourly ones
