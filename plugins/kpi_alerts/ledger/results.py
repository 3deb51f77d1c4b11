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


def previous_status(conn: psycopg.Connection[Any], cron_job_id: int, slot: datetime) -> LedgerStatus | None:
    """The status of the alert's latest slot before ``slot`` (missed slots aside), or None."""
    row = conn.execute(queries.PREVIOUS_RESULT, {"cron_job_id": cron_job_id, "slot": slot}).fetchone()
    return None if row is None else LedgerStatus(row["status"])
