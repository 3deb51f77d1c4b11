"""Claim throughput: 8 processes claiming and finishing slots (the real path) vs pgbench on the same server.

Run from the repository root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_claims [SECONDS]

Each of 8 OS processes owns 100 of 800 hourly alerts (schedules and thresholds; distinct alerts, so
no process waits on another) and runs ``claim_slot`` + ``finish_claim`` over them, one UTC hour of
logical time after another, for SECONDS (default 10) — every claim is a distinct (alert, slot): a
ledger row written, the ``cron_jobs`` row locked, stamped (``prevent_multiple_updates()`` fires) and
advanced. The baseline is ``pgbench -N -c 8 -j 2 -T SECONDS`` on a scratch database of the same
server, run before *and* after the claims (their mean), so both see the same machine load.

Databases: ``kpi_alerts_bench_claims`` (alerts made once and reused; reset each run) and
``kpi_alerts_bench_pgbench`` (``pgbench -i`` each run).
"""

from __future__ import annotations

import multiprocessing
import queue
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from devstack.postgres import PostgresServer, ensure_database, ensure_postgres
from kpi_alerts.ledger.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "kpi_alerts_bench_claims"
PGBENCH_DATABASE = "kpi_alerts_bench_pgbench"
PROCESSES = 8
PER_PROCESS = 100
T = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
DATASET = f"claims-v2: {PROCESSES * PER_PROCESS} hourly alerts"

# Like create_alert, in bulk: even ids are hourly schedules (a few timezones), odd ids thresholds.
CREATE = """
WITH jobs AS (
    INSERT INTO cron_jobs (job_name, locked, master_locked, next_run_at)
    SELECT 'kpi_alert_claims_bench_' || n, false, false, %(t)s FROM generate_series(1, %(n)s) AS n
    RETURNING id, split_part(job_name, '_', 5)::int AS n
), alerts AS (
    INSERT INTO kpi_alerts (cron_job_id, organization_id, alert_type, alert_name, recipients, cube_query)
    SELECT id, 1 + n %% 10, CASE WHEN n %% 2 = 0 THEN 'schedule' ELSE 'threshold' END, 'Claims bench ' || n,
           ARRAY['bench' || n || '@example.com'], '{"measures": ["orders.count"]}'::jsonb
    FROM jobs
    RETURNING id, cron_job_id, alert_type
), schedules AS (
    INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_minute, timezone)
    SELECT alerts.id, 'hour', 0, (ARRAY['UTC', 'Europe/London', 'America/Los_Angeles', 'Asia/Kolkata'])[1 + n %% 4]
    FROM alerts JOIN jobs ON jobs.id = alerts.cron_job_id WHERE alert_type = 'schedule'
)
INSERT INTO kpi_thresholds (kpi_alert_id, condition, threshold_value)
SELECT id, 'GREATER_THAN', 10 FROM alerts WHERE alert_type = 'threshold'
"""
RESET = [
    "TRUNCATE cron_job_results",
    "UPDATE cron_jobs SET next_run_at = %(t)s, locked = false, last_ran_at_date = NULL, "
    "last_ran_at_hour = NULL, last_ran_at_minute = NULL",
    "UPDATE kpi_thresholds SET state = 'OK', last_value = NULL, last_notified_at = NULL",
]


def prepare(url: str) -> None:
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        marker = conn.execute("SELECT obj_description('cron_jobs'::regclass, 'pg_class')").fetchone()
        if marker is None or marker[0] != DATASET:
            print(f"creating {PROCESSES * PER_PROCESS} alerts in {DATABASE} (once)...", flush=True)
            conn.execute(
                "TRUNCATE cron_jobs, kpi_alerts, kpi_schedules, kpi_thresholds, cron_job_results CASCADE"
            )
            conn.execute(CREATE, {"t": T, "n": PROCESSES * PER_PROCESS})
            conn.execute(f"COMMENT ON TABLE cron_jobs IS '{DATASET}'")
        for statement in RESET:
            conn.execute(statement, {"t": T} if "%(" in statement else None)
        conn.execute("VACUUM ANALYZE")


def claimant(number: int, processes: int, url: str, seconds: float, start: Any, results: Any) -> None:
    """One claimant process: claim + finish its own alerts, hour after hour, until the deadline."""
    from kpi_alerts.ledger.alert_store import list_alerts
    from kpi_alerts.ledger.claim_terms import Claim, Claimant, ClaimSettings
    from kpi_alerts.ledger.claims import claim_slot
    from kpi_alerts.ledger.database import connect
    from kpi_alerts.ledger.outcomes import Outcome, ThresholdStateUpdate, finish_claim

    with connect(url) as conn:
        mine = [a for a in list_alerts(conn) if a.alert_id % processes == number]
        me, settings = Claimant(dag_run_id=f"bench-{number}", worker=f"bench-{number}"), ClaimSettings()
        claims = refused = 0
        latencies: list[float] = []
        start.wait(60)
        began = time.perf_counter()
        deadline = began + seconds
        hour = 0
        while time.perf_counter() < deadline:
            logical_time = T + timedelta(hours=hour)
            for alert in mine:
                t0 = time.perf_counter()
                result = claim_slot(conn, alert, logical_time=logical_time, now=logical_time, claimant=me,
                                    settings=settings)  # fmt: skip
                if not isinstance(result, Claim):
                    refused += 1
                    continue
                state = ThresholdStateUpdate("OK", None, None) if alert.threshold is not None else None
                finish_claim(
                    conn, alert, result, Outcome("not_triggered"), now=logical_time, threshold_state=state
                )
                latencies.append(time.perf_counter() - t0)
                claims += 1
                if time.perf_counter() >= deadline:
                    break
            hour += 1
        elapsed = time.perf_counter() - began
    results.put({"claims": claims, "refused": refused, "elapsed": elapsed, "latencies": latencies})


def round_trips(number: int, processes: int, url: str, seconds: float, start: Any, results: Any) -> None:
    """The client-side floor: the same transactions and round trips as a claim, of ``SELECT 1``."""
    from kpi_alerts.ledger.database import connect

    with connect(url) as conn:
        units = 0
        start.wait(60)
        began = time.perf_counter()
        deadline = began + seconds
        while time.perf_counter() < deadline:
            conn.execute("SELECT 1").fetchone()  # claim_slot: one statement (CLAIM_FRESH_SLOT)
            conn.execute("SELECT 1").fetchone()  # finish_claim: one statement (FINISH_SLOT)
            units += 1
        elapsed = time.perf_counter() - began
    results.put({"claims": units, "refused": 0, "elapsed": elapsed, "latencies": []})


def run_processes(
    target: Any, url: str, seconds: float, processes: int = PROCESSES
) -> tuple[float, list[dict[str, Any]]]:
    """Run ``target`` in ``processes`` spawned processes started together; return units/s and their reports."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    children = [
        ctx.Process(target=target, args=(n, processes, url, seconds, start, results))
        for n in range(processes)
    ]
    for child in children:
        child.start()
    outcomes: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds + 120
    while len(outcomes) < processes:
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if time.monotonic() > deadline or any(c.exitcode not in (None, 0) for c in children):
                for child in children:
                    child.kill()
                raise RuntimeError("a benchmark process failed or hung; see its traceback above") from None
    for child in children:
        child.join(10)
    total = sum(o["claims"] for o in outcomes)
    return total / max(o["elapsed"] for o in outcomes), outcomes


def pgbench(pg: PostgresServer, seconds: float) -> float:
    args = [pg.bin("pgbench"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"]
    done = subprocess.run(
        [*args, "-N", "-c", "8", "-j", "2", "-T", str(int(seconds)), PGBENCH_DATABASE],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


def main(seconds: float = 10) -> None:
    pg = ensure_postgres()
    url = ensure_database(pg, DATABASE)
    prepare(url)
    ensure_database(pg, PGBENCH_DATABASE, recreate=True)
    init = [pg.bin("pgbench"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-i", "-q", "-s", "8"]
    subprocess.run([*init, PGBENCH_DATABASE], capture_output=True, check=True)

    before = pgbench(pg, seconds)
    claims_per_s, outcomes = run_processes(claimant, url, seconds)
    floor_per_s, _ = run_processes(round_trips, url, seconds)
    after = pgbench(pg, seconds)

    with psycopg.connect(url) as conn:
        counted = conn.execute(
            "SELECT count(*), count(DISTINCT (cron_job_id, slot)) FROM cron_job_results"
        ).fetchone()
    assert counted is not None
    rows, distinct = counted
    total = sum(o["claims"] for o in outcomes)
    assert rows == distinct == total, (rows, distinct, total)
    assert sum(o["refused"] for o in outcomes) == 0
    latencies = sorted(x * 1000 for o in outcomes for x in o["latencies"])
    baseline = statistics.mean([before, after])
    ratio = claims_per_s / baseline
    print(f"command: cd {ROOT} && PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_claims {seconds:g}")
    print(f"baseline: {pg.bin('pgbench')} -N -c 8 -j 2 -T {seconds:g} (scale 8), same server, same run")
    print(f"pgbench -N, before the claims           {before:8.0f} tps")
    print(f"pgbench -N, after the claims            {after:8.0f} tps")
    print(
        f"claims: claim_slot + finish_claim       {claims_per_s:8.0f} claims/s  ({total:,} distinct (alert, slot) "
        f"claims, {PROCESSES} processes, {seconds:g} s; {rows:,} ledger rows)"
    )
    print(
        f"  latency per claim + finish            median {statistics.median(latencies):.2f} ms, "
        f"p95 {statistics.quantiles(latencies, n=20)[-1]:.2f} ms"
    )
    print(
        f"floor: same round trips, SELECT 1       {floor_per_s:8.0f} units/s   (8 psycopg processes, 2 "
        "statements, each its own transaction, per unit, like a claim)"
    )
    verdict = "OK" if ratio >= 0.5 else "BELOW TARGET"
    print(f"ratio claims/s : pgbench tps (mean)     {ratio:8.2f}   (target >= 0.5) -> {verdict}")
    print(f"ratio claims/s : floor units/s          {claims_per_s / floor_per_s:8.2f}")
    print(
        f"ratio floor : pgbench (the most a claim path with these round trips can reach here) {floor_per_s / baseline:.2f}"
    )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 10)
