"""The due query over 1,000,000 alerts of which 1,000 are due: median latency and its plan.

Run from the repository root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_due [RUNS]

Uses the devstack PostgreSQL (started if needed) and a database of its own, ``kpi_alerts_bench``,
loaded once with ``generate_series`` (~20 s) and reused by later runs. It times the real
``queries.DUE_ALERTS`` (the DAG's limit) RUNS times (default 100) and prints its
``EXPLAIN (ANALYZE, BUFFERS)``; the baselines measured in the same run are a ``SELECT 1`` round trip
and the same query with index scans disabled. A last figure shows what 50,000 *inactive* alerts whose
``next_run_at`` has passed would cost every tick, and the same after ``PARK_INACTIVE_ALERTS`` (what
``find_due_alerts`` runs first) took them out of the due index (measured inside a transaction that
is rolled back, so the updated rows' dead versions are still indexed: upper bounds).

All four tables are loaded (schedules for 4 in 5 alerts, thresholds for the rest), although the due
query reads only ``cron_jobs`` and ``kpi_alerts``.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from devstack.postgres import ensure_database, ensure_postgres
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "kpi_alerts_bench"
DATASET = "due-v2: 1,000,000 alerts, 1,000 due, 5,000 paused and overdue, 10,000 inactive (future)"
ALERTS = 1_000_000
DUE = 1_000
T = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)
DAG_LIMIT = 100_000  # what kpi_alerts.operators.tasks.find_due_alerts asks for

# Row n: n <= 1,000 are due within the last 10 minutes; 1,000 < n <= 6,000 are paused by an operator
# with a slot in the past; the rest are spread over the next 30 days. Every 100th future alert is
# inactive. One statement per table, foreign-key triggers off for the load only.
LOAD = [
    "SET session_replication_role = replica",
    """
    INSERT INTO cron_jobs (id, job_name, locked, master_locked, next_run_at, created_at)
    SELECT n, 'kpi_alert_bench_' || n, false, n BETWEEN 1001 AND 6000,
           CASE WHEN n <= 6000 THEN %(t)s::timestamptz - make_interval(secs => (n %% 600))
                ELSE %(t)s::timestamptz + make_interval(mins => (1 + (n::bigint * 7919) %% 43200)::int) END,
           %(t)s::timestamptz - interval '90 days'
    FROM generate_series(1, %(n)s) AS n
    """,
    """
    INSERT INTO kpi_alerts (id, cron_job_id, organization_id, graph_id, dashboard_id, alert_type, alert_name,
                            recipients, is_active, cube_query)
    SELECT n, n, 1 + n %% 500, n, n %% 1000, CASE WHEN n %% 5 = 0 THEN 'threshold' ELSE 'schedule' END,
           'Bench alert ' || n, ARRAY['owner' || n || '@example.com'], n <= 6000 OR n %% 100 <> 0,
           '{"measures": ["orders.count"]}'::jsonb
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
    "SET session_replication_role = DEFAULT",
    "CREATE TABLE bench_dataset (description text NOT NULL)",
    "INSERT INTO bench_dataset VALUES (%(dataset)s)",
]

INACTIVE_BACKLOG = """
WITH gone AS (
    UPDATE kpi_alerts SET is_active = false WHERE id BETWEEN 6001 AND 56000 RETURNING cron_job_id
)
UPDATE cron_jobs SET next_run_at = %(t)s::timestamptz - interval '30 days'
WHERE id IN (SELECT cron_job_id FROM gone)
"""


def prepare(url: str) -> float:
    """Load the dataset unless this version is there; return the load time (0 when reused)."""
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        marker = conn.execute("SELECT to_regclass('bench_dataset') IS NOT NULL").fetchone()
        if marker and marker[0]:
            found = conn.execute("SELECT description FROM bench_dataset").fetchone()
            if found and found[0] == DATASET:
                for table in ("cron_jobs", "kpi_alerts"):  # in case an earlier run was interrupted
                    conn.execute(f"VACUUM ANALYZE {table}")
                return 0.0
            conn.execute("DROP TABLE bench_dataset")
        print(f"loading {ALERTS:,} alerts into {DATABASE} (once; later runs reuse them)...", flush=True)
        started = time.perf_counter()
        conn.execute(
            "TRUNCATE cron_jobs, kpi_alerts, kpi_schedules, kpi_thresholds, cron_job_results CASCADE"
        )
        with conn.transaction():
            for statement in LOAD:
                params = {"t": T, "n": ALERTS, "dataset": DATASET} if "%(" in statement else None
                conn.execute(statement, params)
        for table in ("cron_jobs", "kpi_alerts", "kpi_schedules", "kpi_thresholds"):
            conn.execute(f"VACUUM ANALYZE {table}")
        return time.perf_counter() - started


def timed(conn: psycopg.Connection[Any], query: str, params: dict[str, Any], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(query, params).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main(runs: int = 100) -> None:
    pg = ensure_postgres()
    url = ensure_database(pg, DATABASE)
    loaded = prepare(url)
    params = {"logical_time": T, "limit": DAG_LIMIT}
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        due = conn.execute(queries.DUE_ALERTS, params).fetchall()
        assert len(due) == DUE, len(due)
        counts = conn.execute(
            "SELECT count(*) AS alerts, count(*) FILTER (WHERE NOT ka.is_active) AS inactive, "
            "count(*) FILTER (WHERE cj.master_locked) AS paused FROM cron_jobs cj JOIN kpi_alerts ka "
            "ON ka.cron_job_id = cj.id"
        ).fetchone()
        timed(conn, queries.DUE_ALERTS, params, 5)  # warm the cache and the prepared statement
        due_ms = timed(conn, queries.DUE_ALERTS, params, runs)
        uninitialised_ms = timed(conn, queries.UNINITIALISED_ALERTS, {"limit": 10_000}, runs)
        round_trip_ms = timed(conn, "SELECT 1", {}, runs)
        plan = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) " + queries.DUE_ALERTS,
            params,
        ).fetchall()
        plan_text = "\n".join(row["QUERY PLAN"] for row in plan)
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            no_index_ms = timed(conn, queries.DUE_ALERTS, params, 5)
        with conn.transaction():  # rolled back below: the dataset stays as loaded
            conn.execute(INACTIVE_BACKLOG, {"t": T})
            conn.execute("ANALYZE cron_jobs")
            assert len(conn.execute(queries.DUE_ALERTS, params).fetchall()) == DUE
            backlog_ms = timed(conn, queries.DUE_ALERTS, params, max(runs // 5, 10))
            # What the DAG does about it: find_due_alerts parks them (next_run_at NULL) first.
            parked = conn.execute(queries.PARK_INACTIVE_ALERTS, {"logical_time": T}).rowcount
            conn.execute("ANALYZE cron_jobs")
            parked_ms = timed(conn, queries.DUE_ALERTS, params, max(runs // 5, 10))
            raise psycopg.Rollback()
        for table in ("cron_jobs", "kpi_alerts"):  # the rolled-back update left dead row versions
            conn.execute(f"VACUUM ANALYZE {table}")

    median = statistics.median(due_ms)
    print(f"command: cd {ROOT} && PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_due {runs}")
    how = f"loaded in {loaded:.0f} s" if loaded else "reused"
    print(f"dataset: {DATASET} ({how})")
    assert counts is not None
    print(
        f"         {counts['alerts']:,} alerts, {counts['paused']:,} paused, {counts['inactive']:,} inactive;"
        f" logical time {T.isoformat()}"
    )
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) of queries.DUE_ALERTS (limit {DAG_LIMIT:,}):\n{plan_text}\n")
    index_driven = "cron_jobs_due_idx" in plan_text and "Seq Scan on cron_jobs" not in plan_text
    print(f"{'case':<52}{'median ms':>10}{'p95 ms':>9}{'runs':>6}")
    rows = [
        ("DUE_ALERTS, 1,000 of 1,000,000 due", due_ms),
        ("  baseline: SELECT 1 round trip", round_trip_ms),
        ("  baseline: DUE_ALERTS without index scans", no_index_ms),
        ("UNINITIALISED_ALERTS (also run every tick)", uninitialised_ms),
        ("DUE_ALERTS + 50,000 inactive alerts overdue", backlog_ms),
        (f"  ... after PARK_INACTIVE_ALERTS ({parked:,} parked)", parked_ms),
    ]
    for name, samples in rows:
        spread = f"{p95(samples):9.2f}" if len(samples) >= 10 else f"{'':>9}"
        print(f"{name:<52}{statistics.median(samples):10.2f}{spread}{len(samples):6}")
    verdict = "OK" if median <= 20 and index_driven else "OVER TARGET"
    print(
        f"\ndue query median {median:.2f} ms (target <= 20 ms), plan uses cron_jobs_due_idx: {index_driven}"
        f" -> {verdict}; {statistics.median(no_index_ms) / median:.0f}x faster than without the index"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
