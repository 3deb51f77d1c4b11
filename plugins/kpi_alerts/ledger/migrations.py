"""Schema migrations: the plain-SQL files in ``include/sql/migrations``, all or nothing.

``migrate`` takes a transaction-scoped advisory lock (two migrates at once run one after the other),
inspects the database (:mod:`kpi_alerts.ledger.installation`: a shape it cannot adopt is refused
before anything changes), applies every pending file in one transaction, then checks — inside that
transaction, undone afterwards — that the product's rows are accepted (a constraint of the backend's
that refuses them is found here, not at the first tick). Any failure rolls everything back.

Applied files are recorded in ``_yoyo_migration`` (the table of yoyo-migrations, which applied them
in earlier versions), by file name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from kpi_alerts.ledger import queries
from kpi_alerts.ledger.installation import NOT_STAMPED, Refused, TableVerdict, inspect
from kpi_alerts.paths import MIGRATIONS_DIR
from kpi_alerts.vocabulary import LedgerStatus

_LOCK_KEY = 7_341_190_221  # pg_advisory_xact_lock: one migrate at a time per database

_RECORD_TABLE = """
CREATE TABLE IF NOT EXISTS _yoyo_migration (
    migration_hash varchar(64) PRIMARY KEY, migration_id varchar(255), applied_at_utc timestamp
)
"""

# The product's rows, one of each kind, written the way the product writes them, then undone.
_PROBE = """
WITH job AS (
    INSERT INTO cron_jobs (id, job_name, locked, master_locked, next_run_at)
    VALUES (kpi_new_cron_job_id(), 'kpi_alerts_migrate_probe', false, false, now())
    RETURNING id
), alert AS (
    -- an id of its own: the probe takes no value from the sequence the alerts' ids come from
    INSERT INTO kpi_alerts (id, cron_job_id, organization_id, alert_type, alert_name, recipients)
    SELECT -1, id, 1, 'schedule', 'migrate probe', ARRAY['probe@example.com'] FROM job
    RETURNING id, cron_job_id
)
INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at, updated_at)
SELECT alert.cron_job_id, alert.id, 1, now() - make_interval(hours => s.n::int), s.status, now(), now()
FROM alert, unnest(%(statuses)s::text[]) WITH ORDINALITY AS s(status, n)
RETURNING cron_job_id
"""

_PROBE_FINISH = "UPDATE cron_jobs SET locked = false, next_run_at = now() WHERE id = %(id)s::kpi_cron_job_id"


@dataclass(frozen=True)
class Plan:
    """What migrate does (or would do) to one database."""

    tables: list[TableVerdict]
    pending: list[str]

    def lines(self) -> list[str]:
        pending = ", ".join(self.pending) if self.pending else "none (schema is up to date)"
        return [t.line() for t in self.tables] + [f"pending migrations: {pending}"]


class MigrationRefused(Exception):
    """migrate changed nothing: the reason in one line."""


def _files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


def _applied(conn: psycopg.Connection[Any]) -> set[str]:
    if not conn.execute("SELECT 1 FROM pg_class WHERE oid = to_regclass('_yoyo_migration')").fetchall():
        return set()
    return {r["migration_id"] for r in conn.execute("SELECT migration_id FROM _yoyo_migration")}


def _plan(conn: psycopg.Connection[Any]) -> Plan:
    applied = _applied(conn)
    try:
        tables = inspect(conn, applied)
    except Refused as refused:
        raise MigrationRefused(str(refused)) from None
    return Plan(tables, [f.stem for f in _files() if f.stem not in applied])


def check(db_url: str) -> Plan:
    """What migrate would do, changing nothing: the plan, after a trial run of it that is rolled back.

    :raises MigrationRefused: migrate would refuse (the shape, or a step or the product's rows failing).
    """
    return _run(db_url, trial=True)


def migrate(db_url: str) -> list[str]:
    """Apply the pending migrations in one transaction; return their ids (empty when up to date).

    :raises MigrationRefused: nothing was changed; the message says which table and column, and why.
    """
    return _run(db_url, trial=False).pending


def _run(db_url: str, *, trial: bool) -> Plan:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        try:
            with conn.transaction(force_rollback=trial):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
                plan = _plan(conn)
                if plan.pending:
                    conn.execute(_RECORD_TABLE)
                    for path in _files():
                        if path.stem in plan.pending:
                            _apply(conn, path)
                    _probe(conn)
                _note_stamping(conn, plan)
        except psycopg.Error as error:
            raise MigrationRefused(_describe(error)) from None
        return plan


def _apply(conn: psycopg.Connection[Any], path: Path) -> None:
    try:
        conn.execute(path.read_text().encode())  # a file of ours, no parameters
    except psycopg.Error as error:
        raise MigrationRefused(f"{path.name}: {_describe(error)}") from None
    conn.execute(
        "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) VALUES (%s, %s, %s)",
        [hashlib.sha256(path.stem.encode()).hexdigest(), path.stem, datetime.now(UTC).replace(tzinfo=None)],
    )


def _probe(conn: psycopg.Connection[Any]) -> None:
    try:
        with conn.transaction(force_rollback=True):
            rows = conn.execute(_PROBE, {"statuses": [s.value for s in LedgerStatus]}).fetchall()
            now = datetime.now(UTC)
            stamp = {"slot": now, "date": now.date(), "hour": now.hour, "minute": now.minute}
            conn.execute(queries.MARK_CRON_JOB_CLAIMED, {"cron_job_id": str(rows[0]["cron_job_id"]), **stamp})
            conn.execute(_PROBE_FINISH, {"id": str(rows[0]["cron_job_id"])})
    except psycopg.Error as error:
        raise MigrationRefused(f"the product's rows would be refused: {_describe(error)}") from None


def _note_stamping(conn: psycopg.Connection[Any], plan: Plan) -> None:
    """Say, for an adopted cron_jobs, when the backend's trigger leaves the product's rows unstamped: asked of
    kpi_stamps_cron_jobs(), the function the claims ask, after the (trial) run created it."""
    adopted = next((t for t in plan.tables if t.table == "cron_jobs" and t.action == "adopt"), None)
    if adopted is None:
        return
    row = conn.execute("SELECT kpi_stamps_cron_jobs() AS stamps").fetchone()
    if row is not None and not row["stamps"]:
        adopted.notes.append(NOT_STAMPED)


def _describe(error: psycopg.Error) -> str:
    """PostgreSQL's own words, in one line, with the table / column / constraint it names."""
    diag = error.diag
    message = diag.message_primary or (str(error).splitlines() or [type(error).__name__])[0]
    where = ".".join(part for part in (diag.table_name, diag.column_name) if part)
    if diag.constraint_name:
        where = f"{where} ({diag.constraint_name})".strip()
    return f"{where}: {message}" if where else message


def pending_migrations(db_url: str) -> list[str]:
    with psycopg.connect(db_url, row_factory=dict_row) as conn, conn.transaction(force_rollback=True):
        applied = _applied(conn)
    return [f.stem for f in _files() if f.stem not in applied]
