"""How a claimed slot goes on and ends: delivering, giving the slot back, and recording its outcome.

Every write is fenced by the claim's token (a claim taken over changes nothing and raises
:class:`~kpi_alerts.ledger.claim_terms.LostClaim`); finishing a slot moves the alert on to its next one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from kpi_alerts import metrics
from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.errors import KpiAlertError
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.claim_terms import (
    Claim,
    ClaimSettings,
    LostClaim,
    NotClaimed,
    one_statement,
    worker_of,
)
from kpi_alerts.redaction import redact_url
from kpi_alerts.vocabulary import LedgerStatus

INVALID_RECHECK = timedelta(hours=24)


class StoppedBeforeSending(LostClaim):
    """The alert was paused or deleted while its slot was in flight: nothing was sent, the slot is
    recorded ``skipped`` with the reason."""


@dataclass(frozen=True)
class Outcome:
    """How a claimed slot ended, as written to ``cron_job_results``. ``status`` is a
    :class:`~kpi_alerts.vocabulary.LedgerStatus` (or its string)."""

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

    def __post_init__(self) -> None:
        LedgerStatus(self.status)  # a status the ledger does not know is refused here, not by the database


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
    with one_statement(conn):
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
    with one_statement(conn):
        conn.execute(queries.STOP_BEFORE_SENDING, {**params, "error": reason})
    metrics.slot_finished(LedgerStatus.SKIPPED, slot=claim.slot, now=now)
    raise StoppedBeforeSending(reason)


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
    with conn.transaction() if group_states else one_statement(conn):
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


def record_interrupted_delivery(
    conn: psycopg.Connection[Any], alert: AlertDefinition, existing: Any, slot: datetime, now: datetime
) -> NotClaimed:
    """A row left in ``sending`` by a worker that stopped: recorded as ``delivery_unknown``, never resent."""
    error = (
        f"{worker_of(existing)} stopped during SMTP delivery; not resent, "
        "because the message may have been delivered (replay it if it was not)"
    )
    outcome = Outcome(LedgerStatus.DELIVERY_UNKNOWN, error)
    _finish_slot(conn, alert, existing["id"], existing["claim_token"], slot, outcome, now)
    return NotClaimed(f"previous delivery was interrupted; recorded as delivery_unknown: {error}")


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
    with one_statement(conn):
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


def advance_past(
    conn: psycopg.Connection[Any], alert: AlertDefinition, slot: datetime, next_run_at: datetime | None = None
) -> None:
    """Move the alert on from ``slot`` (to ``next_run_at``, or its next slot) and unlock it."""
    conn.execute(
        queries.ADVANCE_CRON_JOB,
        {"next_run_at": next_run_at or _next_slot(alert, slot), "cron_job_id": alert.cron_job_id},
    )


def _next_slot(alert: AlertDefinition, slot: datetime) -> datetime:
    try:
        return alert.next_slot_after(slot)
    except KpiAlertError:  # an invalid schedule: look again tomorrow rather than every tick
        return slot + INVALID_RECHECK


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
