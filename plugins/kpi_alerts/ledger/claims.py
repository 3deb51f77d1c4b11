"""Claiming an (alert, slot) exactly once, and recording how it ended.

A claim is one short transaction:

1. lock the alert's ``cron_jobs`` row with ``FOR UPDATE SKIP LOCKED`` — a second claimant never
   waits, it moves on;
2. check the slot is due (``next_run_at <= logical time``) and handle misfires;
3. insert the ledger row, unique on ``(cron_job_id, slot)`` — the final word if two claimants ever
   got this far;
4. set ``locked`` and the seed's ``last_ran_at_*`` columns, so ``prevent_multiple_updates()``
   guards the hour a second time (at the first slot of each UTC hour only: a schedule with several
   slots in one hour leaves the stamp of its earlier slot alone, see ``queries.LATER_SLOT_IN_HOUR``).

The ledger row carries a lease (``lease_expires_at``) and a fencing token: a worker that died is
taken over when its lease has expired, and a worker whose lease was taken over can no longer
write (every later update matches on the token).

What may be attempted again — the rules every runner keeps (Airflow retries, later ticks, batch
runners, an operator clearing a task instance):

- A slot whose message may have gone out (:data:`NEVER_RESENT`: ``sending``, ``sent``,
  ``delivery_unknown``) is never sent again. A row left in ``sending`` means its worker stopped
  during delivery: it is recorded as ``delivery_unknown``, because the message may have been
  delivered (at most once beats a duplicate); an operator may replay it.
- A transient failure releases the row as ``retrying`` (its error kept in ``attempt_history``); the
  next Airflow try resumes it, and on the last try later ticks do, while the slot is inside the
  misfire window (:func:`may_retry_at_a_later_tick`). Past the window it is recorded as failed.
- A slot older than the misfire window is recorded ``missed``, never sent late
  (:meth:`ClaimSettings.oldest_sendable_slot`, the one rule: a backfill run measures it from the wall clock,
  and decides only the slots due at its own logical time).
- A later try of the *same* task instance (same DAG run, same map index) resumes its predecessor's
  claim at once, without waiting for the lease: the predecessor is known to be over.
- An operator's re-attempt — clearing a failed ``process_alert`` task instance in the Airflow UI (a
  later try of the same DAG run), or ``python -m kpi_alerts retry ALERT SLOT`` — runs a finished slot
  again only if nothing can have gone out (:data:`REATTEMPTED`: ``failed``, or ``retrying`` /
  ``claimed`` left behind); :func:`why_not_reattempted` is the one rule. ``sent`` and ``sending`` are
  never attempted again; ``delivery_unknown`` only as an explicit replay (``retry --replay``). A
  threshold alert's slot is re-attempted only while no later slot was evaluated (it measures the
  current value: a later evaluation supersedes it). The earlier outcome is kept in ``attempt_history``.
  (Airflow's own retry of a batch — another alert of the batch failed transiently — is a later try of
  the run too: its permanently failed alerts are attempted once more; their owners are not told twice.)
- A report waiting for fresh data (:func:`wait_for_fresh_data`) gives its claim back as ``waiting``; the
  alert's ``next_run_at`` stays on the slot, so every later tick claims the slot again (resuming the row,
  never inserting a second one) and looks at the data again, until it is sent. Its misfire window counts
  from its deadline (:func:`claim_settings_for`): a waiting slot is never recorded missed before then.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from kpi_alerts import metrics
from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.errors import KpiAlertError
from kpi_alerts.ledger import queries
from kpi_alerts.redaction import redact_url
from kpi_alerts.vocabulary import LedgerStatus

_S = LedgerStatus
ACTIVE = frozenset({_S.CLAIMED, _S.SENDING})  # a worker is (or was, until its lease expires) on the slot
UNFINISHED = frozenset({_S.CLAIMED, _S.RETRYING, _S.SENDING})
NEVER_RESENT = frozenset({_S.SENDING, _S.SENT, _S.DELIVERY_UNKNOWN})  # the message may have gone out
# What an operator's re-attempt (a cleared task instance, `retry ALERT SLOT`) runs again: nothing went out.
REATTEMPTED = frozenset({_S.FAILED, _S.RETRYING, _S.CLAIMED})
# What a later claim of the same slot takes up again: an unfinished attempt, or a report waiting for data.
RESUMED = UNFINISHED | {_S.WAITING}
MAX_COUNTED_MISSES = 10_000
INVALID_RECHECK = timedelta(hours=24)


class LostClaim(KpiAlertError):
    """Our lease was taken over by another claimant: stop, and let it finish the slot."""


class StoppedBeforeSending(LostClaim):
    """The alert was paused or deleted while its slot was in flight: nothing was sent, the slot is
    recorded ``skipped`` with the reason."""


@dataclass(frozen=True)
class ClaimSettings:
    """:param lease: how long a claim may work before another claimant may take it over.
    :param misfire_window: how late a slot may still run; older slots are recorded as missed.
    :param backfill: the run re-runs a past logical time (Airflow's ``backfill create``): how late a slot
        is, is measured from the wall clock (:meth:`oldest_sendable_slot`)."""

    lease: timedelta = timedelta(minutes=30)
    misfire_window: timedelta = timedelta(hours=1)
    backfill: bool = False

    def oldest_sendable_slot(self, *, logical_time: datetime, now: datetime) -> datetime:
        """The misfire rule, decided here only: the oldest slot a run at ``logical_time`` may still send;
        an older one is recorded ``missed``, never sent late.

        A run measures lateness from its logical time (due-ness never reads the wall clock, so
        ``airflow dags test kpi_alerts <T>`` is reproducible). A backfill run's logical time is in the
        past — days ago — so measured from it a days-old slot would look on time and be sent now: a
        backfill measures from the wall clock instead (from its logical time, if that is later). It only
        ever decides the slots due at its logical time (:func:`_handle_misfire`): a later slot, e.g. today's
        still inside the window, is left to the runs that reach it."""
        late_from = max(logical_time, now) if self.backfill else logical_time
        return late_from - self.misfire_window


def claim_settings_for(alert: AlertDefinition, settings: ClaimSettings) -> ClaimSettings:
    """The settings a claim of ``alert`` runs with: a report that waits for fresh data has its misfire
    window lengthened by its longest wait, so that the window counts from the slot's deadline."""
    if not alert.waits_at_most:
        return settings
    return replace(settings, misfire_window=settings.misfire_window + alert.waits_at_most)


@dataclass(frozen=True)
class Claimant:
    """Who claims: shown in the ledger so a person can find the Airflow task instance."""

    dag_run_id: str | None = None
    task_instance: str | None = None
    try_number: int = 1
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


@dataclass(frozen=True)
class Claim:
    result_id: int
    cron_job_id: str
    slot: datetime
    token: uuid.UUID
    attempts: int
    took_over: bool = False
    #: Drawn once per ledger row (its first claim): the random part of the slot's Message-ID, the same
    #: on every retry of the slot.
    message_token: uuid.UUID | None = None
    reattempt: bool = False  # an operator's re-attempt of a finished slot: later ticks will not retry it


@dataclass(frozen=True)
class NotClaimed:
    reason: str


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
            earlier = _run_slot_of_alert(conn, alert, claimant)
            if earlier is not None and earlier["unsent"]:
                return _reattempt(conn, alert, earlier["slot"], now, claimant, settings, replay=False)
            if earlier is not None:
                refusal = why_not_reattempted(earlier["status"]) or f"it finished as {earlier['status']}"
                return NotClaimed(
                    f"not due until {slot.isoformat()}; this run's slot {earlier['slot'].isoformat()} is not "
                    f"attempted again: {refusal}"
                )
            return NotClaimed(f"not due until {slot.isoformat()}")
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
        **_claim_params(alert, logical_time, now, claimant, settings, token),
        "logical_time": logical_time,
        "oldest_slot": settings.oldest_sendable_slot(logical_time=logical_time, now=now),
    }
    try:
        with _one_statement(conn):
            row = conn.execute(queries.CLAIM_FRESH_SLOT, params).fetchone()
    except psycopg.errors.RaiseException:  # prevent_multiple_updates(): the long way records it
        return None
    if row is None:
        return None
    return Claim(
        row["id"], alert.cron_job_id, row["slot"], token, row["attempts"], message_token=row["message_token"]
    )


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
        with _one_statement(conn):
            rows = conn.execute(queries.CLAIM_FRESH_SLOTS, params).fetchall()
    except psycopg.errors.RaiseException:  # prevent_multiple_updates() after all: each alert the long way
        return {}
    return {
        by_job[r["cron_job_id"]].alert_id: Claim(
            r["id"],
            r["cron_job_id"],
            r["slot"],
            r["claim_token"],
            r["attempts"],
            message_token=r["message_token"],
        )
        for r in rows
    }


def _one_statement(conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    """Autocommit connections run a statement as its own transaction, saving BEGIN/COMMIT round trips."""
    return nullcontext() if conn.autocommit else conn.transaction()


def _claim_or_resume(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    slot: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
) -> Claim | NotClaimed:
    token = uuid.uuid4()
    params = _claim_params(alert, slot, now, claimant, settings, token)
    inserted = conn.execute(queries.INSERT_CLAIM, params).fetchone()
    if inserted is not None:
        marks = _last_ran_params(alert, slot)
        if conn.execute(queries.LATER_SLOT_IN_HOUR, marks).fetchone()["later"]:  # type: ignore[index]
            conn.execute(queries.MARK_CRON_JOB_CLAIMED_UNSTAMPED, marks)  # the hour is stamped: by us
        else:
            try:
                with conn.transaction():  # a savepoint: the trigger may refuse the hour
                    conn.execute(queries.MARK_CRON_JOB_CLAIMED, marks)
            except psycopg.errors.RaiseException as exc:
                return _refused_by_trigger(
                    conn, alert, inserted["id"], slot, now, str(exc.diag.message_primary)
                )
        return Claim(
            inserted["id"],
            alert.cron_job_id,
            slot,
            token,
            inserted["attempts"],
            message_token=inserted["message_token"],
        )

    existing = conn.execute(
        queries.LOCK_LEDGER_ROW, {"cron_job_id": alert.cron_job_id, "slot": slot}
    ).fetchone()
    assert existing is not None  # the unique index just said it exists; we hold the cron_jobs row lock
    status = existing["status"]
    lease_active = existing["lease_expires_at"] is not None and existing["lease_expires_at"] > now
    predecessor = _is_earlier_try_of(existing, claimant)
    if status in ACTIVE and lease_active and not predecessor:
        until = existing["lease_expires_at"].isoformat()
        return NotClaimed(
            f"slot {slot.isoformat()} is being processed by {existing['claimed_by']} until {until}"
        )
    if status == "sending":
        return _record_interrupted_delivery(conn, alert, existing, slot, now)
    if status not in RESUMED:
        _advance(conn, alert, slot)  # finished earlier; make sure the alert has moved on
        return NotClaimed(f"slot {slot.isoformat()} already finished ({status})")
    takeover = status == LedgerStatus.CLAIMED  # its worker died, hung, or was our own earlier try
    note = None
    if takeover:
        note = (
            f"resumed from {_worker_of(existing)}, which ended without finishing the slot"
            if predecessor
            else f"taken over from {existing['claimed_by']} after its lease expired"
        )
    resumed = conn.execute(
        queries.TAKE_OVER_CLAIM,
        {**params, "result_id": existing["id"], "takeover": int(takeover), "note": note},
    ).fetchone()
    conn.execute(queries.SET_CRON_JOB_LOCKED, {"locked": True, "cron_job_id": alert.cron_job_id})
    assert resumed is not None
    return Claim(
        existing["id"],
        alert.cron_job_id,
        slot,
        token,
        resumed["attempts"],
        took_over=takeover,
        message_token=resumed["message_token"],
    )


def _record_interrupted_delivery(
    conn: psycopg.Connection[Any], alert: AlertDefinition, existing: Any, slot: datetime, now: datetime
) -> NotClaimed:
    """A row left in ``sending`` by a worker that stopped: recorded as ``delivery_unknown``, never resent."""
    error = (
        f"{_worker_of(existing)} stopped during SMTP delivery; not resent, "
        "because the message may have been delivered (replay it if it was not)"
    )
    _finish_slot(
        conn, alert, existing["id"], existing["claim_token"], slot, Outcome("delivery_unknown", error), now
    )
    return NotClaimed(f"previous delivery was interrupted; recorded as delivery_unknown: {error}")


def why_not_reattempted(status: str, *, replay: bool = False) -> str | None:
    """The rule for running a finished slot again on an operator's request: None if a slot in ``status``
    may be attempted again, else why not (one line). Nothing that may have reached a recipient is
    attempted again, except a ``delivery_unknown`` slot an operator explicitly replays."""
    if status in REATTEMPTED:
        return None
    if status == "delivery_unknown":
        if replay:
            return None
        return (
            "delivery_unknown: it may have been delivered; check, then replay it with --replay if it was not"
        )
    if status == "sent":
        return "it was sent already; a slot is never sent twice"
    if status == "sending":
        return "its message is being sent, or was when its worker stopped; a slot is never sent twice"
    if status == "missed":
        return "it was missed (not run within the misfire window); late reports are not sent"
    if status == LedgerStatus.WAITING:
        return "it is waiting for fresh data: later ticks send it when the data is fresh or at its deadline"
    return f"it finished as {status}, not as a failure; there is nothing to re-attempt"


def reattempt_slot(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    slot: datetime,
    *,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings = ClaimSettings(),
    replay: bool = False,
) -> Claim | NotClaimed:
    """Claim ``slot`` again on an operator's request (``retry ALERT SLOT``), or say why not
    (:func:`why_not_reattempted`). Commits before returning."""
    with conn.transaction():
        row = conn.execute(queries.LOCK_CRON_JOB, {"cron_job_id": alert.cron_job_id}).fetchone()
        if row is None:
            return NotClaimed(
                "another claimant holds this alert's cron_jobs row right now; try again shortly"
            )
        if row["master_locked"]:
            return NotClaimed("the alert is paused by an operator; resume it first")
        return _reattempt(conn, alert, slot, now, claimant, settings, replay=replay)


def _run_slot_of_alert(conn: psycopg.Connection[Any], alert: AlertDefinition, claimant: Claimant) -> Any:
    """This alert's ledger row in the claimant's DAG run (``unsent``: failed, or left unfinished by an
    earlier try — the claimant is a later try of the run: an operator cleared the task instance)."""
    if claimant.dag_run_id is None:
        return None
    return conn.execute(
        queries.RUN_SLOT_OF_ALERT,
        {
            "cron_job_id": alert.cron_job_id,
            "dag_run_id": claimant.dag_run_id,
            "task_instance": claimant.task_instance,
            "try_number": claimant.try_number,
        },
    ).fetchone()


def _reattempt(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    slot: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
    *,
    replay: bool,
) -> Claim | NotClaimed:
    """Inside the claim's transaction, holding the alert's cron_jobs row."""
    existing = conn.execute(
        queries.LOCK_LEDGER_ROW, {"cron_job_id": alert.cron_job_id, "slot": slot}
    ).fetchone()
    when = slot.isoformat()
    if existing is None:
        return NotClaimed(f"slot {when} has no ledger row: it never came due (`history` lists the slots)")
    status = existing["status"]
    lease_active = existing["lease_expires_at"] is not None and existing["lease_expires_at"] > now
    if status in ACTIVE and lease_active and not _is_earlier_try_of(existing, claimant):
        until = existing["lease_expires_at"].isoformat()
        return NotClaimed(f"slot {when} is being processed by {existing['claimed_by']} until {until}")
    if status == "sending":
        return _record_interrupted_delivery(conn, alert, existing, slot, now)
    refusal = why_not_reattempted(status, replay=replay)
    if refusal is not None:
        return NotClaimed(f"slot {when} is not attempted again: {refusal}")
    if alert.threshold is not None:
        later = conn.execute(
            queries.LATER_EVALUATED_SLOT, {"cron_job_id": alert.cron_job_id, "slot": slot}
        ).fetchone()
        if later is not None:
            return NotClaimed(
                f"slot {when} is not attempted again: a threshold alert measures the current value, and the "
                f"later slot {later['slot'].isoformat()} ({later['status']}) superseded it"
            )
    token = uuid.uuid4()
    resumed = conn.execute(
        queries.REATTEMPT_CLAIM,
        {**_claim_params(alert, slot, now, claimant, settings, token), "result_id": existing["id"]},
    ).fetchone()
    assert resumed is not None
    return Claim(  # the same Message-ID as the slot's earlier attempt: a replay is recognisably the same
        existing["id"],
        alert.cron_job_id,
        slot,
        token,
        resumed["attempts"],
        reattempt=True,
        message_token=resumed["message_token"],
    )


def _is_earlier_try_of(row: Any, claimant: Claimant) -> bool:
    """The row was claimed by an earlier try of the claimant's own task instance (same DAG run, same
    map index): Airflow starts a try only when the previous one is over, so its claim may be resumed."""
    return (
        claimant.dag_run_id is not None
        and claimant.task_instance is not None
        and row["dag_run_id"] == claimant.dag_run_id
        and row["task_instance"] == claimant.task_instance
        and row["try_number"] is not None
        and row["try_number"] < claimant.try_number
    )


def _worker_of(row: Any) -> str:
    try_number = f" (try {row['try_number']})" if row["try_number"] is not None else ""
    return f"worker {row['claimed_by']}{try_number}"


def may_retry_at_a_later_tick(
    claim: Claim, *, logical_time: datetime, now: datetime, settings: ClaimSettings
) -> bool:
    """After a transient failure on the last Airflow try: may a later tick retry the slot? Yes while it is
    inside the misfire window; a tick that finds it past the window records it as failed. Never for an
    operator's re-attempt: later ticks look at the alert's next slot, not at this one."""
    if claim.reattempt:
        return False
    return claim.slot > settings.oldest_sendable_slot(logical_time=logical_time, now=now)


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
    existing = conn.execute(
        queries.LOCK_LEDGER_ROW, {"cron_job_id": alert.cron_job_id, "slot": slot}
    ).fetchone()
    if existing is not None and existing["status"] not in UNFINISHED:
        _advance(conn, alert, slot)
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
        },
    )
    metrics.slot_finished("missed", slot=slot, now=now)
    if following <= logical_time:  # the first slot inside the window, due at this run's logical time
        return following
    conn.execute(queries.ADVANCE_CRON_JOB, {"next_run_at": following, "cron_job_id": alert.cron_job_id})
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
    _advance(conn, alert, slot)
    return NotClaimed(f"already executed in this hour: {message}")


def start_sending(
    conn: psycopg.Connection[Any], claim: Claim, *, now: datetime, settings: ClaimSettings
) -> None:
    """Mark the claim as delivering; raise :class:`LostClaim` if it is no longer ours, or
    :class:`StoppedBeforeSending` (after recording the slot ``skipped``) if the alert was paused or
    deleted meanwhile — never send then."""
    params = {
        "result_id": claim.result_id,
        "token": claim.token,
        "cron_job_id": claim.cron_job_id,
        "now": now,
    }
    with _one_statement(conn):
        updated = conn.execute(queries.MARK_SENDING, {**params, "lease_expires_at": now + settings.lease})
    if updated.rowcount == 1:
        return
    why = conn.execute(queries.WHY_NOT_SENDING, params).fetchone()
    if why is None or not why["ours"] or not why["master_locked"]:
        raise LostClaim(f"claim on slot {claim.slot.isoformat()} was taken over; not sending")
    change = "paused" if why["alert_exists"] else "deleted"
    reason = (
        f"the alert was {change} by an operator while slot {claim.slot.isoformat()} was in flight; not sent"
    )
    with _one_statement(conn):
        conn.execute(queries.STOP_BEFORE_SENDING, {**params, "error": reason})
    metrics.slot_finished(LedgerStatus.SKIPPED, slot=claim.slot, now=now)
    raise StoppedBeforeSending(reason)


@dataclass(frozen=True)
class Outcome:
    """How a claimed slot ended, as written to ``cron_job_results``."""

    status: str
    error: str | None = None
    value: Decimal | None = None
    previous_value: Decimal | None = None
    details: dict[str, Any] | None = None
    recipients: tuple[str, ...] | None = None
    attachment: str | None = None
    attachment_bytes: int | None = None
    delivery: str | None = None
    message_id: str | None = None


@dataclass(frozen=True)
class ThresholdStateUpdate:
    state: str
    last_value: Decimal | None
    last_notified_at: datetime | None
    streak: int = 0  # the pending period's count (conditions.threshold_state.StoredState.streak)


@dataclass(frozen=True)
class GroupStateUpdate:
    """One group's state to store with the ledger row (per-group checks)."""

    group: str
    state: str
    last_value: Decimal | None
    last_notified_at: datetime | None
    streak: int


def finish_claim(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    claim: Claim,
    outcome: Outcome,
    *,
    now: datetime,
    threshold_state: ThresholdStateUpdate | None = None,
    next_run_at: datetime | None = None,
    group_states: Sequence[GroupStateUpdate] = (),
) -> None:
    """Record the outcome, the threshold state (and its groups') and the alert's next slot in one
    transaction."""
    with conn.transaction() if group_states else _one_statement(conn):
        finished = _finish_slot(
            conn, alert, claim.result_id, claim.token, claim.slot, outcome, now, next_run_at, threshold_state
        )
        if not finished:
            raise LostClaim(f"claim on slot {claim.slot.isoformat()} was taken over; outcome not recorded")
        if group_states:
            conn.execute(
                queries.WRITE_GROUP_STATES,
                {
                    "alert_id": alert.alert_id,
                    "now": now,
                    "groups": [g.group for g in group_states],
                    "states": [g.state for g in group_states],
                    "values": [g.last_value for g in group_states],
                    "notified": [g.last_notified_at for g in group_states],
                    "streaks": [g.streak for g in group_states],
                },
            )


def cancel_sending(conn: psycopg.Connection[Any], claim: Claim) -> None:
    """The SMTP server refused the message (nothing went out): ``sending`` goes back to ``claimed``.
    Only for a refusal — after a transmission without an answer the slot stays out of reach
    (:class:`~kpi_alerts.errors.DeliveryUnknown`)."""
    with conn.transaction():
        conn.execute(queries.UNDO_SENDING, {"result_id": claim.result_id, "token": claim.token})


def record_partial_delivery(
    conn: psycopg.Connection[Any], claim: Claim, delivered: Sequence[str], *, now: datetime
) -> None:
    """The SMTP server took the message for ``delivered`` and refused the others: the slot goes back to
    ``claimed`` (its failure is then recorded or released as usual), and ``delivered`` is kept in the
    row's ``details.delivered_to`` across attempts, so that no re-attempt sends to them again."""
    with _one_statement(conn):
        conn.execute(
            queries.RECORD_PARTIAL_DELIVERY,
            {
                "result_id": claim.result_id,
                "token": claim.token,
                "now": now,
                "delivered": json.dumps(list(delivered)),
            },
        )


def delivered_recipients(conn: psycopg.Connection[Any], claim: Claim) -> tuple[str, ...]:
    """Who already has this slot's message (an earlier attempt's partial delivery). A first attempt has
    no one: it is not asked (a peak tick's claims are almost all first attempts)."""
    if claim.attempts <= 1 and not claim.reattempt:
        return ()
    row = conn.execute(queries.DELIVERED_TO, {"result_id": claim.result_id}).fetchone()
    found = row["delivered_to"] if row is not None else None
    return tuple(str(a) for a in found) if isinstance(found, list) else ()


def release_for_retry(conn: psycopg.Connection[Any], claim: Claim, *, now: datetime, error: str) -> None:
    """Give the slot back after a transient failure; the next try (or tick) resumes it. The error is
    kept in ``attempt_history``."""
    with conn.transaction():
        # The cron_jobs row first, then the ledger row: a claim's order (the other order deadlocks).
        conn.execute(queries.LOCK_CRON_JOB_WAIT, {"cron_job_id": claim.cron_job_id})
        released = conn.execute(
            queries.RELEASE_FOR_RETRY,
            {"result_id": claim.result_id, "token": claim.token, "now": now, "error": redact_url(error)},
        )
        if released.rowcount == 1:  # a claim taken over meanwhile is the new claimant's to unlock
            conn.execute(queries.SET_CRON_JOB_LOCKED, {"locked": False, "cron_job_id": claim.cron_job_id})


def wait_for_fresh_data(
    conn: psycopg.Connection[Any], claim: Claim, *, now: datetime, reason: str, details: dict[str, Any]
) -> None:
    """Give the slot back as ``waiting`` (nothing was sent): the alert stays due at this slot, so the next
    tick claims it again and looks at the data again. Raises :class:`LostClaim` if the claim is not ours."""
    with conn.transaction():
        # The cron_jobs row first, then the ledger row: a claim's order (the other order deadlocks).
        conn.execute(queries.LOCK_CRON_JOB_WAIT, {"cron_job_id": claim.cron_job_id})
        held = conn.execute(
            queries.WAIT_FOR_FRESH_DATA,
            {
                "result_id": claim.result_id,
                "token": claim.token,
                "now": now,
                "error": reason,
                "details": json.dumps(details, default=str),
            },
        )
        if held.rowcount != 1:
            raise LostClaim(f"claim on slot {claim.slot.isoformat()} was taken over; not waiting")
        conn.execute(queries.SET_CRON_JOB_LOCKED, {"locked": False, "cron_job_id": claim.cron_job_id})


def _next_slot(alert: AlertDefinition, slot: datetime) -> datetime:
    try:
        return alert.next_slot_after(slot)
    except KpiAlertError:  # an invalid schedule: look again tomorrow rather than every tick
        return slot + INVALID_RECHECK


def _advance(
    conn: psycopg.Connection[Any], alert: AlertDefinition, slot: datetime, next_run_at: datetime | None = None
) -> None:
    conn.execute(
        queries.ADVANCE_CRON_JOB,
        {"next_run_at": next_run_at or _next_slot(alert, slot), "cron_job_id": alert.cron_job_id},
    )


def _finish_slot(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    result_id: int,
    token: uuid.UUID | None,
    slot: datetime,
    outcome: Outcome,
    now: datetime,
    next_run_at: datetime | None = None,
    threshold_state: ThresholdStateUpdate | None = None,
) -> bool:
    """Write the outcome (if the claim is still ours), move the alert on and store a threshold alert's
    state, in one statement; False if the claim was not ours (then nothing changed)."""
    params = {
        **_outcome_params(outcome),
        "now": now,
        "result_id": result_id,
        "token": token,
        "cron_job_id": alert.cron_job_id,
        "alert_id": alert.alert_id,
        "slot": slot,
        "next_run_at": next_run_at or _next_slot(alert, slot),
        "state": threshold_state.state if threshold_state else None,
        "last_value": threshold_state.last_value if threshold_state else None,
        "last_notified_at": threshold_state.last_notified_at if threshold_state else None,
        "streak": threshold_state.streak if threshold_state else 0,
    }
    row = conn.execute(queries.FINISH_SLOT, params).fetchone()
    finished = row is not None and row["finished"] == 1
    if finished:
        metrics.slot_finished(outcome.status, slot=slot, now=now)
    return finished


def _claim_params(
    alert: AlertDefinition,
    slot: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
    token: uuid.UUID,
) -> dict[str, Any]:
    return {
        "cron_job_id": alert.cron_job_id,
        "alert_id": alert.alert_id,
        "organization_id": alert.organization_id,
        "slot": slot,
        "now": now,
        "token": token,
        "claimed_by": claimant.worker,
        "lease_expires_at": now + settings.lease,
        "dag_run_id": claimant.dag_run_id,
        "task_instance": claimant.task_instance,
        "try_number": claimant.try_number,
    }


def _last_ran_params(alert: AlertDefinition, slot: datetime) -> dict[str, Any]:
    utc = slot.astimezone(UTC)
    return {
        "cron_job_id": alert.cron_job_id,
        "slot": slot,
        "date": utc.date(),
        "hour": utc.hour,
        "minute": utc.minute,
    }


def _outcome_params(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "error": redact_url(outcome.error) if outcome.error is not None else None,
        "value": outcome.value,
        "previous_value": outcome.previous_value,
        "details": json.dumps(outcome.details, default=str) if outcome.details is not None else None,
        "recipients": list(outcome.recipients) if outcome.recipients is not None else None,
        "attachment": outcome.attachment,
        "attachment_bytes": outcome.attachment_bytes,
        "delivery": outcome.delivery,
        "message_id": outcome.message_id,
    }
