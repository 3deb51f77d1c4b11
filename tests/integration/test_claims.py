"""Claims against a real PostgreSQL: every way a claim on an (alert, slot) can start, resume and end.

Times are explicit (``now`` / ``logical_time``), so leases and misfire windows are exercised without
sleeping. The last test runs the real DAG (``dag.test()``) over an alert whose stored definition is
invalid in a way the SQL CHECKs cannot refuse.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from kpi_alerts.ledger.claim_terms import Claim, Claimant, ClaimSettings, LostClaim, NotClaimed
from kpi_alerts.ledger.claims import claim_fresh_slots, claim_slot
from kpi_alerts.ledger.database import connect
from kpi_alerts.ledger.outcomes import (
    Outcome,
    ThresholdStateUpdate,
    finish_claim,
    release_for_retry,
    start_sending,
)
from tests.polling import wait_until

T = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)  # the DAG run's logical time in most tests
A = Claimant(dag_run_id="run-a", task_instance="process_alert[0]", try_number=1, worker="worker-a:101")
B = Claimant(dag_run_id="run-b", task_instance="process_alert[3]", try_number=1, worker="worker-b:202")
SETTINGS = ClaimSettings(lease=timedelta(minutes=30), misfire_window=timedelta(hours=1))
QUERY = {"measures": ["orders.count"]}


def schedule_spec(
    name: str = "Daily revenue", *, frequency: str = "day", hour: int = 17, minute: int = 5, **extra: Any
) -> dict[str, Any]:
    return {
        "organization_id": 1,
        "alert_name": name,
        "recipients": ["cfo@org1.example.com"],
        "cube_query": QUERY,
        "schedule": {
            "frequency_interval": frequency,
            "schedule_hour": hour,
            "schedule_minute": minute,
            "timezone": "UTC",
            **extra,
        },
    }


def new_alert(db: psycopg.Connection[Any], spec: dict[str, Any] | None = None, *, now: datetime = T) -> Any:
    created = create_alert(db, spec or schedule_spec(), now=now - timedelta(minutes=4))
    alert = load_alert(db, created.alert_id)
    assert alert is not None
    return alert


def reload(db: psycopg.Connection[Any], alert: AlertDefinition) -> AlertDefinition:
    fresh = load_alert(db, alert.alert_id)
    assert fresh is not None
    return fresh


def claim(
    db: psycopg.Connection[Any],
    alert: AlertDefinition,
    *,
    at: datetime = T,
    now: datetime | None = None,
    who: Claimant = A,
    settings: ClaimSettings = SETTINGS,
) -> Claim | NotClaimed:
    return claim_slot(db, alert, logical_time=at, now=now or at, claimant=who, settings=settings)


def claimed(result: Claim | NotClaimed) -> Claim:
    assert isinstance(result, Claim), result
    return result


def refused(result: Claim | NotClaimed) -> str:
    assert isinstance(result, NotClaimed), result
    return result.reason


def lock_waiters(db: psycopg.Connection[Any]) -> int:
    """How many backends of this database wait for a lock (read outside any transaction: fresh)."""
    row = db.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ).fetchone()
    return int(row["n"])


def ledger(db: psycopg.Connection[Any], alert: AlertDefinition) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT * FROM cron_job_results WHERE cron_job_id = %s ORDER BY slot, id", (alert.cron_job_id,)
    ).fetchall()


def cron_job(db: psycopg.Connection[Any], alert: AlertDefinition) -> dict[str, Any]:
    row = db.execute("SELECT * FROM cron_jobs WHERE id = %s", (alert.cron_job_id,)).fetchone()
    assert row is not None
    return row


def test_fresh_claim_locks_the_row_sets_last_ran_at_and_inserts_the_ledger_row(
    db: psycopg.Connection[Any],
) -> None:
    alert = new_alert(db)
    assert alert.next_run_at == T

    c = claimed(claim(db, alert))

    assert (c.slot, c.attempts, c.took_over, c.cron_job_id) == (T, 1, False, alert.cron_job_id)
    job = cron_job(db, alert)
    assert job["locked"] is True and job["next_run_at"] == T
    assert (job["last_ran_at_date"], job["last_ran_at_hour"], job["last_ran_at_minute"]) == (
        date(2026, 12, 7),
        17,
        5,
    )
    (row,) = ledger(db, alert)
    assert row["id"] == c.result_id and row["status"] == "claimed" and row["slot"] == T
    assert row["claim_token"] == c.token and row["claimed_by"] == "worker-a:101"
    assert row["lease_expires_at"] == T + SETTINGS.lease
    assert (row["dag_run_id"], row["task_instance"], row["try_number"]) == ("run-a", "process_alert[0]", 1)
    assert (row["attempts"], row["takeovers"], row["kpi_alert_id"]) == (1, 0, alert.alert_id)

    start_sending(db, c, now=T + timedelta(seconds=5), settings=SETTINGS)
    finish_claim(db, alert, c, Outcome("sent", delivery="smtp"), now=T + timedelta(seconds=6))

    (row,) = ledger(db, alert)
    assert row["status"] == "sent" and row["delivery"] == "smtp" and row["lease_expires_at"] is None
    assert row["finished_at"] == T + timedelta(seconds=6) and row["error"] is None
    job = cron_job(db, alert)
    assert job["locked"] is False and job["next_run_at"] == T + timedelta(days=1)


def test_second_claim_of_the_same_slot_is_refused_while_the_first_works(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db)
    first = claimed(claim(db, alert))

    reason = refused(claim(db, alert, now=T + timedelta(minutes=29), who=B))

    assert "worker-a:101" in reason and "being processed" in reason
    (row,) = ledger(db, alert)
    assert row["claim_token"] == first.token and row["attempts"] == 1


def test_finished_slot_is_never_claimed_again_even_if_next_run_at_is_wound_back(
    db: psycopg.Connection[Any],
) -> None:
    alert = new_alert(db)
    c = claimed(claim(db, alert))
    finish_claim(db, alert, c, Outcome("sent"), now=T)
    assert "not due" in refused(claim(db, alert, who=B))

    db.execute("UPDATE cron_jobs SET next_run_at = %s WHERE id = %s", (T, alert.cron_job_id))  # an operator
    assert "already finished (sent)" in refused(claim(db, alert, who=B))

    assert [r["status"] for r in ledger(db, alert)] == ["sent"]
    assert cron_job(db, alert)["next_run_at"] == T + timedelta(days=1)  # moved on again


def test_not_due_and_paused_alerts_are_not_claimed(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db)

    assert "not due until 2026-12-07T17:05:00+00:00" in refused(claim(db, alert, at=T - timedelta(seconds=1)))
    assert ledger(db, alert) == []
    db.execute("UPDATE cron_jobs SET master_locked = true WHERE id = %s", (alert.cron_job_id,))
    # Paused after the run listed it as due (issue 23, `pause --all` mid-tick): the slot is recorded
    # skipped at once, and the alert moves to its next slot, as the run's listing does for paused alerts.
    assert "master_locked" in refused(claim(db, alert))
    assert [(r["slot"], r["status"], r["error"]) for r in ledger(db, alert)] == [
        (T, "skipped", "paused by an operator")
    ]
    job = cron_job(db, alert)
    assert job["locked"] is False and job["last_ran_at_date"] is None and job["next_run_at"] > T
    assert "master_locked" in refused(claim(db, alert))  # claimed again: nothing more is recorded
    assert len(ledger(db, alert)) == 1


def test_a_row_locked_by_another_claimant_is_skipped_without_waiting(
    db: psycopg.Connection[Any], alerts_db_url: str
) -> None:
    alert = new_alert(db)
    with connect(alerts_db_url) as other, other.transaction():
        other.execute(queries.LOCK_CRON_JOB, {"cron_job_id": alert.cron_job_id})
        started = time.perf_counter()
        reason = refused(claim(db, alert))
        assert time.perf_counter() - started < 0.5
    assert "another claimant" in reason
    assert ledger(db, alert) == []
    claimed(claim(db, alert))  # once the other transaction ends, the slot is there to take


def test_retry_after_release_resumes_the_same_row(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db)
    first = claimed(claim(db, alert))
    release_for_retry(db, first, now=T + timedelta(seconds=10), error="Cube.js answered 503")

    (row,) = ledger(db, alert)
    assert row["status"] == "retrying" and row["lease_expires_at"] is None
    assert row["error"] == "Cube.js answered 503"
    assert cron_job(db, alert)["locked"] is False and cron_job(db, alert)["next_run_at"] == T

    retry = Claimant(
        dag_run_id="run-a", task_instance="process_alert[0]", try_number=2, worker="worker-c:303"
    )
    second = claimed(claim(db, alert, now=T + timedelta(minutes=1), who=retry))

    assert second.result_id == first.result_id and second.slot == first.slot
    assert second.attempts == 2 and second.took_over is False and second.token != first.token
    (row,) = ledger(db, alert)
    assert (row["status"], row["attempts"], row["takeovers"], row["try_number"]) == ("claimed", 2, 0, 2)
    assert row["claimed_by"] == "worker-c:303" and cron_job(db, alert)["locked"] is True

    with pytest.raises(LostClaim):  # the first try's token is no longer valid
        finish_claim(db, alert, first, Outcome("sent"), now=T + timedelta(minutes=2))
    finish_claim(db, alert, second, Outcome("sent"), now=T + timedelta(minutes=2))
    assert [(r["status"], r["attempts"]) for r in ledger(db, alert)] == [("sent", 2)]


def test_expired_lease_is_taken_over_and_the_stale_worker_is_fenced_off(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db)
    stale = claimed(claim(db, alert, settings=ClaimSettings(lease=timedelta(seconds=30))))

    later = T + timedelta(seconds=31)
    fresh = claimed(claim(db, alert, now=later, who=B))

    assert fresh.took_over is True and fresh.result_id == stale.result_id and fresh.attempts == 2
    (row,) = ledger(db, alert)
    assert row["takeovers"] == 1 and row["claimed_by"] == "worker-b:202" and row["status"] == "claimed"
    assert row["lease_expires_at"] == later + SETTINGS.lease
    assert "taken over from worker-a:101 after its lease expired" in row["error"]
    before_row, before_job = dict(row), cron_job(db, alert)

    # The stale worker wakes up: it may neither send nor record anything.
    with pytest.raises(LostClaim):
        start_sending(db, stale, now=later, settings=SETTINGS)
    with pytest.raises(LostClaim):
        finish_claim(db, alert, stale, Outcome("sent", delivery="smtp"), now=later)
    release_for_retry(db, stale, now=later, error="late transient error")  # a no-op, not an unlock
    assert ledger(db, alert) == [before_row]
    assert cron_job(db, alert) == before_job

    start_sending(db, fresh, now=later, settings=SETTINGS)
    finish_claim(db, alert, fresh, Outcome("sent", delivery="smtp"), now=later + timedelta(seconds=1))
    (row,) = ledger(db, alert)
    assert row["status"] == "sent" and row["takeovers"] == 1
    assert "taken over from worker-a:101" in row["error"]  # the history survives the happy ending


def test_sending_left_by_a_dead_worker_is_recorded_delivery_unknown_and_not_resent(
    db: psycopg.Connection[Any],
) -> None:
    alert = new_alert(db)
    dead = claimed(claim(db, alert))
    start_sending(db, dead, now=T + timedelta(seconds=1), settings=SETTINGS)
    (row,) = ledger(db, alert)
    assert row["status"] == "sending" and row["lease_expires_at"] == T + timedelta(seconds=1) + SETTINGS.lease

    # Within the lease: still somebody's delivery.
    assert "being processed by worker-a:101" in refused(
        claim(db, alert, now=T + timedelta(minutes=10), who=B)
    )
    # After the lease: the message may have gone out, so the slot is closed as delivery_unknown, never resent.
    reason = refused(claim(db, alert, now=T + timedelta(minutes=40), who=B))

    assert "interrupted" in reason
    (row,) = ledger(db, alert)
    assert row["status"] == "delivery_unknown" and row["attempts"] == 1 and row["takeovers"] == 0
    assert (
        "worker worker-a:101 (try 1) stopped during SMTP delivery" in row["error"]
        and "not resent" in row["error"]
    )
    job = cron_job(db, alert)
    assert job["locked"] is False and job["next_run_at"] == T + timedelta(days=1)
    assert "not due" in refused(claim(db, alert, now=T + timedelta(minutes=41), who=B))


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batch-statement"])
def test_a_cron_schedule_with_four_slots_an_hour_stamps_the_hour_once(
    db: psycopg.Connection[Any], batched: bool
) -> None:
    every_15 = schedule_spec(frequency="cron", hour=0, minute=0, cron_expression="*/15 * * * *")
    alert = new_alert(db, every_15, now=datetime(2026, 12, 7, 16, 59, tzinfo=UTC))
    stamps = []
    for quarter in range(5):  # 17:00, 17:15, 17:30, 17:45, then 18:00
        at = datetime(2026, 12, 7, 17, tzinfo=UTC) + timedelta(minutes=15 * quarter)
        alert = reload(db, alert)
        if batched:
            got = claim_fresh_slots(db, [alert], logical_time=at, now=at, claimant=A, settings=SETTINGS)
            c = got[alert.alert_id]
        else:
            c = claimed(claim(db, alert, at=at))
        assert c.slot == at
        finish_claim(db, alert, c, Outcome("sent"), now=at, next_run_at=at + timedelta(minutes=15))
        job = cron_job(db, alert)
        stamps.append((job["last_ran_at_hour"], job["last_ran_at_minute"]))
    assert [row["status"] for row in ledger(db, alert)] == ["sent"] * 5
    assert stamps == [(17, 0)] * 4 + [(18, 0)]  # one stamp per UTC hour: the trigger never refused


def test_prevent_multiple_updates_trigger_is_the_second_guard(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db)
    # Someone (e.g. the seed's old node-cron worker) already ran this alert in this UTC hour.
    db.execute(
        "UPDATE cron_jobs SET last_ran_at_date = '2026-12-07', last_ran_at_hour = 17, last_ran_at_minute = 0 "
        "WHERE id = %s",
        (alert.cron_job_id,),
    )

    reason = refused(claim(db, alert))

    assert "already executed in this hour" in reason
    (row,) = ledger(db, alert)
    assert row["status"] == "skipped" and row["slot"] == T and row["finished_at"] == T
    assert "prevent_multiple_updates()" in row["error"]
    job = cron_job(db, alert)
    assert job["locked"] is False and job["next_run_at"] == T + timedelta(days=1)
    assert (job["last_ran_at_hour"], job["last_ran_at_minute"]) == (17, 0)  # the trigger kept them

    # It guards the run-time columns only: locked / next_run_at can be updated as often as needed.
    for _ in range(2):
        db.execute("UPDATE cron_jobs SET locked = NOT locked WHERE id = %s", (alert.cron_job_id,))
    with pytest.raises(psycopg.errors.RaiseException, match="already been executed in the current hour"):
        db.execute("UPDATE cron_jobs SET last_ran_at_hour = 17 WHERE id = %s", (alert.cron_job_id,))


def test_slots_older_than_the_misfire_window_are_recorded_missed_once(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db, schedule_spec(hour=9, minute=0))
    stale = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # the scheduler was down for four days
    db.execute("UPDATE cron_jobs SET next_run_at = %s WHERE id = %s", (stale, alert.cron_job_id))
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # 09:00 today is 3 h late: outside the 1 h window

    reason = refused(claim(db, reload(db, alert), at=at))

    assert "missed 5 slot(s) from 2026-12-03T09:00:00+00:00 to 2026-12-07T09:00:00+00:00" in reason
    (row,) = ledger(db, alert)
    assert row["status"] == "missed" and row["slot"] == stale and row["finished_at"] == at
    assert row["details"] == {"missed_slots": 5, "last_missed": "2026-12-07T09:00:00+00:00"}
    job = cron_job(db, alert)
    assert job["next_run_at"] == datetime(2026, 12, 8, 9, 0, tzinfo=UTC) and job["locked"] is False
    assert job["last_ran_at_date"] is None  # nothing ran

    assert "not due" in refused(claim(db, reload(db, alert), at=at + timedelta(minutes=5)))
    assert len(ledger(db, alert)) == 1


@pytest.mark.parametrize(("left_in", "closed_as"), [("claimed", "missed"), ("sending", "delivery_unknown")])
def test_a_claim_abandoned_past_the_misfire_window_is_closed_not_left_active(
    db: psycopg.Connection[Any], left_in: str, closed_as: str
) -> None:
    """The host died mid-claim, scheduler and worker together, and came back three hours later."""
    alert = new_alert(db)
    dead = claimed(claim(db, alert))
    if left_in == "sending":
        start_sending(db, dead, now=T, settings=SETTINGS)

    reason = refused(claim(db, reload(db, alert), at=T + timedelta(hours=3), who=B))

    assert "missed 1 slot(s) from 2026-12-07T17:05:00+00:00" in reason
    (row,) = ledger(db, alert)
    assert row["status"] == closed_as and row["claim_token"] is None and row["lease_expires_at"] is None
    assert f"abandoned by worker-a:101 ({left_in})" in row["error"] and "missed 1 slot(s)" in row["error"]
    assert cron_job(db, alert)["next_run_at"] == T + timedelta(days=1)
    with pytest.raises(LostClaim):  # were the old worker only hung, it is fenced off: it never sends
        start_sending(db, dead, now=T + timedelta(hours=3), settings=SETTINGS)
    with pytest.raises(LostClaim):
        finish_claim(db, alert, dead, Outcome("sent"), now=T + timedelta(hours=3))
    assert ledger(db, alert) == [row]


def test_misfire_skips_to_the_slot_still_inside_the_window(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db, schedule_spec(frequency="hour", minute=0))
    db.execute(
        "UPDATE cron_jobs SET next_run_at = %s WHERE id = %s",
        (datetime(2026, 12, 7, 12, 0, tzinfo=UTC), alert.cron_job_id),
    )

    c = claimed(claim(db, reload(db, alert)))  # T = 17:05: 12:00 … 16:00 are older than 16:05

    assert c.slot == datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
    missed, run = ledger(db, alert)
    assert missed["status"] == "missed" and missed["details"]["missed_slots"] == 5
    assert run["status"] == "claimed" and run["slot"] == c.slot


def test_a_late_slot_inside_the_window_still_runs_for_its_own_slot(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db)
    late = T + timedelta(minutes=55)  # e.g. the scheduler caught up 55 minutes late

    c = claimed(claim(db, alert, at=late))

    assert c.slot == T
    (row,) = ledger(db, alert)
    assert row["status"] == "claimed" and row["slot"] == T


BACKFILL = ClaimSettings(lease=timedelta(minutes=30), misfire_window=timedelta(hours=1), backfill=True)


def test_a_backfill_run_measures_the_misfire_window_from_the_wall_clock(db: psycopg.Connection[Any]) -> None:
    """``airflow backfill create`` runs logical times two days old, at T (the wall clock): a two-day-old
    slot is recorded missed — from the wall clock it is two days late — not sent; and the backfill decides
    only the slots due at its own logical time, never today's."""
    two_days_ago = T - timedelta(days=2)
    idle = new_alert(db, schedule_spec("Idle since two days ago"))  # daily at 17:05
    db.execute("UPDATE cron_jobs SET next_run_at = %s WHERE id = %s", (two_days_ago, idle.cron_job_id))
    # Measured from the run's logical time, the old slot would be on time; the one-statement claim leaves it.
    assert (
        claim_fresh_slots(
            db, [reload(db, idle)], logical_time=two_days_ago, now=T, claimant=A, settings=BACKFILL
        )
        == {}
    )

    reason = refused(claim(db, reload(db, idle), at=two_days_ago, now=T, settings=BACKFILL))

    assert reason == (
        "missed 1 slot(s) from 2026-12-05T17:05:00+00:00 to 2026-12-05T17:05:00+00:00: not run within the "
        "60-minute misfire window (found by a backfill run for 2026-12-05T17:05:00+00:00: the window is "
        "measured from the wall clock, so an old report is recorded, not sent late)"
    )
    (row,) = ledger(db, idle)
    assert (row["status"], row["slot"], row["error"]) == ("missed", two_days_ago, reason)
    # Yesterday's slot is the next to decide (by a run at its time), not swept along by this run.
    assert cron_job(db, idle)["next_run_at"] == T - timedelta(days=1)
    reason = refused(claim(db, reload(db, idle), at=T - timedelta(days=1), now=T, settings=BACKFILL))
    assert "missed 1 slot(s) from 2026-12-06T17:05:00+00:00" in reason
    assert cron_job(db, idle)["next_run_at"] == T  # today's slot: due, inside the window, untouched

    # Today's slot is due now; a backfill run for two days ago does not touch it; the normal run sends it.
    assert "not due until 2026-12-07T17:05:00+00:00" in refused(
        claim(db, reload(db, idle), at=two_days_ago, now=T + timedelta(minutes=3), settings=BACKFILL)
    )
    assert claimed(claim(db, reload(db, idle), at=T, now=T + timedelta(minutes=3), who=B)).slot == T


def test_a_backfill_run_never_resends_a_sent_slot_even_if_next_run_at_points_at_it(
    db: psycopg.Connection[Any],
) -> None:
    alert = new_alert(db)
    two_days_ago = T - timedelta(days=2)
    db.execute("UPDATE cron_jobs SET next_run_at = %s WHERE id = %s", (two_days_ago, alert.cron_job_id))
    sent = claimed(claim(db, reload(db, alert), at=two_days_ago))
    finish_claim(db, alert, sent, Outcome("sent"), now=two_days_ago)
    (before,) = ledger(db, alert)
    db.execute("UPDATE cron_jobs SET next_run_at = %s WHERE id = %s", (two_days_ago, alert.cron_job_id))

    reason = refused(claim(db, reload(db, alert), at=two_days_ago, now=T, settings=BACKFILL))

    assert reason == "slot 2026-12-05T17:05:00+00:00 already finished (sent)"
    assert ledger(db, alert) == [before]
    assert cron_job(db, alert)["next_run_at"] == T - timedelta(days=1)


def test_threshold_alerts_claim_one_slot_per_utc_hour(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(
        db,
        {
            "organization_id": 2,
            "alert_name": "Orders above 10",
            "recipients": ["ops@org2.example.com"],
            "cube_query": QUERY,
            "threshold": {"condition": "GREATER_THAN", "threshold_value": "10"},
        },
    )
    assert alert.next_run_at == datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # the current hour: check soon

    c = claimed(claim(db, alert))
    state = ThresholdStateUpdate("TRIGGERED", None, T)
    finish_claim(db, alert, c, Outcome("sent"), now=T, threshold_state=state)

    assert c.slot == datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
    assert cron_job(db, alert)["next_run_at"] == datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    thresholds = db.execute(
        "SELECT * FROM kpi_thresholds WHERE kpi_alert_id = %s", (alert.alert_id,)
    ).fetchone()
    assert (
        thresholds is not None and thresholds["state"] == "TRIGGERED" and thresholds["last_notified_at"] == T
    )
    assert "not due" in refused(claim(db, reload(db, alert), at=T + timedelta(minutes=50)))

    nxt = claimed(claim(db, reload(db, alert), at=T + timedelta(hours=1)))
    assert nxt.slot == datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    assert [r["slot"].hour for r in ledger(db, alert)] == [17, 18]


def test_schedule_checks_refuse_bad_rows_at_insert_time(db: psycopg.Connection[Any]) -> None:
    alert = new_alert(db)
    db.execute("DELETE FROM kpi_schedules WHERE kpi_alert_id = %s", (alert.alert_id,))
    insert = (
        "INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, selected_days, timezone) "
        "VALUES (%s, %s, %s::smallint[], %s)"
    )
    for frequency, days, tz in [
        ("month", [], "UTC"),  # a monthly schedule needs days
        ("week", [7], "UTC"),  # Sunday is 0
        ("day", [], "Mars/Olympus_Mons"),
    ]:
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(insert, (alert.alert_id, frequency, days, tz))


def test_an_invalid_stored_schedule_fails_its_slot_and_is_looked_at_again_tomorrow(
    db: psycopg.Connection[Any],
) -> None:
    """Reachable past the CHECKs: a 'schedule' alert whose kpi_schedules row is missing."""
    alert = new_alert(db)
    db.execute("DELETE FROM kpi_schedules WHERE kpi_alert_id = %s", (alert.alert_id,))
    alert = reload(db, alert)

    c = claimed(claim(db, alert))
    finish_claim(db, alert, c, Outcome("failed", error="schedule alert has no kpi_schedules row"), now=T)

    (row,) = ledger(db, alert)
    assert row["status"] == "failed"
    assert cron_job(db, alert)["next_run_at"] == T + timedelta(hours=24)  # not every five minutes


def test_finish_and_claim_of_the_same_alert_do_not_deadlock(
    db: psycopg.Connection[Any], alerts_db_url: str
) -> None:
    """A claimant holding the cron_jobs row, then reading the ledger row, while its worker finishes.

    This is the interleaving the race test hits by chance: claim_slot locks cron_jobs then the
    ledger row; finish_claim must take them in the same order or PostgreSQL aborts one of them.
    """
    alert = new_alert(db)
    c = claimed(claim(db, alert))
    errors: list[BaseException] = []

    def finish() -> None:
        try:
            with connect(alerts_db_url) as worker:
                finish_claim(worker, alert, c, Outcome("sent"), now=T + timedelta(seconds=2))
        except BaseException as exc:
            errors.append(exc)

    with connect(alerts_db_url) as other, other.transaction():
        assert other.execute(queries.LOCK_CRON_JOB, {"cron_job_id": alert.cron_job_id}).fetchone()
        worker = threading.Thread(target=finish)
        worker.start()
        wait_until(lambda: lock_waiters(db) > 0, timeout=10, what="the worker to wait inside finish_claim")
        other.execute(queries.LOCK_LEDGER_ROW, {"cron_job_id": alert.cron_job_id, "slot": T}).fetchone()
    worker.join(10)

    assert errors == []
    assert [r["status"] for r in ledger(db, alert)] == ["sent"]


# --- the real DAG over an invalid stored alert ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.services
def test_dag_records_an_invalid_alert_as_failed_and_runs_the_others(
    db: psycopg.Connection[Any], airflow_db: None, airflow_connections: dict[str, str], mailbox: Any
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO_ROOT

    good = new_alert(
        db,
        {
            **schedule_spec("Good one", attachment_type="csv"),
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
        },
    )
    # The seed's documented way (plain SQL), but the kpi_schedules row was never written.
    job = db.execute(
        "INSERT INTO cron_jobs (job_name, locked, master_locked) VALUES ('kpi_alert_broken', false, false) "
        "RETURNING id"
    ).fetchone()
    assert job is not None
    cron_job_id = job["id"]
    broken = db.execute(
        "INSERT INTO kpi_alerts (cron_job_id, organization_id, alert_type, alert_name, recipients, cube_query) "
        "VALUES (%s, 1, 'schedule', 'Broken', ARRAY['x@org1.example.com'], %s) RETURNING id",
        (cron_job_id, json.dumps(QUERY)),
    ).fetchone()
    assert broken is not None
    broken_id = broken["id"]

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).get_dag("kpi_alerts")
    dag_run = dag.test(logical_date=T)

    assert str(dag_run.state) == "failed"  # the summary turns the run red, after everything ran
    states = sorted(str(ti.state) for ti in dag_run.get_task_instances() if ti.task_id == "process_alert")
    assert states == ["failed", "success"]
    assert [m["To"] for m in mailbox.messages()] == ["cfo@org1.example.com"]
    rows = {r["kpi_alert_id"]: r for r in db.execute("SELECT * FROM cron_job_results").fetchall()}
    assert rows[good.alert_id]["status"] == "sent"
    assert rows[broken_id]["status"] == "failed" and "no kpi_schedules row" in rows[broken_id]["error"]
    assert rows[broken_id]["slot"] == T  # initialised on first sight, due now, so the reason is recorded
    next_run = db.execute("SELECT next_run_at FROM cron_jobs WHERE id = %s", (cron_job_id,)).fetchone()
    assert next_run is not None and next_run["next_run_at"] == T + timedelta(hours=24)
