"""Shared by the fault tests: one daily report due at LOGICAL_TIME, and the DAG with fast retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from kpi_alerts.ledger.alert_store import create_alert
from tests.factories import report_spec

LOGICAL_TIME = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)


def due_report(db: psycopg.Connection[Any], name: str, recipients: list[str], org: int = 1) -> int:
    """A daily CSV report whose slot is LOGICAL_TIME."""
    spec = report_spec(
        name, org=org, recipients=recipients, hour=LOGICAL_TIME.hour, minute=LOGICAL_TIME.minute
    )
    return create_alert(db, spec, now=LOGICAL_TIME - timedelta(minutes=4)).alert_id


def ledger(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT r.*, ka.alert_name FROM cron_job_results r JOIN kpi_alerts ka ON ka.cron_job_id = r.cron_job_id "
        "ORDER BY ka.id, r.slot"
    ).fetchall()


@pytest.fixture
def fast_retries(kpi_dag: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real DAG, its per-alert task keeping its retries but waiting 1 s between tries (not minutes)."""
    task = kpi_dag.task_dict["process_alert"]
    monkeypatch.setattr(task, "retry_delay", timedelta(seconds=1))
    monkeypatch.setattr(task, "retry_exponential_backoff", False)
    return kpi_dag
