"""Shared test factories: alert specs (what a user asks for) and ledger rows (``cron_job_results``).

Each factory returns a complete, valid object with sensible defaults; a test overrides only what it is
about::

    create_alert(db, report_spec(name="Weekly", schedule={"frequency_interval": "week", "selected_days": [1]}))
    create_alert(db, threshold_spec(threshold={"condition": "LESS_THAN", "threshold_value": 5}))
    ledger_row(db, cron_job_id, status=LedgerStatus.SENT, age=timedelta(days=91))

``schedule`` and ``threshold`` overrides are merged into the defaults (one level deep); any other
keyword (``cube_query``, ``owners``, ``message``...) replaces the top-level field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from kpi_alerts.vocabulary import LedgerStatus

DAILY_ORDERS = {"measures": ["orders.count"]}
_MERGED = ("schedule", "threshold")


def _spec(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    spec = dict(base)
    for key, value in overrides.items():
        if key in _MERGED and isinstance(value, Mapping) and isinstance(spec.get(key), Mapping):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def report_spec(
    name: str = "Daily orders",
    *,
    org: int = 1,
    recipients: list[str] | None = None,
    hour: int = 17,
    minute: int = 5,
    tz: str = "UTC",
    **overrides: Any,
) -> dict[str, Any]:
    """A scheduled report: daily at ``hour:minute`` in ``tz``, CSV attachment, one recipient."""
    return _spec(
        {
            "organization_id": org,
            "alert_name": name,
            "recipients": recipients or [f"cfo@org{org}.example.com"],
            "cube_query": dict(DAILY_ORDERS),
            "schedule": {
                "frequency_interval": "day",
                "schedule_hour": hour,
                "schedule_minute": minute,
                "timezone": tz,
                "attachment_type": "csv",
            },
        },
        overrides,
    )


def threshold_spec(
    name: str = "Orders above 1",
    *,
    org: int = 1,
    recipients: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A threshold alert: ``orders.count > 1`` in UTC, checked every hour."""
    return _spec(
        {
            "organization_id": org,
            "alert_name": name,
            "recipients": recipients or [f"ops@org{org}.example.com"],
            "cube_query": dict(DAILY_ORDERS),
            "threshold": {"condition": "GREATER_THAN", "threshold_value": 1, "timezone": "UTC"},
        },
        overrides,
    )


def _alert_of(db: psycopg.Connection[Any], cron_job_id: str | int) -> int:
    row = db.execute(
        "SELECT id FROM kpi_alerts WHERE cron_job_id = %s::kpi_cron_job_id", [str(cron_job_id)]
    ).fetchone()
    return int(row["id"]) if row else 0


def ledger_row(
    db: psycopg.Connection[Any],
    cron_job_id: str,
    *,
    status: LedgerStatus | str = LedgerStatus.SENT,
    slot: datetime | None = None,
    age: timedelta = timedelta(0),
    dag_run_id: str | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """Insert one ``cron_job_results`` row and return it.

    :param slot: the slot; default: ``age`` before the database's clock (minus a microsecond per row
        already there, so several rows of one job never collide).
    :param age: how long ago the row was created, by the database's clock (retention works on it).
    :param columns: any other column (``error``, ``attempts``, ``details``...), as stored.
    """
    LedgerStatus(status)  # a typo fails here, not as a CHECK violation
    columns.setdefault(
        "kpi_alert_id", _alert_of(db, cron_job_id)
    )  # the product's row (other jobs' have none)
    names = ["cron_job_id", "status", "slot", "created_at", "dag_run_id", *columns]
    values = {
        "cron_job_id": cron_job_id,
        "status": str(status),
        "slot": slot,
        "age": age,
        "dag_run_id": dag_run_id,
        **columns,
    }
    placeholders = [
        "%(cron_job_id)s",
        "%(status)s",
        "coalesce(%(slot)s, now() - %(age)s - make_interval(secs => (SELECT count(*) FROM cron_job_results)"
        " * 0.000001))",
        "now() - %(age)s",
        "%(dag_run_id)s",
        *(f"%({name})s" for name in columns),
    ]
    statement = sql.SQL("INSERT INTO cron_job_results ({}) VALUES ({}) RETURNING *").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(map(sql.SQL, placeholders))
    )
    row = db.execute(statement, values).fetchone()
    assert row is not None
    return dict(row)
