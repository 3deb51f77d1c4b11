"""The production topology, run for real (``python -m devstack topology``): CeleryExecutor over Redis,
two schedulers, two Celery workers, the dag-processor, the triggerer and the API server, with the
Airflow metadata DB on PostgreSQL and the alerts DB on a PostgreSQL of its own — and the faults an
operator will meet: a worker SIGKILLed mid-batch, a scheduler stopped mid-run, the alerts database
restarted mid-tick, Redis restarted mid-tick.

The topology is brought up once for the module. Runs are triggered through the API server (as a
person or a client would), with the Variables set there; every test waits on conditions (ledger
rows, DAG run states in the metadata DB), never on sleeps. Which worker ran a mapped task instance
is its ``hostname`` in the metadata DB (``devstack.hostname``: ``worker-1`` / ``worker-2``), joined to
the ledger by (run id, task instance).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import requests

from devstack.mail import read_message
from devstack.statsd import counters
from devstack.topology import Topology
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import UNFINISHED
from kpi_alerts.ledger.database import connect

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(900)]

QUERY = {
    "measures": ["orders.count", "orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-07"]}
    ],
}
BATCH_THRESHOLD = 12  # more due alerts than this: batches (map items of several alerts), 12 of them


class Api:
    """The API server, as an admin (SimpleAuthManager's generated password, a JWT from /auth/token)."""

    def __init__(self, topology: Topology) -> None:
        self.base = topology.api_url
        passwords = topology.airflow_home / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["admin"]
        token = requests.post(
            f"{self.base}/auth/token", json={"username": "admin", "password": password}, timeout=30
        )
        token.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}/api/v2{path}", timeout=30, **kwargs)

    def set_variable(self, key: str, value: str) -> None:
        response = self.call("PATCH", f"/variables/{key}", json={"key": key, "value": value})
        if response.status_code == 404:
            response = self.call("POST", "/variables", json={"key": key, "value": value})
        response.raise_for_status()

    def trigger(self) -> str:
        response = self.call("POST", "/dags/kpi_alerts/dagRuns", json={"logical_date": None})
        response.raise_for_status()
        return str(response.json()["dag_run_id"])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    topo = Topology()
    started = time.monotonic()
    topo.up()
    print(f"topology up in {time.monotonic() - started:.0f}s")
    yield topo
    if not os.environ.get("KPI_TOPOLOGY_KEEP"):
        topo.down()


@pytest.fixture(scope="module")
def api(topology: Topology) -> Api:
    client = Api(topology)
    client.set_variable("kpi_alerts_batch_threshold", str(BATCH_THRESHOLD))
    client.set_variable("kpi_alerts_lease_minutes", "1")
    wait_for(
        lambda: client.call("PATCH", "/dags/kpi_alerts", json={"is_paused": False}).ok,
        180,
        "the dag-processor to parse dags/kpi_alerts_dag.py",
        interval=2,
    )
    return client


@pytest.fixture
def alerts_db(topology: Topology) -> Iterator[psycopg.Connection[Any]]:
    with connect(topology.alerts_db_url) as conn:
        conn.execute(
            "TRUNCATE cron_jobs, kpi_alerts, kpi_schedules, kpi_thresholds, cron_job_results CASCADE"
        )
        for path in topology.mail_dir.glob("*.eml"):
            path.unlink()
        yield conn


def create_due_alerts(conn: psycopg.Connection[Any], count: int, *, reports: int) -> dict[int, str]:
    """``reports`` scheduled reports due a minute ago and ``count - reports`` threshold alerts due now
    (orders.count > 1: they fire); one recipient each. Returns recipient by alert id."""
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=1)).replace(second=0, microsecond=0)
    recipients = {}
    for n in range(count):
        org = 1 + n % 2
        address = f"topology{n:03d}@org{org}.example.com"
        spec: dict[str, Any] = {
            "organization_id": org,
            "alert_name": f"Topology {n:03d}",
            "recipients": [address],
            "cube_query": QUERY,
        }
        if n < reports:
            spec["schedule"] = {
                "frequency_interval": "day",
                "schedule_hour": slot.hour,
                "schedule_minute": slot.minute,
                "timezone": "UTC",
                "attachment_type": "csv",
            }
            created = create_alert(conn, spec, now=slot - timedelta(minutes=1))
        else:
            spec["cube_query"] = {"measures": ["orders.count"]}
            spec["threshold"] = {"condition": "GREATER_THAN", "threshold_value": "1"}
            created = create_alert(conn, spec, now=now)
        recipients[created.alert_id] = address
    return recipients


def ledger(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT kpi_alert_id, slot, status, error, takeovers, attempts, attempt_history, dag_run_id, "
        "task_instance, try_number, claimed_by FROM cron_job_results ORDER BY kpi_alert_id"
    ).fetchall()


def received(topology: Topology) -> Counter[str]:
    messages = [read_message(p) for p in sorted(topology.mail_dir.glob("*.eml"))]
    return Counter(address for m in messages for address in str(m["To"]).split(", "))


def run_states(topology: Topology, run_id: str) -> str | None:
    with psycopg.connect(topology.metadata_url()) as conn:
        row = conn.execute(
            "SELECT state FROM dag_run WHERE dag_id = 'kpi_alerts' AND run_id = %s", (run_id,)
        ).fetchone()
    return row[0] if row else None


def all_runs_finished(topology: Topology) -> bool:
    with psycopg.connect(topology.metadata_url()) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dag_run WHERE dag_id = 'kpi_alerts' AND state IN ('queued', 'running')"
        ).fetchone()
    return row is not None and row[0] == 0


def wait_until_done(
    topology: Topology, conn: psycopg.Connection[Any], expected: int, timeout: float
) -> list[dict[str, Any]]:
    """Every due alert has a terminal ledger row and no run of the DAG is still queued or running."""

    def done() -> list[dict[str, Any]] | None:
        rows = ledger(conn)
        finished = [r for r in rows if r["status"] not in UNFINISHED]
        return rows if len(finished) >= expected and all_runs_finished(topology) else None

    rows: list[dict[str, Any]] = wait_for(done, timeout, f"{expected} terminal ledger rows", interval=1)
    return first_slots(rows)


def first_slots(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each alert's row for its first slot: the tick under test. The topology's scheduler runs the DAG
    every five minutes too, so when a test crosses the hour the hourly threshold alerts are evaluated
    again for the next slot (suppressed by the re-arm interval, no message) — not part of the tick."""
    first: dict[int, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["slot"]):
        first.setdefault(row["kpi_alert_id"], row)
    return sorted(first.values(), key=lambda r: r["kpi_alert_id"])


def hostnames(topology: Topology) -> dict[tuple[str, str], str]:
    """(run id, "process_alert[i]") -> the hostname of the worker that ran its latest try."""
    return {
        (ti["run_id"], f"{ti['task_id']}[{ti['map_index']}]"): ti["hostname"]
        for ti in topology.task_instances()
        if ti["task_id"] == "process_alert"
    }


def slots_by_worker(topology: Topology, rows: list[dict[str, Any]]) -> Counter[str]:
    hosts = hostnames(topology)
    return Counter(hosts.get((r["dag_run_id"], r["task_instance"]), "?") for r in rows)


def test_300_due_alerts_each_sent_exactly_once_spread_over_both_workers(
    topology: Topology, api: Api, alerts_db: psycopg.Connection[Any]
) -> None:
    recipients = create_due_alerts(alerts_db, 300, reports=200)
    before = counters(topology.metrics_file)
    cpu_before = topology.cpu_seconds()
    started = time.monotonic()
    run_id = api.trigger()

    rows = wait_until_done(topology, alerts_db, 300, timeout=420)
    elapsed = time.monotonic() - started
    cpu = {k: v - cpu_before[k] for k, v in topology.cpu_seconds().items()}
    print("CPU seconds per alert: " + ", ".join(f"{k} {v / 300:.3f}" for k, v in cpu.items()))

    assert received(topology) == Counter(recipients.values())  # every recipient exactly one message
    assert len(rows) == 300 and len({(r["kpi_alert_id"], r["slot"]) for r in rows}) == 300
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["takeovers"] for r in rows} == {0}
    per_worker = slots_by_worker(topology, rows)
    print(f"300 alerts in {elapsed:.0f}s; slots per worker: {dict(per_worker)}; run {run_id}")
    assert set(per_worker) == {"worker-1", "worker-2"}  # both workers ran map items
    runs = {r["dag_run_id"] for r in rows}  # the triggered run (a scheduled run may have taken some)
    mapped = [
        ti for ti in topology.task_instances() if ti["task_id"] == "process_alert" and ti["run_id"] in runs
    ]
    assert {ti["hostname"] for ti in mapped} == {"worker-1", "worker-2"}
    assert {ti["state"] for ti in mapped} == {"success"}
    print(f"map items per worker: {dict(Counter(ti['hostname'] for ti in mapped))}; runs {sorted(runs)}")
    # The package's counters, through Airflow's StatsD client, at the topology's receiver.
    after = wait_for(
        lambda: (
            (c := counters(topology.metrics_file))["airflow.kpi_alerts.sent"]
            - before["airflow.kpi_alerts.sent"]
            >= 300
            and c
        ),
        30,
        "the kpi_alerts.sent counter",
    )
    assert after["airflow.kpi_alerts.sent"] - before["airflow.kpi_alerts.sent"] == 300
    assert after["airflow.kpi_alerts.late_seconds"] > before["airflow.kpi_alerts.late_seconds"]


def test_a_worker_sigkilled_mid_batch_its_slot_is_finished_by_another_claimant(
    topology: Topology, api: Api, alerts_db: psycopg.Connection[Any]
) -> None:
    recipients = create_due_alerts(alerts_db, 120, reports=120)
    api.trigger()

    def worker_mid_batch() -> tuple[str, list[dict[str, Any]]] | None:
        rows = ledger(alerts_db)
        hosts = hostnames(topology)
        for row in rows:
            if row["status"] in ("claimed", "sending"):
                host = hosts.get((row["dag_run_id"], row["task_instance"]))
                done_in_batch = [
                    r for r in rows if r["task_instance"] == row["task_instance"] and r["status"] == "sent"
                ]
                if host in ("worker-1", "worker-2") and done_in_batch:
                    return host, rows
        return None

    victim, _ = wait_for(worker_mid_batch, 300, "a worker in the middle of a batch", interval=0.2)
    killed = topology.kill(victim)
    held = {
        r["kpi_alert_id"]: r["status"]
        for r in ledger(alerts_db)
        if r["status"] in ("claimed", "sending")
        and hostnames(topology).get((r["dag_run_id"], r["task_instance"])) == victim
    }
    print(f"SIGKILLed {victim} ({len(killed)} processes); slots it held: {held}")
    try:
        rows = wait_until_done(topology, alerts_db, 120, timeout=480)
    finally:
        topology.start(victim)
    by_alert = {r["kpi_alert_id"]: r for r in rows}
    got = received(topology)
    for alert_id, status in held.items():
        row = by_alert[alert_id]
        print(
            f"held slot {alert_id}: {status} at kill -> {row['status']}, takeovers {row['takeovers']}, "
            f"error {row['error']!r}, messages {got[recipients[alert_id]]}, history {row['attempt_history']}"
        )
        if status == "claimed":  # nothing went out: another claimant finished it
            assert row["status"] == "sent" and row["takeovers"] == 1
            assert got[recipients[alert_id]] == 1
        else:  # mid-SMTP: recorded honestly, never resent
            assert row["status"] in ("sent", "delivery_unknown")
            assert got[recipients[alert_id]] <= 1
    assert all(n == 1 for n in got.values())  # no duplicate
    others = [r for r in rows if r["kpi_alert_id"] not in held]
    assert {r["status"] for r in others} == {"sent"}
    assert sum(got.values()) == len(recipients) - sum(
        1 for a in held if by_alert[a]["status"] == "delivery_unknown" and not got[recipients[a]]
    )
    topology.wait_healthy(names={victim})


def test_a_scheduler_stopped_mid_run_the_other_carries_on_without_double_runs(
    topology: Topology, api: Api, alerts_db: psycopg.Connection[Any]
) -> None:
    recipients = create_due_alerts(alerts_db, 120, reports=100)
    run_id = api.trigger()
    wait_for(lambda: len(ledger(alerts_db)) >= 10, 300, "the run to be under way", interval=0.3)
    topology.stop("scheduler-1")
    try:
        rows = wait_until_done(topology, alerts_db, 120, timeout=480)
    finally:
        topology.start("scheduler-1")
    assert received(topology) == Counter(recipients.values())
    assert {r["status"] for r in rows} == {"sent"}
    # The runs that sent them: the triggered one, and the scheduled tick when the test crosses a 5-minute
    # boundary (that run then takes the alerts first and the triggered one finds nothing due).
    senders = sorted({r["dag_run_id"] for r in rows} | {run_id})
    with psycopg.connect(topology.metadata_url()) as conn:
        runs = conn.execute(
            "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = 'kpi_alerts' AND run_id = ANY(%s)",
            (senders,),
        ).fetchall()
        tries = conn.execute(
            "SELECT map_index, try_number, state FROM task_instance WHERE dag_id = 'kpi_alerts' "
            "AND run_id = ANY(%s) AND task_id = 'process_alert' AND map_index >= 0",
            (senders,),
        ).fetchall()
    assert len(runs) == len(senders) and {r[2] for r in runs} == {"success"}, runs
    # no try failed; a batch whose alerts all went with the other run is skipped, never sent twice
    assert "success" in {t[2] for t in tries} and {t[2] for t in tries} <= {"success", "skipped"}, tries
    print(f"after stopping scheduler-1: runs {runs}, process_alert tries {Counter(t[1] for t in tries)}")
    topology.wait_healthy(names={"scheduler-1"})


def test_the_alerts_database_restarted_mid_tick_alerts_retry_and_finish(
    topology: Topology, api: Api, alerts_db: psycopg.Connection[Any]
) -> None:
    recipients = create_due_alerts(alerts_db, 120, reports=100)
    api.trigger()
    wait_for(lambda: 10 <= len(ledger(alerts_db)) < 100, 300, "the run to be under way", interval=0.2)
    alerts_db.close()
    topology.stop_alerts_db()
    topology.start_alerts_db()
    with connect(topology.alerts_db_url) as conn:
        rows = wait_until_done(topology, conn, 120, timeout=480)
    assert received(topology) == Counter(recipients.values())  # nothing lost, nothing twice
    statuses = Counter(r["status"] for r in rows)
    # A slot whose message went out while its "sent" could not be written (the DB was down) is recorded
    # as delivery_unknown by the next try, never resent: at most once beats a duplicate.
    assert set(statuses) <= {"sent", "delivery_unknown"}
    unknown = [r for r in rows if r["status"] == "delivery_unknown"]
    assert all("stopped during SMTP delivery" in r["error"] for r in unknown)
    retried = [r for r in rows if r["attempt_history"] or r["attempts"] > 1]
    print(
        f"after the alerts DB restart: {dict(statuses)}; delivery_unknown: "
        f"{[(r['kpi_alert_id'], r['error']) for r in unknown]}; {len(retried)} slot(s) retried: "
        f"{[(r['kpi_alert_id'], r['attempts'], r['attempt_history']) for r in retried][:3]}"
    )


def test_redis_restarted_mid_tick_tasks_are_redelivered_and_claims_stay_exactly_once(
    topology: Topology, api: Api, alerts_db: psycopg.Connection[Any]
) -> None:
    recipients = create_due_alerts(alerts_db, 120, reports=100)
    run_id = api.trigger()
    wait_for(lambda: 1 <= len(ledger(alerts_db)) < 60, 300, "the run to be under way", interval=0.2)
    logs = {n: topology.log(n).stat().st_size for n in ("worker-1", "worker-2", "scheduler-1", "scheduler-2")}
    topology.stop_redis()
    assert not topology.redis_ping()
    topology.start_redis()
    rows = wait_until_done(topology, alerts_db, 120, timeout=480)
    assert received(topology) == Counter(recipients.values())
    assert {r["status"] for r in rows} == {"sent"}
    assert len({(r["kpi_alert_id"], r["slot"]) for r in rows}) == 120
    tries = Counter(
        (ti["state"], ti["try_number"])
        for ti in topology.task_instances()
        if ti["run_id"] == run_id and ti["task_id"] == "process_alert"
    )
    seen = {}
    for name, offset in logs.items():
        with topology.log(name).open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        seen[name] = sorted(
            {line.split("]", 1)[-1].strip()[:90] for line in text.splitlines() if "redis" in line.lower()}
        )[:3]
    print(f"after the Redis restart: process_alert (state, try) {dict(tries)}; log lines: {seen}")
    topology.wait_healthy()
