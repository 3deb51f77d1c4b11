"""Which alerts are due at a DAG run's logical time (never the wall clock: runs are reproducible)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from kpi_alerts.errors import KpiAlertError
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.alert_store import load_alert


@dataclass(frozen=True)
class DueAlert:
    alert_id: int
    alert_name: str
    cron_job_id: int
    slot: datetime


def initialise_first_runs(
    conn: psycopg.Connection[Any], *, logical_time: datetime, misfire_window: timedelta, limit: int = 10_000
) -> int:
    """Give alerts created by plain SQL their first slot: the earliest one not older than the misfire window.

    An alert whose schedule is invalid is made due now, so that its run records the reason.
    """
    initialised = 0
    for row in conn.execute(queries.UNINITIALISED_ALERTS, {"limit": limit}).fetchall():
        alert = load_alert(conn, row["alert_id"])
        if alert is None:
            continue
        try:
            first = alert.first_slot_at_or_after(logical_time - misfire_window)
        except KpiAlertError:
            first = logical_time
        with conn.transaction():
            conn.execute(queries.SET_FIRST_RUN, {"next_run_at": first, "cron_job_id": alert.cron_job_id})
        initialised += 1
    return initialised


def park_inactive_alerts(conn: psycopg.Connection[Any], *, logical_time: datetime) -> int:
    """Take due-but-inactive alerts out of the due index; they are re-initialised when reactivated."""
    return conn.execute(queries.PARK_INACTIVE_ALERTS, {"logical_time": logical_time}).rowcount


def list_due_alerts(conn: psycopg.Connection[Any], *, logical_time: datetime, limit: int) -> list[DueAlert]:
    rows = conn.execute(queries.DUE_ALERTS, {"logical_time": logical_time, "limit": limit}).fetchall()
    return [DueAlert(r["alert_id"], r["alert_name"], r["cron_job_id"], r["next_run_at"]) for r in rows]
