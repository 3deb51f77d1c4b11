"""Opening the alerts database the way the ledger needs it: autocommit, rows as dicts.

Inside Airflow the connection comes from :class:`~kpi_alerts.hooks.alerts_db.AlertsDbHook` (the
``kpi_alerts_db`` connection); the command line and the tests open one from a URL with :func:`connect`.
Both apply :func:`configure`, so the ledger sees one kind of connection.

No statement is ever prepared on the server (``prepare_threshold=None``; psycopg prepares a query after
its fifth use by default): behind a transaction pooler (PgBouncer ``pool_mode = transaction``, how most
production PostgreSQL is reached) the next transaction may run on another server connection, where the
prepared statement does not exist. The ledger's statements are short; preparing them saved little.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from kpi_alerts.redaction import redact_url
from kpi_alerts.settings import ALERTS_DB_CONN_ID

DB_CONN_ID = ALERTS_DB_CONN_ID


def configure(conn: psycopg.Connection[Any]) -> psycopg.Connection[dict[str, Any]]:
    """Autocommit, so each ``conn.transaction()`` block is a real, short transaction; dict rows; no
    server-side prepared statements (transaction poolers)."""
    conn.autocommit = True
    conn.row_factory = dict_row
    conn.prepare_threshold = None
    return conn


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[dict[str, Any]]:
    """A psycopg 3 connection to ``url`` returning dict rows, never preparing statements; autocommit
    unless told otherwise."""
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, prepare_threshold=None)


def describe_database_error(exc: psycopg.Error) -> str:
    """A database failure in one line for people (task logs, the CLI, the API): its kind and the server's
    first line, and what to do when the database is read-only. Never a password (URLs are redacted)."""
    lines = str(exc).strip().splitlines()
    first = lines[0][:300] if lines else "no message"
    text = f"the alerts database refused: {type(exc).__name__}: {first}"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        text += (
            " (the database is read-only: a standby, or default_transaction_read_only is on; point "
            f"{DB_CONN_ID} at the primary)"
        )
    return redact_url(text)
