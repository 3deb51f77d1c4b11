"""One peak tick: N due alerts of the production mix, run by the real scheduler (and by ``dags test``).

Run from the repository root (``make bench`` runs it with the defaults)::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_tick [--n 1000] [--mode both] [--runs 1]

What it does, per run and mode:

1. a fresh alerts database ``kpi_alerts_bench_tick`` on the devstack PostgreSQL, with N alerts made in
   bulk SQL: 80 % daily 09:00 America/Los_Angeles reports (CSV, XLSX, PDF in turn), 10 % hourly
   ``GREATER_THAN -1`` thresholds that breach or alert on no data (so every alert sends one message), 10 % hourly
   anomaly thresholds (``OUTSIDE_EXPECTED_RANGE`` ± 0.01 MAD of the same weekday over 8 weeks: a band so narrow
   that the value is outside it, or "not enough history" alerts on no data; one that lands inside it sends
   nothing, and is not counted as missing), all due at the
   same slot (2026-11-30 17:00 UTC). Their Cube queries differ (date range, length, measures,
   filters, organization); one alert in ten shares its query with another alert of the same
   organization and timezone (several people subscribed to one graph);
2. its own SMTP server (``devstack.mail`` in a process of its own) and the devstack Cube;
3. ``--mode scheduler``: ``airflow standalone`` (scheduler, DAG processor, API server, triggerer;
   LocalExecutor with ``--parallelism``, default 4 as the README recommends for 2 cores), metadata
   on the same PostgreSQL, ``[scheduler] use_job_schedule = False`` so that only the triggered run
   works; one ``airflow dags trigger kpi_alerts --logical-date 2026-11-30T17:05:00+00:00``, timed
   from the trigger to the run's end. ``--mode dags-test``: ``airflow dags test kpi_alerts <T>``
   (one process, SQLite metadata), timed around the command;
4. the same-run baseline: a plain script doing only the irreducible work per alert — one Cube
   ``/load`` of the alert's own query (one HTTP session per process), one SMTP send of a small
   message on a reused session, one ledger row inserted — in as many processes as the executor
   runs tasks at once (``--parallelism``; 1 for dags-test).

Printed per run: wall time, alerts/s, CPU seconds per alert summed over every process involved
(the Airflow process tree or the baseline processes, PostgreSQL's server processes, Cube, the SMTP
server; CPU of processes that exited is counted through their parents' ``children`` times), peak
memory of the task processes, messages received, duplicates and alerts that got nothing, the
ledger's statuses, the latest send relative to the tick's start, and the ratios to the baseline; then,
per alert kind (report, threshold, anomaly), the median and p95 of each alert's time from the ledger and
the ratio anomaly : plain threshold in the same run (docs/conditions.md: at most 3x). Two figures: the
row's ``finished_at - started_at``, where ``started_at`` is the claim of the alert's chunk (up to 32
alerts claimed in one statement), so it includes waiting for the chunk's earlier alerts; and the alert's
own time, ``finished_at`` minus the later of ``started_at`` and the previous finish in the same chunk
(the alerts of a chunk run one after another unless its batch overlaps them in threads).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row

from devstack import STATE_DIR, free_port
from devstack.cube import DEFAULT_PORT as CUBE_PORT
from devstack.postgres import PostgresServer, ensure_database
from devstack.stack import Stack, airflow_env
from kpi_alerts.ledger.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ALERTS_DB = "kpi_alerts_bench_tick"
AIRFLOW_DB = "kpi_alerts_bench_tick_airflow"
SLOT = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # Monday 09:00 in Los Angeles
LOGICAL_TIME = datetime(2026, 11, 30, 17, 5, tzinfo=UTC)  # the 09:05 tick
ATTACHMENTS = ("csv", "excel", "pdf")
MEASURES = (
    ["orders.total_amount", "orders.count"],
    ["orders.total_amount"],
    ["orders.count"],
    ["orders.average_amount", "orders.count"],
)
FILTERS: tuple[list[dict[str, Any]], ...] = (
    [],
    [{"member": "orders.status", "operator": "equals", "values": ["completed"]}],
    [{"member": "orders.category", "operator": "equals", "values": ["books"]}],
    [{"member": "orders.category", "operator": "equals", "values": ["electronics", "garden"]}],
)


# --- the alerts --------------------------------------------------------------------------------


def query_number(n: int) -> int:
    """Alert n's graph: every tenth alert shares the graph of the alert before it."""
    return n - 1 if n % 10 == 0 else n


def cube_query(q: int) -> dict[str, Any]:
    """Graph q's query: distinct for distinct q (up to 40,320 graphs)."""
    start = datetime(2026, 1, 1).toordinal() + q % 360
    length = 7 + (q // 360) % 7
    query: dict[str, Any] = {
        "measures": MEASURES[(q // 2520) % 4],
        "timeDimensions": [
            {
                "dimension": "orders.created_at",
                "granularity": "day",
                "dateRange": [
                    datetime.fromordinal(start).date().isoformat(),
                    datetime.fromordinal(start + length - 1).date().isoformat(),
                ],
            }
        ],
    }
    filters = FILTERS[(q // 10080) % 4]
    if filters:
        query["filters"] = filters
    return query


def organization_of(q: int) -> int:
    return 1 + q % 2


CREATE_ALERTS = """
INSERT INTO cron_jobs (id, job_name, locked, master_locked, next_run_at)
SELECT n, 'kpi_alert_bench_tick_' || n, false, false, %(slot)s FROM unnest(%(ids)s::bigint[]) AS n;
"""
CREATE_KPI_ALERTS = """
INSERT INTO kpi_alerts (id, cron_job_id, organization_id, alert_type, alert_name, recipients, cube_query)
SELECT v.n, v.n, v.org, v.kind, 'Bench tick alert ' || v.n, ARRAY[v.recipient], v.query
FROM unnest(%(ids)s::bigint[], %(orgs)s::bigint[], %(kinds)s::text[], %(recipients)s::text[],
            %(queries)s::jsonb[]) AS v(n, org, kind, recipient, query)
"""
CREATE_SCHEDULES = """
INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_hour, schedule_minute, selected_days,
                           timezone, attachment_type)
SELECT v.n, 'day', 9, 0, '{}', 'America/Los_Angeles', v.attachment
FROM unnest(%(ids)s::bigint[], %(attachments)s::text[]) AS v(n, attachment)
"""
CREATE_THRESHOLDS = """
INSERT INTO kpi_thresholds (kpi_alert_id, condition, threshold_value, timezone, on_no_data)
SELECT v.n, v.condition, v.value, 'America/Los_Angeles', 'alert'
FROM unnest(%(ids)s::bigint[], %(conditions)s::text[], %(values)s::numeric[]) AS v(n, condition, value)
"""
#: A plain threshold that always breaches, and an anomaly band so narrow (± 0.01 MAD) that the value is
#: almost always outside it: both send, so the two kinds' costs compare like for like.
PLAIN_THRESHOLD = ("GREATER_THAN", Decimal(-1))
ANOMALY_THRESHOLD = ("OUTSIDE_EXPECTED_RANGE", Decimal("0.01"))
BASELINE_TABLE = """
CREATE TABLE IF NOT EXISTS bench_baseline_ledger (
    id bigserial PRIMARY KEY, alert_id bigint NOT NULL, slot timestamptz NOT NULL, status text NOT NULL,
    rows integer NOT NULL, finished_at timestamptz NOT NULL DEFAULT now(), UNIQUE (alert_id, slot))
"""


def is_anomaly(n: int) -> bool:
    """Half of the thresholds (every tenth alert) are anomaly conditions."""
    return n % 10 == 0


def recipient(n: int) -> str:
    return f"tick{n}@org{organization_of(query_number(n))}.example.com"


def create_alerts(url: str, n: int) -> None:
    ids = list(range(1, n + 1))
    thresholds = [i for i in ids if i % 5 == 0]
    schedules = [i for i in ids if i % 5 != 0]
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(CREATE_ALERTS, {"slot": SLOT, "ids": ids})
        conn.execute(
            CREATE_KPI_ALERTS,
            {
                "ids": ids,
                "orgs": [organization_of(query_number(i)) for i in ids],
                "kinds": ["threshold" if i % 5 == 0 else "schedule" for i in ids],
                "recipients": [recipient(i) for i in ids],
                "queries": [json.dumps(cube_query(query_number(i))) for i in ids],
            },
        )
        conn.execute(
            CREATE_SCHEDULES,
            {"ids": schedules, "attachments": [ATTACHMENTS[(i // 5) % 3] for i in schedules]},
        )
        kinds = [ANOMALY_THRESHOLD if is_anomaly(i) else PLAIN_THRESHOLD for i in thresholds]
        conn.execute(
            CREATE_THRESHOLDS,
            {"ids": thresholds, "conditions": [k[0] for k in kinds], "values": [k[1] for k in kinds]},
        )
        for table in ("cron_jobs", "kpi_alerts"):
            conn.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", (table, n)
            )  # later inserts do not collide
        conn.execute(BASELINE_TABLE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# --- measuring processes -----------------------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants, including the children they reaped."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = process.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def own_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Servers:
    """The processes serving every mode: PostgreSQL (alerts, Cube's data, Airflow's metadata), Cube, SMTP."""

    postgres: int
    cube: int
    smtp: int

    def cpu(self) -> dict[str, float]:
        return {"postgres": tree_cpu(self.postgres), "cube": tree_cpu(self.cube), "smtp": tree_cpu(self.smtp)}


class MemoryWatch:
    """Samples the RSS of the processes started under ``root`` after the watch began (the task processes;
    with ``include_root``, ``root`` too: ``dags test`` runs every task in its own process)."""

    def __init__(self, root: int, interval: float = 0.5, *, include_root: bool = False) -> None:
        self.root, self.interval = root, interval
        self.before = set() if include_root else self._descendants()
        self.peak_single = 0
        self.peak_sum = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _descendants(self) -> set[int]:
        try:
            return {self.root} | {p.pid for p in psutil.Process(self.root).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for pid in self._descendants() - self.before:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    rss = psutil.Process(pid).memory_info().rss
                    total += rss
                    self.peak_single = max(self.peak_single, rss)
            self.peak_sum = max(self.peak_sum, total)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def airflow_role(cmdline: str) -> str:
    """Which part of Airflow a process is, from its command line (``airflow worker -- <id>`` is a task)."""
    for role in ("scheduler", "dag-processor", "api_server", "triggerer", "serve-logs"):
        if role in cmdline:
            return role.replace("_", "-")
    if "LocalExecutor" in cmdline:
        return "supervisors"  # an executor worker supervising its task (idle ones too)
    if "airflow worker --" in cmdline:
        return "tasks"
    return "other"


class RoleCpuWatch:
    """CPU seconds per Airflow role (tasks, scheduler, API server...) among ``root``'s descendants, sampled:
    a process that starts and ends between two samples is missed (the total still counts it)."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root, self.interval = root, interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.roles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sample(first=True)

    def _sample(self, *, first: bool = False) -> None:
        try:
            processes = psutil.Process(self.root).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                t = process.cpu_times()
                # the last title wins: a forked task process starts with its supervisor's title
                self.roles[process.pid] = airflow_role(" ".join(process.cmdline()))
                if process.pid not in self.first:
                    self.first[process.pid] = t.user + t.system if first else 0.0
                self.last[process.pid] = t.user + t.system

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def parts(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, seconds in self.last.items():
            totals[self.roles[pid]] = totals.get(self.roles[pid], 0.0) + seconds - self.first[pid]
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def __enter__(self) -> RoleCpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# --- results -----------------------------------------------------------------------------------


@dataclass
class Figures:
    label: str
    n: int
    wall: float
    cpu: dict[str, float]
    messages: int = 0
    duplicates: int = 0
    missing: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latest_send: float | None = None
    peak_single_mb: float | None = None
    peak_sum_mb: float | None = None
    state: str = ""
    note: str = ""
    airflow_parts: dict[str, float] = field(default_factory=dict)
    timings: list[str] = field(default_factory=list)
    anomaly_ratio: float | None = None  # anomaly : plain threshold, median own time

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())

    def line(self, baseline: Figures | None = None) -> str:
        per_alert = self.cpu_total / self.n * 1000
        parts = [
            f"{self.label:<12} {self.wall:7.1f} s  {self.n / self.wall:7.1f} alerts/s",
            f"CPU {per_alert:6.1f} ms/alert ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.cpu.items())
            + ")",
            f"messages {self.messages}, duplicates {self.duplicates}, without a message {self.missing}",
        ]
        if self.airflow_parts:
            parts.append(
                "airflow by role (sampled): "
                + ", ".join(f"{k} {v:.1f} s" for k, v in self.airflow_parts.items())
            )
        if self.peak_single_mb is not None:
            parts.append(
                f"task processes peak RSS {self.peak_single_mb:.0f} MB each, {self.peak_sum_mb:.0f} MB all"
            )
        if self.statuses:
            parts.append(f"ledger {dict(sorted(self.statuses.items()))}")
        if self.latest_send is not None:
            parts.append(f"latest send {self.latest_send:.1f} s after the trigger")
        if self.state:
            parts.append(f"run {self.state}")
        if baseline is not None:
            parts.append(
                f"ratio to baseline: wall {self.wall / baseline.wall:.1f}x, "
                f"CPU {self.cpu_total / max(baseline.cpu_total, 1e-9):.1f}x"
            )
        if self.note:
            parts.append(self.note)
        parts.extend(self.timings)
        return "\n    ".join(parts)


def mail_counts(folder: Path, n: int, silent: frozenset[int] = frozenset()) -> tuple[int, int, int]:
    """Messages received, duplicates (messages beyond the first per recipient), alerts without one (every
    alert of the mix sends: reports always, thresholds breach or alert on no data), leaving out the
    ``silent`` ones (an anomaly alert whose value landed inside its band legitimately sends nothing)."""
    per_recipient: Counter[str] = Counter()
    for path in folder.glob("*.eml"):
        with path.open("rb") as f:
            head = f.read(4096).decode(errors="replace")
        to = next((line[len("X-Envelope-To: ") :].strip() for line in head.splitlines()
                   if line.startswith("X-Envelope-To: ")), "")  # fmt: skip
        per_recipient[to] += 1
    messages = sum(per_recipient.values())
    duplicates = sum(c - 1 for c in per_recipient.values())
    missing = sum(1 for i in range(1, n + 1) if per_recipient[recipient(i)] == 0 and i not in silent)
    return messages, duplicates, missing


def ledger(url: str, since: datetime) -> tuple[dict[str, int], float | None]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM cron_job_results GROUP BY status").fetchall()
        latest = conn.execute("SELECT max(finished_at) AS t FROM cron_job_results").fetchone()
    late = (latest["t"] - since).total_seconds() if latest and latest["t"] else None
    return {r["status"]: r["n"] for r in rows}, late


def silent_alerts(url: str) -> frozenset[int]:
    """Anomaly alerts whose check was OK (``not_triggered``): inside the band, so nothing to send."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT r.kpi_alert_id FROM cron_job_results r JOIN kpi_thresholds kt USING (kpi_alert_id) "
            "WHERE r.status = 'not_triggered' AND kt.condition LIKE '%EXPECTED_RANGE'"
        ).fetchall()
    return frozenset(r[0] for r in rows)


KIND_TIMES = """
SELECT r.kpi_alert_id, r.started_at, r.finished_at, r.claimed_by, r.details->>'observation' AS observation,
       CASE WHEN kt.condition IS NULL THEN 'report'
            WHEN kt.condition LIKE '%EXPECTED_RANGE' THEN 'anomaly' ELSE 'threshold' END AS kind
FROM cron_job_results r LEFT JOIN kpi_thresholds kt USING (kpi_alert_id)
WHERE r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
ORDER BY r.started_at, r.claimed_by, r.finished_at
"""


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def kind_times(url: str) -> tuple[list[str], float | None]:
    """Per alert kind, the median and p95 of each alert's time from the ledger, and the ratio anomaly :
    plain threshold; the lines to print and the ratio of the medians of the alerts' own time."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(KIND_TIMES).fetchall()
    raw: dict[str, list[float]] = {}
    own: dict[str, list[float]] = {}
    observations: dict[str, Counter[str]] = {}
    previous: dict[tuple[Any, Any], datetime] = {}
    for row in rows:  # ordered by chunk (its claim), then by finish
        chunk = (row["started_at"], row["claimed_by"])
        began = max(row["started_at"], previous.get(chunk, row["started_at"]))
        previous[chunk] = row["finished_at"]
        raw.setdefault(row["kind"], []).append(
            (row["finished_at"] - row["started_at"]).total_seconds() * 1000
        )
        own.setdefault(row["kind"], []).append((row["finished_at"] - began).total_seconds() * 1000)
        if row["observation"]:
            observations.setdefault(row["kind"], Counter())[row["observation"]] += 1
    lines = []
    ratio = None
    for label, times in (("finished_at - started_at", raw), ("own time", own)):
        parts = [
            f"{kind} median {statistics.median(times[kind]):.1f} ms, p95 {percentile(times[kind], 0.95):.1f} ms "
            f"({len(times[kind])})"
            for kind in ("report", "threshold", "anomaly")
            if times.get(kind)
        ]
        line = f"per alert, {label}: " + "; ".join(parts)
        if times.get("anomaly") and times.get("threshold"):
            median = statistics.median(times["anomaly"]) / max(statistics.median(times["threshold"]), 1e-9)
            p95 = percentile(times["anomaly"], 0.95) / max(percentile(times["threshold"], 0.95), 1e-9)
            line += f"; anomaly : threshold {median:.2f}x (median), {p95:.2f}x (p95)"
            if label == "own time":
                ratio = median
        lines.append(line)
    if observations:
        lines.append(
            "checks: "
            + "; ".join(f"{kind} {dict(sorted(c.items()))}" for kind, c in sorted(observations.items()))
        )
    return lines, ratio


# --- the runs ----------------------------------------------------------------------------------


def start_mail(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.mail", "--port", str(port), "--folder", str(folder)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        time.sleep(0.1)
    raise RuntimeError("bench SMTP server did not start")


def fresh_alerts(pg: PostgresServer, n: int) -> str:
    url = ensure_database(pg, ALERTS_DB, recreate=True)
    migrate(url)
    create_alerts(url, n)
    return url


def base_env(stack: Stack, home: Path) -> dict[str, str]:
    env = {**os.environ, **airflow_env(stack, home)}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return env


def run_scheduler(stack: Stack, servers: Servers, n: int, parallelism: int, work: Path) -> Figures:
    home = work / "airflow-scheduler"
    home.mkdir()
    metadata = ensure_database(stack.pg, AIRFLOW_DB, recreate=True).replace(
        "postgresql://", "postgresql+psycopg2://"
    )
    env = base_env(stack, home)
    env.update(
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the triggered run
            "AIRFLOW__API__HOST": "127.0.0.1",  # standalone listens on every interface otherwise
            "AIRFLOW__API__PORT": str(api_port := free_port()),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    log_path = work / "standalone.log"
    with log_path.open("wb") as log:
        standalone = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        meta = metadata.replace("postgresql+psycopg2://", "postgresql://")
        wait_for(lambda: dag_parsed(meta), 300, f"the DAG was not parsed; see {log_path}")
        time.sleep(5)  # let start-up settle (the first parse, the API server's workers)
        started_wall = datetime.now(UTC)
        cpu0, servers0 = tree_cpu(standalone.pid) + own_children_cpu(), servers.cpu()
        t0 = time.monotonic()
        with MemoryWatch(standalone.pid) as memory, RoleCpuWatch(standalone.pid) as roles:
            subprocess.run(
                [str(BIN / "airflow"), "dags", "trigger", "kpi_alerts", "--run-id", "bench-tick",
                 "--logical-date", LOGICAL_TIME.isoformat()],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
            state = wait_for(lambda: run_state(meta), 3600, "the run did not finish")
            wall = time.monotonic() - t0
        cpu1, servers1 = tree_cpu(standalone.pid) + own_children_cpu(), servers.cpu()
    finally:
        stop_tree(standalone.pid)
    cpu = {"airflow": cpu1 - cpu0, **{k: servers1[k] - servers0[k] for k in servers1}}
    statuses, latest = ledger(stack.alerts_db_url, started_wall)
    figures = Figures("scheduler", n, wall, cpu, statuses=statuses, latest_send=latest, state=state)
    figures.airflow_parts = roles.parts()
    figures.note = "tasks: " + task_timeline(meta, started_wall)
    figures.peak_single_mb, figures.peak_sum_mb = memory.peak_single / 2**20, memory.peak_sum / 2**20
    figures.messages, figures.duplicates, figures.missing = mail_counts(
        stack.mail_dir, n, silent_alerts(stack.alerts_db_url)
    )
    figures.timings, figures.anomaly_ratio = kind_times(stack.alerts_db_url)
    return figures


def run_dags_test(stack: Stack, servers: Servers, n: int, work: Path) -> Figures:
    home = work / "airflow-dags-test"
    home.mkdir()
    env = base_env(stack, home)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    started_wall = datetime.now(UTC)
    cpu0, servers0 = own_children_cpu(), servers.cpu()
    t0 = time.monotonic()
    log_path = work / "dags-test.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "airflow"), "dags", "test", "kpi_alerts", LOGICAL_TIME.isoformat()],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
        with MemoryWatch(process.pid, include_root=True) as memory:
            code = process.wait()
    wall = time.monotonic() - t0
    cpu1, servers1 = own_children_cpu(), servers.cpu()
    cpu = {"airflow": cpu1 - cpu0, **{k: servers1[k] - servers0[k] for k in servers1}}
    statuses, latest = ledger(stack.alerts_db_url, started_wall)
    figures = Figures("dags-test", n, wall, cpu, statuses=statuses, latest_send=latest,
                      state="success" if code == 0 else f"failed (exit {code}; see {log_path})")  # fmt: skip
    figures.peak_single_mb, figures.peak_sum_mb = memory.peak_single / 2**20, memory.peak_sum / 2**20
    figures.messages, figures.duplicates, figures.missing = mail_counts(
        stack.mail_dir, n, silent_alerts(stack.alerts_db_url)
    )
    figures.timings, figures.anomaly_ratio = kind_times(stack.alerts_db_url)
    return figures


def baseline_worker(number: int, processes: int, n: int, alerts_url: str, cube_url: str, secret: str,
                    smtp_port: int) -> None:  # fmt: skip
    """The floor: per alert one Cube request, one SMTP send on a reused session, one ledger write."""
    import smtplib
    from email.message import EmailMessage

    import jwt
    import requests

    session = requests.Session()
    smtp = smtplib.SMTP("127.0.0.1", smtp_port, timeout=30)
    with psycopg.connect(alerts_url, autocommit=True) as conn:
        for i in range(1 + number, n + 1, processes):
            q = query_number(i)
            body = {**cube_query(q), "timezone": "America/Los_Angeles", "renewQuery": True}
            token = jwt.encode(
                {
                    "organization_id": organization_of(q),
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 300,
                },
                secret,
                algorithm="HS256",
            )
            response = session.post(
                f"{cube_url}/cubejs-api/v1/load", json={"query": body}, headers={"Authorization": token},
                timeout=60,
            )  # fmt: skip
            response.raise_for_status()
            rows = len(response.json().get("data") or [])
            message = EmailMessage()
            message["From"] = "KPI Alerts <kpi-alerts@example.com>"
            message["To"] = recipient(i)
            message["Subject"] = f"Bench tick alert {i}"
            message.set_content(f"{rows} rows")
            smtp.send_message(message)
            conn.execute(
                "INSERT INTO bench_baseline_ledger (alert_id, slot, status, rows) VALUES (%s, %s, 'sent', %s)",
                (i, SLOT, rows),
            )
    smtp.quit()


def run_baseline(stack: Stack, servers: Servers, n: int, processes: int) -> Figures:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    cpu0, servers0 = own_children_cpu(), servers.cpu()
    t0 = time.monotonic()
    workers = [
        context.Process(
            target=baseline_worker,
            args=(k, processes, n, stack.alerts_db_url, stack.cube_url, stack.cube_secret, stack.smtp_port),
        )
        for k in range(processes)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.monotonic() - t0
    cpu1, servers1 = own_children_cpu(), servers.cpu()
    if any(w.exitcode for w in workers):
        raise RuntimeError("a baseline worker failed")
    cpu = {"script": cpu1 - cpu0, **{k: servers1[k] - servers0[k] for k in servers1}}
    figures = Figures(f"baseline x{processes}", n, wall, cpu)
    figures.messages, figures.duplicates, figures.missing = mail_counts(stack.mail_dir, n)
    return figures


def wait_for(probe: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(message)


def dag_parsed(url: str) -> bool:
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("SELECT 1 FROM serialized_dag WHERE dag_id = 'kpi_alerts'").fetchone() is not None
    return False


def run_state(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT state FROM dag_run WHERE run_id = 'bench-tick'").fetchone()
    return row[0] if row and row[0] in ("success", "failed") else None


def task_timeline(url: str, since: datetime) -> str:
    """When each task of the run started and how long it took, from the metadata database: the gaps
    between them are Airflow's scheduling; the batches' spread is the executor's."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT task_id, map_index, start_date, end_date FROM task_instance WHERE run_id = 'bench-tick' "
            "AND start_date IS NOT NULL AND end_date IS NOT NULL ORDER BY start_date"
        ).fetchall()
    parts = []
    for task_id in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == task_id]
        start = min(r[2] for r in mine) - since
        took = sorted((r[3] - r[2]).total_seconds() for r in mine)
        if len(mine) == 1:
            parts.append(f"{task_id} at {start.total_seconds():.1f} s for {took[0]:.1f} s")
        else:
            parts.append(
                f"{task_id} x{len(mine)} from {start.total_seconds():.1f} s, each {statistics.median(took):.1f} s "
                f"(min {took[0]:.1f}, max {took[-1]:.1f})"
            )
    return "; ".join(parts)


def stop_tree(pid: int) -> None:
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


def postmaster_pid(pg: PostgresServer) -> int:
    return int((pg.datadir / "postmaster.pid").read_text().split()[0])


def cube_pid() -> int:
    return int((STATE_DIR / f"cube-{CUBE_PORT}.pid").read_text())


def one_run(modes: list[str], n: int, parallelism: int, work: Path) -> list[tuple[Figures, Figures]]:
    from devstack.stack import up

    base = up(with_mail=False)
    work.mkdir(parents=True, exist_ok=True)
    mail_dir = work / "mail"
    mail, smtp_port = start_mail(mail_dir)
    try:
        results = []
        for mode in modes:
            processes = parallelism if mode == "scheduler" else 1
            url = fresh_alerts(base.pg, n)
            stack = Stack(base.pg, url, base.cube_url, base.cube_secret, smtp_port, mail_dir)
            servers = Servers(postmaster_pid(base.pg), cube_pid(), mail.pid)
            clear(mail_dir)
            baseline = run_baseline(stack, servers, n, processes)
            clear(mail_dir)
            mode_work = work / f"{mode}-{time.monotonic_ns()}"
            mode_work.mkdir()
            if mode == "scheduler":
                figures = run_scheduler(stack, servers, n, parallelism, mode_work)
            else:
                figures = run_dags_test(stack, servers, n, mode_work)
            print(figures.line(baseline), flush=True)
            print("    " + baseline.line(), flush=True)
            results.append((figures, baseline))
        return results
    finally:
        mail.terminate()
        mail.wait(10)


AREAS = (  # (label, a function whose cumulative time is that area's), for --mode profile
    ("PDF (reportlab)", "pdf_report.py", "render_pdf"),
    ("XLSX (openpyxl)", "excel_report.py", "render_excel"),
    ("CSV", "csv_report.py", "render_csv"),
    ("inline chart PNG", "chart.py", "kpi_chart_png"),
    ("MIME message", "email_message.py", "build_message"),
    ("Cube request", "client.py", "load"),
    ("Cube multi-query", "client.py", "load_many"),
    ("SMTP send", "mailers.py", "send_over_smtp"),
    ("claim (batch)", "claims.py", "claim_fresh_slots"),
    ("start sending", "outcomes.py", "start_sending"),
    ("finish", "outcomes.py", "finish_claim"),
    ("load (batch)", "alert_store.py", "load_alerts"),
)


def run_profile(n: int) -> None:
    """One batch of the mix in this process under cProfile, one thread: where the time of an alert goes."""
    import cProfile
    import pstats
    import smtplib

    from devstack.stack import up
    from kpi_alerts.cube.client import CubeClient
    from kpi_alerts.delivery.mailers import SessionMailer
    from kpi_alerts.ledger.claim_terms import Claimant
    from kpi_alerts.ledger.database import connect
    from kpi_alerts.pipeline.batch import run_batch
    from kpi_alerts.pipeline.inputs import RunSettings

    base = up(with_mail=True)
    url = fresh_alerts(base.pg, n)
    settings = RunSettings(logical_time=LOGICAL_TIME, claimant=Claimant(dag_run_id="bench-profile"))
    profile = cProfile.Profile()
    with CubeClient(base.cube_url, api_secret=base.cube_secret) as cube:
        t0, c0 = time.perf_counter(), time.process_time()
        profile.enable()
        result = run_batch(
            list(range(1, n + 1)),
            connect=lambda: connect(url),
            open_mailer=lambda: SessionMailer(lambda: smtplib.SMTP("127.0.0.1", base.smtp_port, timeout=30)),
            source=cube,
            settings=settings,
            threads=1,
        )
        profile.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    print(f"profile: {n} alerts in one process, one thread: {wall:.1f} s wall ({wall / n * 1000:.1f} ms/alert), "
          f"{cpu / n * 1000:.1f} ms CPU/alert; {result.cube_requests} Cube requests "
          f"({result.cube_shared} shared), {result.smtp_sessions} SMTP session(s), "
          f"{len(result.failures)} failure(s)")  # fmt: skip
    for label, filename, function in AREAS:
        hits = [(v[3], v[1]) for k, v in stats.items() if k[0].endswith(filename) and k[2] == function]
        if hits:
            seconds, calls = max(hits)
            print(
                f"    {label:<18} {seconds:6.1f} s  {calls:6d} calls  {seconds / max(calls, 1) * 1000:7.1f} ms each"
            )


def run_cpu(n: int, runs: int) -> None:
    """The mix's batch in this process, one thread, no profiler: the task CPU per alert (the figure a change
    on the per-alert path moves, without the scheduler's noise)."""
    import smtplib

    from devstack.stack import up
    from kpi_alerts.cube.client import CubeClient
    from kpi_alerts.delivery.mailers import SessionMailer
    from kpi_alerts.ledger.claims import Claimant
    from kpi_alerts.ledger.database import connect
    from kpi_alerts.pipeline.batch import run_batch
    from kpi_alerts.pipeline.inputs import RunSettings

    base = up(with_mail=True)
    figures = []
    for run in range(runs):
        url = fresh_alerts(base.pg, n)
        settings = RunSettings(logical_time=LOGICAL_TIME, claimant=Claimant(dag_run_id=f"bench-cpu-{run}"))
        with CubeClient(base.cube_url, api_secret=base.cube_secret) as cube:
            c0 = time.process_time()
            result = run_batch(
                list(range(1, n + 1)),
                connect=functools.partial(connect, url),
                open_mailer=lambda: SessionMailer(
                    lambda: smtplib.SMTP("127.0.0.1", base.smtp_port, timeout=30)
                ),
                source=cube,
                settings=settings,
                threads=1,
            )
            figures.append((time.process_time() - c0) / n * 1000)
        print(
            f"cpu run {run + 1}/{runs}: {figures[-1]:.2f} ms CPU per alert, {len(result.failures)} failure(s)"
        )
    print(
        f"cpu: median {statistics.median(figures):.2f} ms per alert (min {min(figures):.2f}, max {max(figures):.2f})"
    )


def clear(folder: Path) -> None:
    for path in folder.glob("*.eml"):
        path.unlink()


def main(argv: list[str]) -> int:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers it started are stopped
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1000, help="due alerts (default 1000)")
    parser.add_argument(
        "--mode", choices=("scheduler", "dags-test", "both", "profile", "cpu"), default="both"
    )
    parser.add_argument(
        "--parallelism", type=int, default=4, help="[core] parallelism (README: 4 on 2 cores)"
    )
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    modes = ["scheduler", "dags-test"] if args.mode == "both" else [args.mode]
    command = f"PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_tick {shlex.join(argv)}".rstrip()
    if args.mode == "profile":
        run_profile(args.n)
        print(f"reproduce: {command}")
        return 0
    if args.mode == "cpu":
        run_cpu(args.n, args.runs)
        print(f"reproduce: {command}")
        return 0
    print(f"{args.n} due alerts (80 % CSV/XLSX/PDF reports, 10 % thresholds, 10 % anomaly thresholds; "
          f"1 in 10 shares its query), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    all_results: list[list[tuple[Figures, Figures]]] = []
    with tempfile.TemporaryDirectory(prefix="kpi-bench-tick-") as tmp:
        for run in range(args.runs):
            print(f"--- run {run + 1}/{args.runs}", flush=True)
            all_results.append(one_run(modes, args.n, args.parallelism, Path(tmp) / f"run{run}"))
    for index, mode in enumerate(modes):
        walls = [r[index][0].wall for r in all_results]
        ratios = [r[index][0].wall / r[index][1].wall for r in all_results]
        ok = all(r[index][0].duplicates == 0 and r[index][0].missing == 0 for r in all_results)
        print(
            f"{mode}: wall median {statistics.median(walls):.1f} s (min {min(walls):.1f}, max {max(walls):.1f}, "
            f"{len(walls)} run(s)); ratio to baseline median {statistics.median(ratios):.1f}x; "
            f"{'every alert exactly one message' if ok else 'DUPLICATES OR MISSING MESSAGES'}"
        )
        anomaly = [ratio for r in all_results if (ratio := r[index][0].anomaly_ratio) is not None]
        if anomaly:
            print(
                f"{mode}: anomaly : plain threshold check, own time per alert, median of the runs "
                f"{statistics.median(anomaly):.2f}x (target at most 3x)"
            )
    print(f"reproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
