"""Claiming an (alert, slot) exactly once: the due slot of one alert, or the fresh due slots of many.

A claim is one short transaction on the alert's ``cron_jobs`` row (``FOR UPDATE SKIP LOCKED``: a second
claimant never waits) and the slot's ledger row (unique on ``(cron_job_id, slot)``). Here are decided the
misfires (slots older than :meth:`~kpi_alerts.ledger.claim_terms.ClaimSettings.oldest_sendable_slot`),
resumptions and takeovers; an operator's re-attempt is :mod:`kpi_alerts.ledger.reattempts`', how a slot
ends :mod:`kpi_alerts.ledger.outcomes`'. The rules in full: docs/architecture.md, "The ledger: claims,
re-attempts, outcomes".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from kpi_alerts import metrics
from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.errors import KpiAlertError
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.claim_terms import (
    RESUMED,
    UNFINISHED,
    Claim,
    Claimant,
    ClaimSettings,
    NotClaimed,
    claim_params,
    claim_settings_for,
    held_by_another,
    is_earlier_try_of,
    lock_ledger_row,
    one_statement,
    status_list,
    worker_of,
)
from kpi_alerts.ledger.outcomes import advance_past, record_interrupted_delivery
from kpi_alerts.ledger.reattempts import reattempt_slot_of_run
from kpi_alerts.vocabulary import LedgerStatus

MAX_COUNTED_MISSES = 10_000


def claim_slot(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    *,
    logical_time: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings = ClaimSettings(),
) -> Claim | NotClaimed:
    """Claim the alert's due slot at ``logical_time``, or say why not. Commits before returning."""
    settings = claim_settings_for(alert, settings)
    fresh = _claim_fresh_slot(
        conn, alert, logical_time=logical_time, now=now, claimant=claimant, settings=settings
    )
    if fresh is not None:
        return fresh
    with conn.transaction():
        row = conn.execute(queries.LOCK_CRON_JOB, {"cron_job_id": alert.cron_job_id}).fetchone()
        if row is None:
            return NotClaimed("another claimant holds this alert's cron_jobs row right now")
        if row["master_locked"]:
            return _paused_before_claim(conn, alert, row["next_run_at"], logical_time, now, claimant)
        slot = row["next_run_at"] or logical_time
        if slot > logical_time:
            # Not due — unless this is a later try of a run whose slot failed (the task instance was cleared).
            return reattempt_slot_of_run(
                conn, alert, due_at=slot, now=now, claimant=claimant, settings=settings
            )
        if slot < settings.oldest_sendable_slot(logical_time=logical_time, now=now):
            slot_or_reason = _handle_misfire(conn, alert, slot, logical_time, now, claimant, settings)
            if isinstance(slot_or_reason, NotClaimed):
                return slot_or_reason
            slot = slot_or_reason
        return _claim_or_resume(conn, alert, slot, now, claimant, settings)


def _paused_before_claim(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    slot: datetime | None,
    logical_time: datetime,
    now: datetime,
    claimant: Claimant,
) -> NotClaimed:
    """The run listed the alert as due, then an operator paused it (``pause``, ``pause --all``) before its
    slot was claimed: the slot is recorded ``skipped`` now, as the run's listing records a paused alert's
    due slot (``alert_changes.record_paused_slots``), not left without a row until the next tick."""
    reason = "paused by an operator (cron_jobs.master_locked)"
    if slot is None or slot > logical_time:
        return NotClaimed(reason)
    try:
        following: datetime | None = alert.next_slot_after(logical_time)
    except KpiAlertError:  # an invalid schedule: first sight decides after a resume
        following = None
    recorded = conn.execute(
        queries.RECORD_PAUSED_SLOT,
        {
            "cron_job_id": alert.cron_job_id,
            "alert_id": alert.alert_id,
            "organization_id": alert.organization_id,
            "slot": slot,
            "now": now,
            "dag_run_id": claimant.dag_run_id,
            "next_run_at": following,
        },
    ).fetchone()
    if recorded is not None and recorded["recorded"]:
        metrics.slot_finished(LedgerStatus.SKIPPED, slot=slot, now=now)
        return NotClaimed(f"{reason}; slot {slot.isoformat()} recorded skipped")
    return NotClaimed(reason)


def _claim_fresh_slot(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    *,
    logical_time: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
) -> Claim | None:
    """The common case in one statement (``CLAIM_FRESH_SLOT``); None sends the caller the long way."""
    token = uuid.uuid4()
    params = {
        **claim_params(alert, logical_time, now, claimant, settings, token),
        "logical_time": logical_time,
        "oldest_slot": settings.oldest_sendable_slot(logical_time=logical_time, now=now),
    }
    try:
        with one_statement(conn):
            row = conn.execute(queries.CLAIM_FRESH_SLOT, params).fetchone()
    except psycopg.errors.RaiseException:  # prevent_multiple_updates(): the long way records it
        return None
    if row is None:
        return None
    return Claim.from_row(row, cron_job_id=alert.cron_job_id, slot=row["slot"], token=token)


def claim_fresh_slots(
    conn: psycopg.Connection[Any],
    alerts: Sequence[AlertDefinition],
    *,
    logical_time: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings = ClaimSettings(),
) -> dict[int, Claim]:
    """Claim the fresh due slots of many alerts in one statement (``CLAIM_FRESH_SLOTS``), by alert id.

    Only the common case is claimed here — due, inside the misfire window, never claimed, not held by
    another claimant; an alert missing from the answer must go through :func:`claim_slot`, which decides
    every other case (misfires, resumptions, takeovers, refusals) one alert at a time.
    """
    if not alerts:
        return {}
    tokens = [uuid.uuid4() for _ in alerts]
    params = {
        "cron_job_ids": [a.cron_job_id for a in alerts],
        "alert_ids": [a.alert_id for a in alerts],
        "organization_ids": [a.organization_id for a in alerts],
        "tokens": tokens,
        "logical_time": logical_time,
        "oldest_slot": settings.oldest_sendable_slot(logical_time=logical_time, now=now),
        "now": now,
        "claimed_by": claimant.worker,
        "lease_expires_at": now + settings.lease,
        "dag_run_id": claimant.dag_run_id,
        "task_instance": claimant.task_instance,
        "try_number": claimant.try_number,
    }
    by_job = {a.cron_job_id: a for a in alerts}
    try:
        with one_statement(conn):
            rows = conn.execute(queries.CLAIM_FRESH_SLOTS, params).fetchall()
    except psycopg.errors.RaiseException:  # prevent_multiple_updates() after all: each alert the long way
        return {}
    return {
        by_job[r["cron_job_id"]].alert_id: Claim.from_row(
            r, cron_job_id=r["cron_job_id"], slot=r["slot"], token=r["claim_token"]
        )
        for r in rows
    }


def _claim_or_resume(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    slot: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
) -> Claim | NotClaimed:
    """Inside the claim's transaction, holding the alert's cron_jobs row: insert the slot's ledger row
    and mark the alert claimed, or take up the row already there (:func:`_resume`)."""
    token = uuid.uuid4()
    params = claim_params(alert, slot, now, claimant, settings, token)
    inserted = conn.execute(queries.INSERT_CLAIM, params).fetchone()
    if inserted is None:
        return _resume(conn, alert, slot, now, claimant, params)
    marks = _last_ran_params(alert, slot)
    if conn.execute(queries.LATER_SLOT_IN_HOUR, marks).fetchone()["later"]:  # type: ignore[index]
        conn.execute(queries.MARK_CRON_JOB_CLAIMED_UNSTAMPED, marks)  # the hour is stamped: by us
    else:
        try:
            with conn.transaction():  # a savepoint: the trigger may refuse the hour
                conn.execute(queries.MARK_CRON_JOB_CLAIMED, marks)
        except psycopg.errors.RaiseException as exc:
            return _refused_by_trigger(conn, alert, inserted["id"], slot, now, str(exc.diag.message_primary))
    return Claim.from_row(inserted, cron_job_id=alert.cron_job_id, slot=slot, token=token)


def _resume(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    slot: datetime,
    now: datetime,
    claimant: Claimant,
    params: dict[str, Any],
) -> Claim | NotClaimed:
    """The slot has a ledger row: resume it (retrying, waiting, an earlier try's), take it over (its lease
    expired), record an interrupted delivery, or say why not."""
    existing = lock_ledger_row(conn, alert, slot)
    assert existing is not None  # the unique index just said it exists; we hold the cron_jobs row lock
    status = existing["status"]
    busy = held_by_another(existing, claimant, slot=slot, now=now)
    if busy is not None:
        return busy
    if status == LedgerStatus.SENDING:
        return record_interrupted_delivery(conn, alert, existing, slot, now)
    if status not in RESUMED:
        advance_past(conn, alert, slot)  # finished earlier; make sure the alert has moved on
        return NotClaimed(f"slot {slot.isoformat()} already finished ({status})")
    takeover = status == LedgerStatus.CLAIMED  # its worker died, hung, or was our own earlier try
    note = None
    if takeover:
        note = (
            f"resumed from {worker_of(existing)}, which ended without finishing the slot"
            if is_earlier_try_of(existing, claimant)
            else f"taken over from {existing['claimed_by']} after its lease expired"
        )
    resumed = conn.execute(
        queries.TAKE_OVER_CLAIM,
        {**params, "result_id": existing["id"], "takeover": int(takeover), "note": note},
    ).fetchone()
    conn.execute(queries.SET_CRON_JOB_LOCKED, {"locked": True, "cron_job_id": alert.cron_job_id})
    assert resumed is not None
    return Claim.from_row(
        resumed, cron_job_id=alert.cron_job_id, slot=slot, token=params["token"], took_over=takeover
    )


def _handle_misfire(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    slot: datetime,
    logical_time: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
) -> datetime | NotClaimed:
    """Record the slots older than the misfire window (:meth:`ClaimSettings.oldest_sendable_slot`) as one
    ``missed`` row; return a slot still in it if it is due. Only slots due at the run's logical time are
    decided: a backfill run for two days ago leaves yesterday's slots to the runs at their own times, and
    never touches today's, which a normal run may still send. A slot already finished (sent...) is left
    as it is: the alert moves on."""
    existing = lock_ledger_row(conn, alert, slot)
    if existing is not None and existing["status"] not in UNFINISHED:
        advance_past(conn, alert, slot)
        return NotClaimed(f"slot {slot.isoformat()} already finished ({existing['status']})")
    in_window = alert.first_slot_at_or_after(
        settings.oldest_sendable_slot(logical_time=logical_time, now=now)
    )
    missed, last_missed, cursor = 0, slot, slot
    while cursor < in_window and cursor <= logical_time and missed < MAX_COUNTED_MISSES:
        missed, last_missed = missed + 1, cursor
        cursor = alert.next_slot_after(cursor)
    capped = cursor < in_window and cursor <= logical_time  # counting stopped at the cap
    following = in_window if capped else cursor
    window_minutes = int(settings.misfire_window.total_seconds() // 60)
    counted = f"at least {missed}" if capped else str(missed)
    why = (
        f"found by a backfill run for {logical_time.isoformat()}: the window is measured from the wall "
        "clock, so an old report is recorded, not sent late"
        if settings.backfill
        else "was the scheduler down?"
    )
    error = (
        f"missed {counted} slot(s) from {slot.isoformat()} to {last_missed.isoformat()}: not run within "
        f"the {window_minutes}-minute misfire window ({why})"
    )
    conn.execute(
        queries.RECORD_UNCLAIMED_RESULT,
        {
            "cron_job_id": alert.cron_job_id,
            "alert_id": alert.alert_id,
            "organization_id": alert.organization_id,
            "slot": slot,
            "status": LedgerStatus.MISSED,
            "now": now,
            "error": error,
            "dag_run_id": claimant.dag_run_id,
            "details": json.dumps({"missed_slots": missed, "last_missed": last_missed.isoformat()}),
            "resumed": status_list(RESUMED),  # a claim abandoned on the slot is closed too
        },
    )
    metrics.slot_finished(LedgerStatus.MISSED, slot=slot, now=now)
    if following <= logical_time:  # the first slot inside the window, due at this run's logical time
        return following
    advance_past(conn, alert, slot, following)
    return NotClaimed(error)


def _refused_by_trigger(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    result_id: int,
    slot: datetime,
    now: datetime,
    message: str,
) -> NotClaimed:
    conn.execute(
        queries.MARK_SKIPPED,
        {"result_id": result_id, "now": now, "error": f"refused by prevent_multiple_updates(): {message}"},
    )
    advance_past(conn, alert, slot)
    return NotClaimed(f"already executed in this hour: {message}")


def _last_ran_params(alert: AlertDefinition, slot: datetime) -> dict[str, Any]:
    utc = slot.astimezone(UTC)
    return {
        "cron_job_id": alert.cron_job_id,
        "slot": slot,
        "date": utc.date(),
        "hour": utc.hour,
        "minute": utc.minute,
    }
