"""What ``migrate`` would do to this database: adopt, create or refuse, per table — decided before anything changes.

The backend's ``cron_jobs`` and ``cron_job_results`` may already exist, used by its other cron jobs.
They are adopted as found (id type, columns, rows, trigger) when the product can live beside them,
and refused with one line naming the table, the column and what was found when it cannot; the
migrations then add only what the product needs (docs: README "Installing into an existing database").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

# Types a cron job's or a ledger row's id may have: the product holds ids as opaque text.
_ID_TYPES = re.compile(r"^(integer|bigint|text|character varying(\(\d+\))?|uuid)$")
_INTEGER = {"smallint", "integer", "bigint"}
_TEXT = re.compile(r"^(text|character varying(\((?P<n>\d+)\))?)$")
_TIMESTAMPS = {"timestamp with time zone", "timestamp without time zone"}

# The backend's cron_jobs columns the product reads or writes: accepted types when they exist.
_CRON_JOB_COLUMNS: Mapping[str, set[str] | re.Pattern[str]] = {
    "job_name": _TEXT,
    "locked": {"boolean"},
    "master_locked": {"boolean"},
    "last_ran_at_date": {"date"},
    "last_ran_at_hour": _INTEGER,
    "last_ran_at_minute": _INTEGER,
    "next_run_at": {"timestamp with time zone"},
    "created_at": _TIMESTAMPS,
}
# What the product's INSERT into cron_jobs names (every other NOT NULL column needs a default).
_CRON_JOB_WRITTEN = {"id", "job_name", "locked", "master_locked", "next_run_at"}

# The ledger's columns: their type when the product adds them; an existing column must have it.
_RESULT_COLUMNS: Mapping[str, set[str] | re.Pattern[str]] = {
    "created_at": _TIMESTAMPS,
    "slot": {"timestamp with time zone"},
    "kpi_alert_id": {"bigint"},
    "organization_id": {"bigint"},
    "status": _TEXT,
    "started_at": {"timestamp with time zone"},
    "finished_at": {"timestamp with time zone"},
    "updated_at": {"timestamp with time zone"},
    "value": {"numeric"},
    "previous_value": {"numeric"},
    "details": {"jsonb"},
    "recipients": {"text[]"},
    "attachment": {"text"},
    "attachment_bytes": {"integer"},
    "delivery": {"text"},
    "message_id": {"text"},
    "error": {"text"},
    "dag_run_id": {"text"},
    "task_instance": {"text"},
    "try_number": {"integer"},
    "attempts": {"integer"},
    "claim_token": {"uuid"},
    "claimed_by": {"text"},
    "lease_expires_at": {"timestamp with time zone"},
    "takeovers": {"integer"},
    "attempt_history": {"jsonb"},
    "message_token": {"uuid"},
}
# What the product's own rows fill (the rest of an adopted table's NOT NULL columns need defaults).
_RESULT_WRITTEN = {"id", "cron_job_id", *_RESULT_COLUMNS}
_LONGEST_STATUS = len("delivery_unknown")

_COLUMNS = """
SELECT a.attname AS name, a.attnotnull AS not_null, a.attnum,
       -- a domain (kpi_cron_job_id) stands for its base type
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END AS type,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# A unique, non-partial index on exactly this column (a primary key included): what a foreign key needs.
_UNIQUE_ON = """
SELECT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = to_regclass(%(table)s) AND i.indisunique AND i.indpred IS NULL
      AND i.indnatts = 1 AND i.indkey[0] = %(attnum)s
) AS unique
"""

_TRIGGERS = """
SELECT t.tgname AS name, coalesce((SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a
                                   WHERE a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr::int2[])), '') AS columns
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE t.tgrelid = to_regclass('cron_jobs') AND p.proname = 'prevent_multiple_updates' AND NOT t.tgisinternal
ORDER BY t.tgname
"""

_KPI_TABLES = ("kpi_alerts", "kpi_schedules", "kpi_thresholds")


class Refused(Exception):
    """The database has a shape the product cannot adopt: one line naming the table, column and finding."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    has_default: bool
    attnum: int


@dataclass
class TableVerdict:
    table: str
    action: str  # create | adopt | keep
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        notes = "; ".join(self.notes)
        return f"{self.table:<17} {self.action:<7} {notes}".rstrip()


def _value(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    """The first column of a catalog query's one row."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else next(iter(row.values()))


def _columns(conn: psycopg.Connection[Any], table: str) -> dict[str, Column]:
    rows = conn.execute(_COLUMNS, {"table": table}).fetchall()
    return {
        r["name"]: Column(r["name"], r["type"], r["not_null"], r["has_default"], r["attnum"]) for r in rows
    }


def _accepts(expected: set[str] | re.Pattern[str], found: str) -> bool:
    return bool(expected.match(found)) if isinstance(expected, re.Pattern) else found in expected


def _check_types(
    table: str, columns: dict[str, Column], expected: Mapping[str, set[str] | re.Pattern[str]]
) -> None:
    for name, accepted in expected.items():
        column = columns.get(name)
        if column is not None and not _accepts(accepted, column.type):
            raise Refused(f"{table}.{name} is {column.type}; the product needs {_describe(accepted)} there")


def _describe(accepted: set[str] | re.Pattern[str]) -> str:
    if accepted is _TEXT:
        return "text or varchar"
    if accepted is _INTEGER:
        return "an integer type"
    return " or ".join(sorted(accepted)) if isinstance(accepted, set) else accepted.pattern


def _check_required(table: str, columns: dict[str, Column], written: set[str]) -> None:
    for column in columns.values():
        if column.not_null and not column.has_default and column.name not in written:
            raise Refused(
                f"{table}.{column.name} is NOT NULL without a default; the product's rows cannot fill it "
                "(give it a default)"
            )


def _id_column(conn: psycopg.Connection[Any], table: str, columns: dict[str, Column]) -> Column:
    column = columns.get("id")
    if column is None:
        raise Refused(f"{table} has no id column; the product needs one to address its rows")
    if not _ID_TYPES.match(column.type):
        raise Refused(
            f"{table}.id is {column.type}; the product adopts integer, bigint, text, varchar or uuid ids"
        )
    return column


def inspect(conn: psycopg.Connection[Any], applied: set[str]) -> list[TableVerdict]:
    """Each table's verdict for this database (``applied``: the migrations it has), or :class:`Refused`.

    Reads the catalog only. A table an applied migration made or adopted is checked again ("keep").
    """
    verdicts = [
        _cron_jobs_verdict(conn),
        *(_kpi_verdict(conn, t) for t in _KPI_TABLES),
        _results_verdict(conn),
    ]
    made_by = ("0001_cron_jobs", *(["0002_kpi_alerts"] * len(_KPI_TABLES)), "0003_cron_job_results")
    for verdict, migration in zip(verdicts, made_by, strict=True):
        if migration in applied:
            verdict.action, verdict.notes = "keep", verdict.notes if verdict.action == "adopt" else []
    return verdicts


def _kpi_verdict(conn: psycopg.Connection[Any], table: str) -> TableVerdict:
    exists = _value(conn, "SELECT to_regclass(%s) IS NOT NULL", [table])
    return TableVerdict(table, "keep" if exists else "create")


def _cron_jobs_verdict(conn: psycopg.Connection[Any]) -> TableVerdict:
    columns = _columns(conn, "cron_jobs")
    if not columns:
        return TableVerdict(
            "cron_jobs",
            "create",
            [
                "id text (the seed's random bigints as text; new ids from kpi_cron_job_id_seq)",
                "trigger prevent_multiple_updates on UPDATE OF last_ran_at_date, last_ran_at_hour",
            ],
        )
    id_column = _id_column(conn, "cron_jobs", columns)
    if not _value(conn, _UNIQUE_ON, {"table": "cron_jobs", "attnum": id_column.attnum}):
        raise Refused(
            "cron_jobs.id has no primary key or unique constraint; kpi_alerts.cron_job_id needs one to reference"
        )
    domain = _value(
        conn,
        "SELECT format_type(typbasetype, typtypmod) FROM pg_type WHERE oid = to_regtype('kpi_cron_job_id')",
    )
    if domain is not None and domain != id_column.type:
        raise Refused(
            f"cron_jobs.id is {id_column.type} but the product's tables were made for {domain} ids "
            "(the column's type changed after installing)"
        )
    _check_types("cron_jobs", columns, _CRON_JOB_COLUMNS)
    _check_required("cron_jobs", columns, _CRON_JOB_WRITTEN)
    notes = [
        f"id {id_column.type}" + ("" if id_column.has_default else " (new ids from kpi_cron_job_id_seq)")
    ]
    added = [name for name in _CRON_JOB_COLUMNS if name not in columns]
    if added:
        notes.append("adds " + ", ".join(added))
    notes.append(_trigger_note(conn))
    names = columns.get("job_name")
    if names is None or not _value(conn, _UNIQUE_ON, {"table": "cron_jobs", "attnum": names.attnum}):
        notes.append("job_name not unique (the product's names are unique by construction)")
    return TableVerdict("cron_jobs", "adopt", notes)


def _trigger_note(conn: psycopg.Connection[Any]) -> str:
    """The backend's triggers as found; whether they let a claim stamp is kpi_stamps_cron_jobs()'s to say."""
    triggers = conn.execute(_TRIGGERS).fetchall()
    if not triggers:
        return (
            "no prevent_multiple_updates trigger: none attached (the ledger's unique slot guards the product)"
        )
    shapes = []
    for t in triggers:
        fires = f"UPDATE OF {t['columns']}" if t["columns"] else "every UPDATE"
        shapes.append(f"trigger {t['name']} on {fires} kept as is")
    return "; ".join(shapes)


NOT_STAMPED = "the product's rows are not stamped: a stamp would freeze them until the next hour"


def _results_verdict(conn: psycopg.Connection[Any]) -> TableVerdict:
    columns = _columns(conn, "cron_job_results")
    if not columns:
        return TableVerdict("cron_job_results", "create", ["the product's ledger (id bigint identity)"])
    id_column = _id_column(conn, "cron_job_results", columns)
    job_id = columns.get("cron_job_id")
    cron_jobs_id = _columns(conn, "cron_jobs").get("id")
    wanted = cron_jobs_id.type if cron_jobs_id else "text"
    if job_id is not None and _family(job_id.type) != _family(wanted):
        raise Refused(f"cron_job_results.cron_job_id is {job_id.type} but cron_jobs.id is {wanted}")
    _check_types("cron_job_results", columns, _RESULT_COLUMNS)
    status = columns.get("status")
    if status is not None:
        match = _TEXT.match(status.type)
        if match and match.group("n") and int(match.group("n")) < _LONGEST_STATUS:
            raise Refused(
                f"cron_job_results.status is {status.type}; the product's statuses need {_LONGEST_STATUS} characters"
            )
    _check_required("cron_job_results", columns, _RESULT_WRITTEN)
    others = _value(conn, "SELECT count(*) FROM cron_job_results")
    added = [name for name in ("cron_job_id", *_RESULT_COLUMNS) if name not in columns]
    notes = [
        f"id {id_column.type}"
        + (
            ""
            if id_column.has_default
            else " without default (the product's rows get ids from kpi_cron_job_results_id_seq)"
        ),
        f"{others} existing row(s) kept",
    ]
    if added:
        notes.append(f"adds {len(added)} nullable column(s)")
    notes.append("CHECKs, retention and views on the product's rows only (kpi_alert_id IS NOT NULL)")
    return TableVerdict("cron_job_results", "adopt", notes)


def _family(sql_type: str) -> str:
    if sql_type in _INTEGER or sql_type == "numeric":
        return "integer"
    return "text" if _TEXT.match(sql_type) else sql_type
