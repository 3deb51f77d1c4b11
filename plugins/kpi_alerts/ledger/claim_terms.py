"""What a claim on an (alert, slot) is, shared by claiming, re-attempting and recording outcomes.

The ledger's status sets, the settings a claim runs with (lease, misfire window), who claims, the
:class:`Claim` built from its ledger row in one place, and the guards every path applies to an existing
ledger row. The rules themselves: docs/architecture.md, "The ledger: claims, re-attempts, outcomes".
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.errors import KpiAlertError
from kpi_alerts.ledger import queries
from kpi_alerts.vocabulary import LedgerStatus

_S = LedgerStatus
#: A worker is (or was, until its lease expires) on the slot.
ACTIVE = frozenset({_S.CLAIMED, _S.SENDING})
#: An attempt began and did not finish the slot.
UNFINISHED = frozenset({_S.CLAIMED, _S.RETRYING, _S.SENDING})
#: What a later claim of the same slot takes up again: an unfinished attempt, or a report waiting for data.
RESUMED = UNFINISHED | {_S.WAITING}


def status_list(statuses: frozenset[LedgerStatus]) -> list[str]:
    """A status set as a statement's ``text[]`` parameter, in a stable order."""
    return sorted(str(status) for status in statuses)


class LostClaim(KpiAlertError):
    """Our lease was taken over by another claimant: stop, and let it finish the slot."""


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
        ever decides the slots due at its logical time (``claims._handle_misfire``): a later slot, e.g.
        today's still inside the window, is left to the runs that reach it."""
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
    """A ledger row held by one claimant: every later write on it is fenced by ``token``."""

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

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, Any],
        *,
        cron_job_id: str,
        slot: datetime,
        token: uuid.UUID,
        took_over: bool = False,
        reattempt: bool = False,
    ) -> Claim:
        """The claim on the ledger row a claiming statement returned (``id``, ``attempts``,
        ``message_token``: what the database decided); the claimant gives what it asked for."""
        return cls(
            result_id=row["id"],
            cron_job_id=cron_job_id,
            slot=slot,
            token=token,
            attempts=row["attempts"],
            took_over=took_over,
            message_token=row["message_token"],
            reattempt=reattempt,
        )


@dataclass(frozen=True)
class NotClaimed:
    reason: str


def claim_params(
    alert: AlertDefinition,
    slot: datetime,
    now: datetime,
    claimant: Claimant,
    settings: ClaimSettings,
    token: uuid.UUID,
) -> dict[str, Any]:
    """The parameters of a statement claiming ``slot`` for ``claimant``."""
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


def lock_ledger_row(conn: psycopg.Connection[Any], alert: AlertDefinition, slot: datetime) -> Any:
    """The slot's ledger row, locked for the claim's transaction (None if there is none)."""
    return conn.execute(queries.LOCK_LEDGER_ROW, {"cron_job_id": alert.cron_job_id, "slot": slot}).fetchone()


def held_by_another(existing: Any, claimant: Claimant, *, slot: datetime, now: datetime) -> NotClaimed | None:
    """The guard on an existing ledger row: a worker holds it under a running lease, and it is not an
    earlier try of the claimant's own task instance (whose claim may be resumed at once)."""
    lease_active = existing["lease_expires_at"] is not None and existing["lease_expires_at"] > now
    if existing["status"] in ACTIVE and lease_active and not is_earlier_try_of(existing, claimant):
        until = existing["lease_expires_at"].isoformat()
        return NotClaimed(
            f"slot {slot.isoformat()} is being processed by {existing['claimed_by']} until {until}"
        )
    return None


def is_earlier_try_of(row: Any, claimant: Claimant) -> bool:
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


def worker_of(row: Any) -> str:
    """The worker (and its try) that holds or held a ledger row, in words."""
    try_number = f" (try {row['try_number']})" if row["try_number"] is not None else ""
    return f"worker {row['claimed_by']}{try_number}"


def one_statement(conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    """Autocommit connections run a statement as its own transaction, saving BEGIN/COMMIT round trips."""
    return nullcontext() if conn.autocommit else conn.transaction()
