"""The re-attempt policy: which finished or unfinished slot may be attempted again, by whom, and the
claim that does it.

:func:`why_not_reattempted` is the one rule for an operator's re-attempt (a cleared task instance,
``retry ALERT SLOT``); :func:`may_retry_at_a_later_tick` the one rule for later ticks. The rules in
full: docs/architecture.md, "The ledger: claims, re-attempts, outcomes".
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.claim_terms import (
    ACTIVE,
    Claim,
    Claimant,
    ClaimSettings,
    NotClaimed,
    claim_params,
    held_by_another,
    lock_ledger_row,
    status_list,
)
from kpi_alerts.ledger.outcomes import record_interrupted_delivery
from kpi_alerts.vocabulary import LedgerStatus

_S = LedgerStatus
#: The message may have gone out: never sent again (``delivery_unknown`` only as an explicit replay).
NEVER_RESENT = frozenset({_S.SENDING, _S.SENT, _S.DELIVERY_UNKNOWN})
#: What an operator's re-attempt (a cleared task instance, ``retry ALERT SLOT``) runs again: nothing went out.
REATTEMPTED = frozenset({_S.FAILED, _S.RETRYING, _S.CLAIMED})
#: An attempt ended without sending: any later try of the run may take the slot up again.
ENDED_UNSENT = frozenset({_S.FAILED, _S.RETRYING})
#: Nothing was measured for the slot: it does not supersede an earlier one.
NOT_EVALUATED = frozenset({_S.MISSED, _S.SKIPPED})

_REFUSALS: dict[str, str] = {
    _S.DELIVERY_UNKNOWN: (
        "delivery_unknown: it may have been delivered; check, then replay it with --replay if it was not"
    ),
    _S.SENT: "it was sent already; a slot is never sent twice",
    _S.SENDING: "its message is being sent, or was when its worker stopped; a slot is never sent twice",
    _S.MISSED: "it was missed (not run within the misfire window); late reports are not sent",
    _S.WAITING: "it is waiting for fresh data: later ticks send it when the data is fresh or at its deadline",
}


def why_not_reattempted(status: str, *, replay: bool = False) -> str | None:
    """The rule for running a finished slot again on an operator's request: None if a slot in ``status``
    may be attempted again, else why not (one line). Nothing that may have reached a recipient is
    attempted again, except a ``delivery_unknown`` slot an operator explicitly replays."""
    if status in REATTEMPTED or (status == _S.DELIVERY_UNKNOWN and replay):
        return None
    return (
        _REFUSALS.get(status) or f"it finished as {status}, not as a failure; there is nothing to re-attempt"
    )


def may_retry_at_a_later_tick(
    claim: Claim, *, logical_time: datetime, now: datetime, settings: ClaimSettings
) -> bool:
    """After a transient failure on the last Airflow try: may a later tick retry the slot? Yes while it is
    inside the misfire window; a tick that finds it past the window records it as failed. Never for an
    operator's re-attempt: later ticks look at the alert's next slot, not at this one."""
    if claim.reattempt:
        return False
    return claim.slot > settings.oldest_sendable_slot(logical_time=logical_time, now=now)


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


def reattempt_slot_of_run(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    *,
    due_at: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
) -> Claim | NotClaimed:
    """The alert is not due until ``due_at``: unless the claimant is a later try of a run whose slot was
    left unsent (an operator cleared the task instance), then that slot is attempted again. Inside the
    claim's transaction, holding the alert's cron_jobs row."""
    earlier = _run_slot_of_alert(conn, alert, claimant)
    if earlier is not None and earlier["unsent"]:
        return _reattempt(conn, alert, earlier["slot"], now, claimant, settings, replay=False)
    if earlier is not None:
        refusal = why_not_reattempted(earlier["status"]) or f"it finished as {earlier['status']}"
        return NotClaimed(
            f"not due until {due_at.isoformat()}; this run's slot {earlier['slot'].isoformat()} is not "
            f"attempted again: {refusal}"
        )
    return NotClaimed(f"not due until {due_at.isoformat()}")


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
            "ended_unsent": status_list(ENDED_UNSENT),
            "active": status_list(ACTIVE),
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
    existing = lock_ledger_row(conn, alert, slot)
    when = slot.isoformat()
    if existing is None:
        return NotClaimed(f"slot {when} has no ledger row: it never came due (`history` lists the slots)")
    busy = held_by_another(existing, claimant, slot=slot, now=now)
    if busy is not None:
        return busy
    if existing["status"] == LedgerStatus.SENDING:
        return record_interrupted_delivery(conn, alert, existing, slot, now)
    refusal = why_not_reattempted(existing["status"], replay=replay)
    if refusal is not None:
        return NotClaimed(f"slot {when} is not attempted again: {refusal}")
    if alert.threshold is not None:
        later = conn.execute(
            queries.LATER_EVALUATED_SLOT,
            {"cron_job_id": alert.cron_job_id, "slot": slot, "not_evaluated": status_list(NOT_EVALUATED)},
        ).fetchone()
        if later is not None:
            return NotClaimed(
                f"slot {when} is not attempted again: a threshold alert measures the current value, and the "
                f"later slot {later['slot'].isoformat()} ({later['status']}) superseded it"
            )
    token = uuid.uuid4()
    resumed = conn.execute(
        queries.REATTEMPT_CLAIM,
        {**claim_params(alert, slot, now, claimant, settings, token), "result_id": existing["id"]},
    ).fetchone()
    assert resumed is not None
    # The same Message-ID as the slot's earlier attempt: a replay is recognisably the same message.
    return Claim.from_row(resumed, cron_job_id=alert.cron_job_id, slot=slot, token=token, reattempt=True)
