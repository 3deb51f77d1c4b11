"""Exactly once under a real race: many OS processes claim the same due alerts at the same instant."""

from __future__ import annotations

import multiprocessing
import random
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from kpi_alerts.ledger.alert_store import list_alerts
from kpi_alerts.ledger.claim_terms import Claim, Claimant, ClaimSettings
from kpi_alerts.ledger.claims import claim_slot
from kpi_alerts.ledger.database import connect
from kpi_alerts.ledger.outcomes import Outcome, finish_claim

pytestmark = pytest.mark.slow

T = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)
PROCESSES = 8
ALERTS = 1_000

# Mirrors create_alert (cron_jobs → kpi_alerts → kpi_schedules, same columns and job_name rule) in one
# statement: a daily 17:05 UTC report whose next slot is T.
BULK_CREATE = """
WITH ids AS (
    SELECT nextval(pg_get_serial_sequence('kpi_alerts', 'id')) AS alert_id FROM generate_series(1, %(n)s)
), jobs AS (
    INSERT INTO cron_jobs (job_name, locked, master_locked, next_run_at)
    SELECT 'kpi_alert_schedule_' || alert_id, false, false, %(slot)s FROM ids
    RETURNING id, job_name
), alerts AS (
    INSERT INTO kpi_alerts (id, cron_job_id, organization_id, alert_type, alert_name, recipients, cube_query)
    SELECT split_part(job_name, '_', 4)::bigint, id, 1 + split_part(job_name, '_', 4)::bigint %% 7, 'schedule',
           'Race report ' || id,
           ARRAY['race' || id || '@org.example.com'], '{"measures": ["orders.count"]}'::jsonb
    FROM jobs
    RETURNING id
)
INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_hour, schedule_minute, selected_days,
                           timezone, attachment_type)
SELECT id, 'day', 17, 5, '{}', 'UTC', 'csv' FROM alerts
"""


def claimant_process(number: int, db_url: str, start: Any, results: Any) -> None:  # runs in a spawned process
    try:
        with connect(db_url) as conn:
            alerts = list_alerts(conn)
            random.Random(number).shuffle(alerts)
            me = Claimant(dag_run_id=f"race-{number}", task_instance=f"p[{number}]", worker=f"racer-{number}")
            settings = ClaimSettings()
            won: list[tuple[int, str]] = []
            reasons: Counter[str] = Counter()
            start.wait(60)
            for alert in alerts:
                result = claim_slot(conn, alert, logical_time=T, now=T, claimant=me, settings=settings)
                if isinstance(result, Claim):
                    finish_claim(conn, alert, result, Outcome("sent", delivery="smtp"), now=T)
                    won.append((alert.alert_id, result.slot.isoformat()))
                else:
                    reasons[result.reason.split(" ")[0]] += 1
        results.put({"number": number, "won": won, "reasons": dict(reasons), "error": None})
    except BaseException:
        results.put({"number": number, "won": [], "reasons": {}, "error": traceback.format_exc()})


def test_every_slot_is_claimed_exactly_once_by_racing_processes(
    db: psycopg.Connection[Any], alerts_db_url: str
) -> None:
    db.execute(BULK_CREATE, {"n": ALERTS, "slot": T})
    alert_ids = {r["id"] for r in db.execute("SELECT id FROM kpi_alerts")}
    assert len(alert_ids) == ALERTS

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(PROCESSES), ctx.Queue()
    processes = [
        ctx.Process(target=claimant_process, args=(n, alerts_db_url, start, results))
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(10)

    assert [o["error"] for o in outcomes if o["error"]] == []
    won = [claim for o in outcomes for claim in o["won"]]
    assert len(won) == ALERTS
    assert {alert_id for alert_id, _ in won} == alert_ids  # each alert once: no alert twice, none lost
    assert {slot for _, slot in won} == {T.isoformat()}
    assert sum(1 for o in outcomes if o["won"]) >= 2, "no contention: one process did everything"
    refusals = Counter[str]()
    for o in outcomes:
        refusals.update(o["reasons"])
    assert sum(refusals.values()) == ALERTS * (PROCESSES - 1)

    rows = db.execute(
        "SELECT cron_job_id, slot, status, attempts, takeovers FROM cron_job_results"
    ).fetchall()
    assert len(rows) == ALERTS
    assert len({(r["cron_job_id"], r["slot"]) for r in rows}) == ALERTS
    assert {(r["status"], r["slot"], r["attempts"], r["takeovers"]) for r in rows} == {("sent", T, 1, 0)}
    jobs = db.execute(
        "SELECT count(*) FILTER (WHERE locked) AS locked, count(*) FILTER (WHERE next_run_at = %s) AS moved, "
        "count(*) FILTER (WHERE last_ran_at_date = '2026-12-07' AND last_ran_at_hour = 17) AS ran "
        "FROM cron_jobs",
        (T + timedelta(days=1),),
    ).fetchone()
    assert jobs == {"locked": 0, "moved": ALERTS, "ran": ALERTS}


# --- a worker killed with SIGKILL between claim and send ----------------------------------------

CLAIM_AND_HANG = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from kpi_alerts.ledger.alert_store import load_alert
from kpi_alerts.ledger.claim_terms import Claim, Claimant, ClaimSettings
from kpi_alerts.ledger.claims import claim_slot
from kpi_alerts.ledger.database import connect

db_url, alert_id, logical_time, lease = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
with connect(db_url) as conn:
    alert = load_alert(conn, alert_id)
    claimant = Claimant(dag_run_id="doomed-run")
    result = claim_slot(conn, alert, logical_time=datetime.fromisoformat(logical_time), now=datetime.now(UTC),
                        claimant=claimant, settings=ClaimSettings(lease=timedelta(seconds=lease)))
    assert isinstance(result, Claim), result
    print(json.dumps({"worker": claimant.worker, "result_id": result.result_id}), flush=True)
    time.sleep(600)  # "fetching from Cube": killed here
"""


@pytest.mark.services
def test_a_worker_killed_after_its_claim_is_taken_over_and_the_report_sent_once(
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    airflow_connections: dict[str, str],
    mailbox: Any,
) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    from kpi_alerts.hooks.cube import CubeHook
    from kpi_alerts.hooks.smtp import SmtpMailer
    from kpi_alerts.ledger.alert_store import create_alert
    from kpi_alerts.pipeline.alert_run import RunSettings, process_alert
    from tests.conftest import REPO_ROOT

    created = create_alert(
        db,
        {
            "organization_id": 1,
            "alert_name": "Weekly orders",
            "recipients": ["survivor@org1.example.com"],
            "cube_query": {
                "measures": ["orders.count"],
                "timeDimensions": [
                    {
                        "dimension": "orders.created_at",
                        "granularity": "day",
                        "dateRange": ["2026-11-01", "2026-11-07"],
                    }
                ],
            },
            "schedule": {
                "frequency_interval": "week",
                "selected_days": [1],
                "schedule_hour": 17,
                "schedule_minute": 5,
            },
        },
        now=T - timedelta(minutes=4),
    )
    lease = 2.0
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLAIM_AND_HANG,
            alerts_db_url,
            str(created.alert_id),
            T.isoformat(),
            str(lease),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)])},
    )
    try:
        assert child.stdout is not None
        hello = json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    dead_worker = hello["worker"]
    assert dead_worker.endswith(f":{child.pid}")

    def row() -> dict[str, Any]:
        found = db.execute(
            "SELECT * FROM cron_job_results WHERE cron_job_id = %s", (created.cron_job_id,)
        ).fetchall()
        assert len(found) == 1
        return found[0]

    assert row()["status"] == "claimed" and row()["claimed_by"] == dead_worker

    def run(**clock: Any) -> Any:
        settings = RunSettings(
            logical_time=T, claimant=Claimant(dag_run_id="rescue-run", worker="rescuer:1"), **clock
        )
        return process_alert(db, created.alert_id, source=CubeHook(), mailer=SmtpMailer(), settings=settings)

    # Within the dead worker's lease (a clock 0.5 s before it ends), the slot stays claimed.
    lease_end = row()["lease_expires_at"]
    early = run(clock=lambda: lease_end - timedelta(seconds=0.5))
    assert early.status == "skipped" and f"being processed by {dead_worker}" in early.detail
    assert mailbox.messages() == []

    # Once the dead worker's lease has run out (a clock just past its end: no sleep), the slot is taken over.
    rescued = run(clock=lambda: lease_end + timedelta(seconds=0.1))
    again = run()

    assert rescued.status == "sent", rescued
    assert again.status == "skipped" and "not due" in again.detail
    messages = mailbox.messages()
    assert [m["To"] for m in messages] == ["survivor@org1.example.com"]
    assert [a.get_filename() for a in messages[0].iter_attachments()] == ["weekly-orders-2026-12-07.csv"]
    final = row()
    assert (final["status"], final["delivery"], final["takeovers"], final["attempts"]) == (
        "sent",
        "smtp",
        1,
        2,
    )
    assert final["claimed_by"] == "rescuer:1" and final["id"] == hello["result_id"]
    assert f"taken over from {dead_worker} after its lease expired" in final["error"]
