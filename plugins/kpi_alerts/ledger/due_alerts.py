"""Which alerts are due at a DAG run's logical time (never the wall clock: runs are reproducible)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.claim_terms import status_list
from kpi_alerts.ledger.reattempts import REATTEMPTED
from kpi_alerts.redaction import redact_url


@dataclass(frozen=True)
class DueAlert:
    alert_id: int
    alert_name: str
    cron_job_id: str
    slot: datetime


#: First sight reads and updates this many alerts per round trip (10,000 new rows: a few pages).
FIRST_SIGHT_PAGE = 2_000
#: How long an alert that a step of the tick could not read waits before it is tried (and fails) again.
UNUSABLE_RECHECK = timedelta(hours=24)


def initialise_first_runs(
    conn: psycopg.Connection[Any],
    *,
    logical_time: datetime,
    oldest_slot: datetime,
    limit: int = 100_000,
    page: int = FIRST_SIGHT_PAGE,
) -> int:
    """Give alerts created by plain SQL their first slot: the earliest one at or after ``oldest_slot`` (the
    run's :meth:`~kpi_alerts.ledger.claim_terms.ClaimSettings.oldest_sendable_slot`: a new alert has nothing missed).

    Set-based: one query reads a page of uninitialised alerts (their timing columns only, never the JSON
    ones), the first slots are computed here, and one ``UPDATE ... FROM unnest(...)`` stores the page.
    Each row is isolated: an alert whose schedule is invalid, or whose row cannot be read at all, is made
    due now, so that its run records the reason (and parks it, see :func:`park_unusable_alert`).
    """
    initialised, after = 0, None
    while initialised < limit:
        rows = conn.execute(
            queries.UNINITIALISED_ALERT_ROWS, {"after": after, "limit": min(page, limit - initialised)}
        ).fetchall()
        if not rows:
            break
        ids, firsts = [], []
        for row in rows:
            try:
                first = AlertDefinition.from_row(row).first_slot_at_or_after(oldest_slot)
            except Exception:  # invalid schedule, or a value no code expected: its run says which
                first = logical_time
            ids.append(row["cron_job_id"])
            firsts.append(first)
        with conn.transaction():
            conn.execute(queries.SET_FIRST_RUNS, {"cron_job_ids": ids, "next_runs": firsts})
        initialised += len(rows)
        after = rows[-1]["cron_job_id"]
        if len(rows) < page:
            break
    return initialised


def park_unusable_alert(
    conn: psycopg.Connection[Any],
    *,
    alert_id: int,
    cron_job_id: str,
    reason: str,
    logical_time: datetime,
    now: datetime,
    dag_run_id: str | None,
) -> bool:
    """An alert that a step of the tick could not even read: record its due slot as ``failed`` with the
    reason (under this DAG run, whose summary then shows red) and park it for :data:`UNUSABLE_RECHECK`
    — so it fails once a day until someone fixes the row, never on every tick, and the other alerts go
    on. Returns whether a ledger row was written (False: its slot was already recorded, or a claim holds
    the row)."""

    reason = redact_url(reason)
    reason = reason if len(reason) <= 500 else reason[:499] + "\u2026"
    with conn.transaction():
        row = conn.execute(
            queries.RECORD_UNUSABLE_SLOT,
            {
                "cron_job_id": cron_job_id,
                "alert_id": alert_id,
                "logical_time": logical_time,
                "now": now,
                "error": f"alert could not be read: {reason}",
                "details": json.dumps({"reason": "unusable", "parked_for_hours": 24}),
                "dag_run_id": dag_run_id,
                "park_until": logical_time + UNUSABLE_RECHECK,
            },
        ).fetchone()
    return bool(row and row["recorded"])


def park_inactive_alerts(conn: psycopg.Connection[Any], *, logical_time: datetime) -> int:
    """Take due-but-inactive alerts out of the due index; they are re-initialised when reactivated."""
    return conn.execute(queries.PARK_INACTIVE_ALERTS, {"logical_time": logical_time}).rowcount


def list_due_alerts(conn: psycopg.Connection[Any], *, logical_time: datetime, limit: int) -> list[DueAlert]:
    rows = conn.execute(queries.DUE_ALERTS, {"logical_time": logical_time, "limit": limit}).fetchall()
    return [DueAlert(r["alert_id"], r["alert_name"], r["cron_job_id"], r["next_run_at"]) for r in rows]


def list_unsent_in_run(conn: psycopg.Connection[Any], *, dag_run_id: str, limit: int) -> list[DueAlert]:
    """The alerts whose slot in this DAG run was left unsent (failed, or unfinished): what a later try of
    the run's due listing — the whole run was cleared — lists again, so that their task instances re-attempt
    those slots (:func:`kpi_alerts.ledger.claims.claim_slot`; the statuses:
    :data:`~kpi_alerts.ledger.reattempts.REATTEMPTED`). A first try never needs it."""
    params = {"dag_run_id": dag_run_id, "limit": limit, "reattempted": status_list(REATTEMPTED)}
    rows = conn.execute(queries.UNSENT_ALERTS_OF_RUN, params).fetchall()
    return [DueAlert(r["alert_id"], r["alert_name"], r["cron_job_id"], r["slot"]) for r in rows]


def close_abandoned_waits(conn: psycopg.Connection[Any], *, now: datetime) -> int:
    """Record ``skipped`` the slots that were waiting for fresh data when their alert moved on without
    them (paused, changed to another schedule, deleted): a waiting slot keeps its alert's ``next_run_at``
    on it, so a slot whose alert points elsewhere will never be claimed again. Uses the partial index on
    waiting rows (migration 0015): a tick without waiting slots reads nothing."""
    return conn.execute(queries.CLOSE_ABANDONED_WAITS, {"now": now}).rowcount
