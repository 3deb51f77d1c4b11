"""Ledger retention: finished ``cron_job_results`` rows older than the retention period are deleted.

"Older" compares like with like: ``created_at`` is the database's wall clock (its default, ``now()``),
so the cut-off is the database's ``now()`` minus the retention — never a DAG run's logical time,
which may be far ahead of the wall clock (``airflow dags test kpi_alerts 2027-03-15``) or behind it
(a backfill). Unfinished rows (``claimed``, ``retrying``, ``sending``) and the current run's rows are
never deleted, however old.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.claim_terms import RESUMED, status_list

#: Longer periods keep everything anyway, and the cut-off must stay inside PostgreSQL's timestamps.
MAX_RETENTION_DAYS = 36_600  # 100 years


def prune_results(
    conn: psycopg.Connection[Any], *, retention: timedelta, keep_dag_run_id: str | None = None
) -> int:
    """Delete finished ledger rows created more than ``retention`` ago; return how many.

    :param keep_dag_run_id: the run doing the pruning; its rows are kept whatever their age.
    """
    if not timedelta(0) < retention <= timedelta(days=MAX_RETENTION_DAYS):
        raise AlertValidationError(
            f"the retention period must be more than 0 and at most {MAX_RETENTION_DAYS:,} days (100 years), "
            f"not {retention.days:,} days"
        )
    return conn.execute(
        queries.PRUNE_RESULTS,
        {
            "retention_seconds": retention.total_seconds(),
            "keep_dag_run_id": keep_dag_run_id,
            "unfinished": status_list(RESUMED),  # not finished yet: never pruned
        },
    ).rowcount
