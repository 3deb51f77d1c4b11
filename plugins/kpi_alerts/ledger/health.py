"""What in the alerts database needs a person: the ledger and schedule questions ``doctor`` asks.

- claims past their lease: a ledger row still ``claimed`` / ``sending`` whose lease has expired — its
  worker died or hangs, and no later run has taken it over yet (is the DAG running?);
- alerts overdue beyond the misfire window: active, unpaused alerts whose next slot is older than the
  window — their slots will be recorded as ``missed`` (is the scheduler running? the DAG paused?);
- failures in the last 24 hours by reason: ``failed`` and ``delivery_unknown`` rows, grouped by the
  first line of their error with numbers folded, so one broken Cube or SMTP server is one line.

Plain SQL, parameterised; no Airflow imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from kpi_alerts.ledger.claim_terms import ACTIVE, status_list
from kpi_alerts.vocabulary import LedgerStatus

#: What ``doctor`` counts as a failure of the last 24 hours.
FAILURES = frozenset({LedgerStatus.FAILED, LedgerStatus.DELIVERY_UNKNOWN})

STALE_CLAIMS = """
SELECT id AS result_id, kpi_alert_id AS alert_id, slot, status, claimed_by, lease_expires_at, dag_run_id,
       task_instance
FROM cron_job_results
WHERE kpi_alert_id IS NOT NULL AND status = ANY(%(active)s::text[]) AND lease_expires_at < %(now)s
ORDER BY lease_expires_at
LIMIT %(limit)s
"""

OVERDUE_ALERTS = """
SELECT ka.id AS alert_id, ka.alert_name, cj.next_run_at
FROM cron_jobs cj
JOIN kpi_alerts ka ON ka.cron_job_id = cj.id
WHERE cj.next_run_at < %(oldest)s AND NOT cj.master_locked AND ka.is_active
ORDER BY cj.next_run_at
LIMIT %(limit)s
"""

RECENT_FAILURES = """
SELECT status,
       left(regexp_replace(split_part(coalesce(error, '(no error recorded)'), E'\\n', 1), '[0-9]+', 'N', 'g'),
            200) AS reason,
       count(*) AS n, max(coalesce(finished_at, updated_at)) AS last_at,
       (array_agg(DISTINCT kpi_alert_id))[1:5] AS alert_ids
FROM cron_job_results
WHERE kpi_alert_id IS NOT NULL AND status = ANY(%(failures)s::text[])
  AND coalesce(finished_at, updated_at) >= %(since)s
GROUP BY status, reason
ORDER BY n DESC, reason
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class StaleClaim:
    result_id: int
    alert_id: int | None
    slot: datetime
    status: str
    claimed_by: str | None
    lease_expires_at: datetime
    dag_run_id: str | None
    task_instance: str | None


@dataclass(frozen=True)
class OverdueAlert:
    alert_id: int
    alert_name: str
    next_run_at: datetime


@dataclass(frozen=True)
class FailureGroup:
    status: str
    reason: str
    count: int
    last_at: datetime
    alert_ids: tuple[int, ...]


def stale_claims(conn: psycopg.Connection[Any], *, now: datetime, limit: int = 100) -> list[StaleClaim]:
    rows = conn.execute(STALE_CLAIMS, {"now": now, "limit": limit, "active": status_list(ACTIVE)}).fetchall()
    return [StaleClaim(**r) for r in rows]


def overdue_alerts(
    conn: psycopg.Connection[Any], *, now: datetime, misfire_window: timedelta, limit: int = 100
) -> list[OverdueAlert]:
    rows = conn.execute(OVERDUE_ALERTS, {"oldest": now - misfire_window, "limit": limit}).fetchall()
    return [OverdueAlert(**r) for r in rows]


def recent_failures(
    conn: psycopg.Connection[Any], *, now: datetime, window: timedelta = timedelta(hours=24), limit: int = 50
) -> list[FailureGroup]:
    params = {"since": now - window, "limit": limit, "failures": status_list(FAILURES)}
    rows = conn.execute(RECENT_FAILURES, params).fetchall()
    return [
        FailureGroup(r["status"], r["reason"], r["n"], r["last_at"], tuple(a for a in r["alert_ids"] if a))
        for r in rows
    ]
