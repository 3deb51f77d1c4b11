"""``AlertsDbHook``: the ``kpi_alerts_db`` Airflow connection (PostgreSQL) opened the way the ledger needs it.

The ledger (:mod:`kpi_alerts.ledger`) is the only code that runs SQL; it is given a connection and
never opens one. Inside Airflow that connection comes from this hook; the command line, which must
work without Airflow's metadata database, opens one from a URL with the same settings (:func:`kpi_alerts.ledger.database.connect`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from airflow.providers.postgres.hooks.postgres import PostgresHook

from kpi_alerts.ledger.database import DB_CONN_ID, configure


class AlertsDbHook(PostgresHook):
    """A :class:`PostgresHook` whose connections are in autocommit mode (so each ``conn.transaction()``
    block is one real, short transaction) and return rows as dicts.

    :param postgres_conn_id: the alerts database connection (``kpi_alerts_db``).
    """

    default_conn_name = DB_CONN_ID
    hook_name = "KPI alerts database"

    def __init__(self, *args: Any, postgres_conn_id: str = DB_CONN_ID, **kwargs: Any) -> None:
        super().__init__(*args, postgres_conn_id=postgres_conn_id, **kwargs)

    def get_conn(self) -> psycopg.Connection[dict[str, Any]]:
        """A psycopg 3 connection: autocommit, dict rows."""
        conn = super().get_conn()
        if not isinstance(conn, psycopg.Connection):  # psycopg2 is not installed; PostgresHook prefers 3
            raise TypeError(f"AlertsDbHook needs psycopg 3, got {type(conn).__module__}")
        return configure(conn)
