"""Reaching the alerts database: a URL from the CLI, or the ``kpi_alerts_db`` Airflow connection."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg.rows import dict_row

DB_CONN_ID = "kpi_alerts_db"


def resolve_db_url(explicit: str | None = None) -> str:
    """The alerts database URL: ``explicit``, else the ``kpi_alerts_db`` Airflow connection.

    The connection may come from ``AIRFLOW_CONN_KPI_ALERTS_DB`` or any Airflow secrets backend;
    Airflow is imported only when it is needed.
    """
    if explicit:
        return explicit
    env_value = os.environ.get("AIRFLOW_CONN_KPI_ALERTS_DB", "")
    if env_value.startswith(("postgres://", "postgresql://")):
        return env_value
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(DB_CONN_ID)
    return str(conn.get_uri()).replace("postgres://", "postgresql://", 1)


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[dict[str, Any]]:
    """A psycopg 3 connection returning dict rows; autocommit, so each ``conn.transaction()`` is a real one."""
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row)
