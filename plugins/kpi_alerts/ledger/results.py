"""Reading the ledger's outcomes (``cron_job_results``): a run's counts, an alert's previous outcome."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import psycopg

from kpi_alerts.ledger import queries
from kpi_alerts.vocabulary import LedgerStatus


def run_status_counts(conn: psycopg.Connection[Any], run_id: str) -> Counter[str]:
    """How many of the DAG run ``run_id``'s slots ended (or stand) in each status (a
    :class:`LedgerStatus` value; plain strings, so the counts log and serialise as they read)."""
    rows = conn.execute(queries.RUN_SUMMARY, {"run_id": run_id}).fetchall()
    return Counter({LedgerStatus(r["status"]).value: r["n"] for r in rows})


def run_lateness(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    """How late the run's sends were after their slot: ``latest`` and ``median`` (intervals, or None)."""
    return conn.execute(queries.RUN_LATENESS, {"run_id": run_id}).fetchone()


def still_due_alerts(conn: psycopg.Connection[Any], logical_time: datetime) -> dict[str, Any] | None:
    """How many alerts are still due at ``logical_time`` (``n``) and the oldest such slot (``oldest_slot``)."""
    return conn.execute(queries.STILL_DUE, {"logical_time": logical_time}).fetchone()


def cron_job_of_alert(conn: psycopg.Connection[Any], alert_id: int) -> str | None:
    """The ``cron_jobs`` id of an alert (None: no such alert)."""
    row = conn.execute(queries.CRON_JOB_OF_ALERT, {"alert_id": alert_id}).fetchone()
    return None if row is None else str(row["cron_job_id"])


def last_sent_digest(
    conn: psycopg.Connection[Any], cron_job_id: str, slot: datetime
) -> tuple[datetime, str] | None:
    """The slot and data digest of the alert's latest report sent before ``slot``; None when there is
    none, or it carries no digest (sent before the alert asked for one, or pruned by retention)."""
    row = conn.execute(queries.LAST_SENT_DIGEST, {"cron_job_id": cron_job_id, "slot": slot}).fetchone()
    return None if row is None or row["digest"] is None else (row["slot"], row["digest"])


def group_states(conn: psycopg.Connection[Any], alert_id: int) -> dict[str, dict[str, Any]]:
    """A per-group alert's stored group states by group (``state``, ``last_notified_at``, ``streak``);
    a group not listed is OK."""
    rows = conn.execute(queries.GROUP_STATES, {"alert_id": alert_id}).fetchall()
    return {r["group_key"]: r for r in rows}


def previous_status(conn: psycopg.Connection[Any], cron_job_id: str, slot: datetime) -> LedgerStatus | None:
    """The status of the alert's latest slot before ``slot`` (missed slots aside), or None."""
    row = conn.execute(queries.PREVIOUS_RESULT, {"cron_job_id": cron_job_id, "slot": slot}).fetchone()
    return None if row is None else LedgerStatus(row["status"])
