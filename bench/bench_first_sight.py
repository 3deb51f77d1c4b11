"""First sight of alerts created by plain SQL, in bulk: ``initialise_first_runs`` over N new rows.

Run from the repository root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_first_sight [N] [RUNS]

Uses the devstack PostgreSQL (started if needed) and a database of its own, ``kpi_alerts_bench_first``.
Each run loads N alerts (default 10,000; the mix of issue 11: 4 in 5 daily/weekly/monthly/hourly
schedules in four timezones, 1 in 5 hourly thresholds) with ``next_run_at`` NULL, as the seed's way of
creating alerts leaves them, and times one ``initialise_first_runs`` call (what ``find_due_alerts``
does on every tick) until every row has its first slot. It prints each run, the median and the spread
(min-max), and checks that no row was left uninitialised. The baseline printed next to it is a
``SELECT 1`` round trip per alert: what one statement per alert costs at the least.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from devstack.postgres import ensure_database, ensure_postgres
from kpi_alerts.ledger.due_alerts import initialise_first_runs
from kpi_alerts.ledger.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "kpi_alerts_bench_first"
T = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)

LOAD = [
    "TRUNCATE cron_jobs, kpi_alerts, kpi_schedules, kpi_thresholds, cron_job_results CASCADE",
    """
    INSERT INTO cron_jobs (id, job_name, locked, master_locked, next_run_at)
    SELECT n, 'kpi_alert_bench_' || n, false, false, NULL FROM generate_series(1, %(n)s) AS n
    """,
    """
    INSERT INTO kpi_alerts (id, cron_job_id, organization_id, alert_type, alert_name, recipients, is_active,
                            cube_query)
    SELECT n, n, 1 + n %% 500, CASE WHEN n %% 5 = 0 THEN 'threshold' ELSE 'schedule' END,
           'Bench alert ' || n, ARRAY['owner' || n || '@example.com'], true,
           '{"measures": ["orders.count"], "timeDimensions": [{"dimension": "orders.created_at",
             "granularity": "day", "dateRange": "last 7 days"}]}'::jsonb
    FROM generate_series(1, %(n)s) AS n
    """,
    """
    INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_hour, schedule_minute, selected_days,
                               timezone, attachment_type)
    SELECT n, (ARRAY['hour', 'day', 'week', 'month'])[1 + n %% 4], n %% 24, n %% 60,
           CASE n %% 4 WHEN 2 THEN '{1,3,5}'::smallint[] WHEN 3 THEN '{1,15}'::smallint[] ELSE '{}' END,
           (ARRAY['UTC', 'Europe/London', 'America/Los_Angeles', 'Asia/Tokyo'])[1 + n %% 7 %% 4], 'csv'
    FROM generate_series(1, %(n)s) AS n WHERE n %% 5 <> 0
    """,
    """
    INSERT INTO kpi_thresholds (kpi_alert_id, condition, threshold_value, timezone)
    SELECT n, 'GREATER_THAN', n %% 1000, 'UTC' FROM generate_series(1, %(n)s) AS n WHERE n %% 5 = 0
    """,
    "SELECT setval(pg_get_serial_sequence('cron_jobs', 'id'), %(n)s)",
    "SELECT setval(pg_get_serial_sequence('kpi_alerts', 'id'), %(n)s)",
]


def load(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for statement in LOAD:
                conn.execute(statement, {"n": n} if "%(" in statement else None)
        for table in ("cron_jobs", "kpi_alerts", "kpi_schedules", "kpi_thresholds"):
            conn.execute(f"VACUUM ANALYZE {table}")


def main(n: int = 10_000, runs: int = 3) -> None:
    pg = ensure_postgres()
    url = ensure_database(pg, DATABASE)
    migrate(url)
    seconds = []
    for _ in range(runs):
        load(url, n)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            started = time.perf_counter()
            initialised = initialise_first_runs(conn, logical_time=T, oldest_slot=T - timedelta(hours=1))
            seconds.append(time.perf_counter() - started)
            left = conn.execute("SELECT count(*) AS n FROM cron_jobs WHERE next_run_at IS NULL").fetchone()
            assert left is not None and left["n"] == 0, f"{left} row(s) left uninitialised"
            assert initialised == n, (initialised, n)
            round_trips = time.perf_counter()
            for _ in range(min(n, 2_000)):
                conn.execute("SELECT 1").fetchone()
            per_round_trip = (time.perf_counter() - round_trips) / min(n, 2_000)
        print(f"  run: {seconds[-1]:.2f} s for {initialised:,} alerts", flush=True)
    median = statistics.median(seconds)
    print(
        f"command: cd {ROOT} && PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_first_sight {n} {runs}"
    )
    print(
        f"initialise_first_runs over {n:,} new alerts: median {median:.2f} s "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {runs} runs), {n / median:,.0f} alerts/s"
    )
    print(
        f"baseline: one SELECT 1 round trip per alert would take {per_round_trip * n:.2f} s "
        f"({per_round_trip * 1000:.3f} ms each)"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
