"""The alerts database's URL for the command line and the API server's plugin (which open their own
connection with :func:`kpi_alerts.ledger.database.connect`); tasks use :class:`~kpi_alerts.hooks.alerts_db.AlertsDbHook`."""

from __future__ import annotations

import os

from kpi_alerts.ledger.database import DB_CONN_ID


def resolve_db_url(explicit: str | None = None) -> str:
    """The alerts database URL: ``explicit``, else the ``kpi_alerts_db`` Airflow connection.

    The connection may come from ``AIRFLOW_CONN_KPI_ALERTS_DB`` or any Airflow secrets backend.
    """
    if explicit:
        return explicit
    env_value = os.environ.get("AIRFLOW_CONN_KPI_ALERTS_DB", "")
    if env_value.startswith(("postgres://", "postgresql://")):
        return env_value
    # Lazy: Airflow (seconds to import) only when the connection is not given as a URL.
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(DB_CONN_ID)
    return str(conn.get_uri()).replace("postgres://", "postgresql://", 1)
