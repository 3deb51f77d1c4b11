"""Installing into the backend's own database: cron_jobs and cron_job_results already there, used by its
other cron jobs, alerts made by the seed's own SQL (issue 21).

Each shape is built by plain SQL on a real PostgreSQL before ``migrate``; then: migrate twice, the seed's
three INSERTs, one due tick of the real DAG sends exactly one message, the other job still records its
'success' rows and its trigger still refuses a second stamp in the same hour, and its earlier rows are
unchanged after the tick and a prune. Shapes the product cannot adopt are refused with one line and
the database is left exactly as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.mail import MailCatcher
from devstack.postgres import PostgresServer, drop_database, ensure_database
from kpi_alerts.ledger.migrations import MigrationRefused, check, migrate
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.services]

LOGICAL_TIME = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)

# The backend's guard, as the seed documents it.
SEED_TRIGGER_FUNCTION = """
CREATE FUNCTION prevent_multiple_updates() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.last_ran_at_date = OLD.last_ran_at_date AND
       NEW.last_ran_at_hour = OLD.last_ran_at_hour THEN
        RAISE EXCEPTION 'This cron job has already been executed in the current hour';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""
EVERY_UPDATE = (
    "CREATE TRIGGER guard BEFORE UPDATE ON cron_jobs FOR EACH ROW EXECUTE FUNCTION prevent_multiple_updates()"
)
RUN_TIME_COLUMNS = (
    "CREATE TRIGGER guard BEFORE UPDATE OF last_ran_at_date, last_ran_at_hour ON cron_jobs "
    "FOR EACH ROW EXECUTE FUNCTION prevent_multiple_updates()"
)


@dataclass(frozen=True)
class Shape:
    """A backend database as found: its tables, its other job, how the seed's step 1 writes an id there."""

    name: str
    ddl: list[str]
    other_job_id: str  # the other job's cron_jobs id (SQL literal)
    other_result_id: (
        str | None
    )  # how the other job gives its result rows an id, when the table has no default
    seed_id: str  # the seed's step 1 id expression for this id type


NEXT_ID_BY_HAND = "(SELECT coalesce(max(id), 0) + 1 FROM cron_job_results)"  # a backend without an id default
SEED_TEXT_ID = "(floor(random() * 9000000000) + 1000000000)::bigint::text"  # the seed's own, verbatim

SHAPES = [
    Shape(
        "varchar-id-every-update-trigger",
        [
            "CREATE TABLE cron_jobs (id varchar(255) PRIMARY KEY, job_name varchar(255) NOT NULL UNIQUE, "
            "locked boolean NOT NULL DEFAULT false, master_locked boolean NOT NULL DEFAULT false, "
            "last_ran_at_date date, last_ran_at_hour integer, last_ran_at_minute integer)",
            SEED_TRIGGER_FUNCTION,
            EVERY_UPDATE,
            "CREATE TABLE cron_job_results (id serial PRIMARY KEY, cron_job_id varchar(255) REFERENCES cron_jobs (id), "
            "status varchar(50) NOT NULL, metadata jsonb, "
            "created_at timestamp NOT NULL DEFAULT now())",
            "INSERT INTO cron_jobs (id, job_name) VALUES ('5550001111', 'nightly_cleanup')",
            "INSERT INTO cron_job_results (cron_job_id, status, metadata, created_at) VALUES "
            "('5550001111', 'success', '{\"deleted\": 12}', now() - interval '400 days'), "
            "('5550001111', 'failure', '{\"error\": \"disk\"}', now() - interval '200 days')",
        ],
        "'5550001111'",
        None,
        SEED_TEXT_ID,
    ),
    Shape(
        "bigint-id-results-without-id-default",
        [
            "CREATE TABLE cron_jobs (id bigint PRIMARY KEY, job_name text NOT NULL UNIQUE, locked boolean, "
            "master_locked boolean, last_ran_at_date date, last_ran_at_hour smallint, last_ran_at_minute smallint)",
            SEED_TRIGGER_FUNCTION,
            RUN_TIME_COLUMNS,
            "CREATE TABLE cron_job_results (id bigint PRIMARY KEY, cron_job_id bigint, status text, "
            "metadata jsonb NOT NULL DEFAULT '{}', created_at timestamptz DEFAULT now())",
            "INSERT INTO cron_jobs VALUES (42, 'nightly_cleanup', false, false, NULL, NULL, NULL)",
            "INSERT INTO cron_job_results (id, cron_job_id, status, created_at) VALUES "
            "(1, 42, 'success', now() - interval '400 days'), (2, 42, 'failure', now() - interval '1 day')",
        ],
        "42",
        NEXT_ID_BY_HAND,
        "(floor(random() * 9000000000) + 1000000000)::bigint",
    ),
    Shape(
        "integer-id-names-not-unique",
        [
            "CREATE TABLE cron_jobs (id serial PRIMARY KEY, job_name text, locked boolean DEFAULT false, "
            "master_locked boolean DEFAULT false, last_ran_at_date date, last_ran_at_hour integer, "
            "last_ran_at_minute integer)",
            SEED_TRIGGER_FUNCTION,
            EVERY_UPDATE,
            "CREATE TABLE cron_job_results (id integer PRIMARY KEY, cron_job_id integer REFERENCES cron_jobs (id), "
            "status varchar(20), metadata jsonb, created_at timestamptz DEFAULT now())",
            "INSERT INTO cron_jobs (job_name) VALUES ('nightly_cleanup'), ('nightly_cleanup')",
            "INSERT INTO cron_job_results (id, cron_job_id, status, metadata, created_at) VALUES "
            "(7, 1, 'success', '{}', now() - interval '400 days')",
        ],
        "1",
        NEXT_ID_BY_HAND,
        "(floor(random() * 90000) + 10000)::integer",
    ),
    Shape("fresh-database", [], "", None, SEED_TEXT_ID),
]


def schema_dump(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The catalog of the public schema (tables, columns, constraints, indexes, triggers, functions, types)."""
    return [
        *conn.execute(
            "SELECT table_name, column_name, data_type, column_default, is_nullable, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall(),
        *conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall(),
        *conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall(),
        *conn.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
        ).fetchall(),
        *conn.execute(
            "SELECT proname, pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
            "ORDER BY 1"
        ).fetchall(),
        *conn.execute(
            "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall(),
        *conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall(),
    ]


@pytest.fixture
def shape_db(pg: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"kpi_alerts_shape_{os.getpid()}_{request.node.name.split('[')[-1].rstrip(']').replace('-', '_')}"[
        :63
    ]
    url = ensure_database(pg, name, recreate=True)
    yield url
    drop_database(pg, name)


def build(url: str, ddl: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in ddl:
            conn.execute(statement.encode())


def cli_migrate(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kpi_alerts", "migrate", "--db", url, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}"},
        timeout=120,
    )


def seed_alert(conn: psycopg.Connection[Any], shape: Shape) -> str:
    """The seed's "Creating a New Alert", three INSERTs (step 1 verbatim where the id column takes text)."""
    cron_job_id = conn.execute(
        f"INSERT INTO cron_jobs (id, job_name, locked, master_locked) "
        f"VALUES ({shape.seed_id}, 'kpi_alert_123', false, false) RETURNING id"
    ).fetchone()["id"]
    alert_id = conn.execute(
        "INSERT INTO kpi_alerts (cron_job_id, organization_id, dashboard_id, alert_type, alert_name, recipients, "
        "cube_query) VALUES (%s, 1, 1, 'schedule', 'Seed-made daily orders', ARRAY['seed@org1.example.com'], "
        '\'{"measures": ["orders.count"]}\') RETURNING id',
        [str(cron_job_id)],
    ).fetchone()["id"]
    conn.execute(
        "INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_hour, schedule_minute, timezone, "
        "attachment_type) VALUES (%s, 'day', 17, 0, 'UTC', 'csv')",
        [alert_id],
    )
    return str(cron_job_id)


def other_jobs_rows(conn: psycopg.Connection[Any]) -> list[str]:
    return [
        r["row"]
        for r in conn.execute(
            "SELECT row_to_json(r)::text AS row FROM cron_job_results r WHERE kpi_alert_id IS NULL ORDER BY id"
        )
    ]


def other_job_runs(conn: psycopg.Connection[Any], shape: Shape, hour: int, *, during: Any = None) -> None:
    """The backend's cronJobCanRunSafely: lock the row, stamp the hour, insert a 'success' result.

    :param during: called while the row is locked (a tick of the product's, say).
    """
    with conn.transaction():
        conn.execute(f"SELECT id FROM cron_jobs WHERE id = {shape.other_job_id} FOR UPDATE")
        if during is not None:
            during()
        conn.execute(
            f"UPDATE cron_jobs SET last_ran_at_date = current_date, last_ran_at_hour = {hour} "
            f"WHERE id = {shape.other_job_id}"
        )
        columns, values = ("cron_job_id, status", f"{shape.other_job_id}, 'success'")
        if shape.other_result_id:
            columns, values = f"id, {columns}", f"{shape.other_result_id}, {values}"
        conn.execute(f"INSERT INTO cron_job_results ({columns}) VALUES ({values})")


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_adopts_the_backend_database_and_leaves_its_other_jobs_unharmed(
    shape: Shape,
    shape_db: str,
    kpi_dag: Any,
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build(shape_db, shape.ddl)

    checked = cli_migrate(shape_db, "--check")
    assert checked.returncode == 0, checked.stderr
    print(f"\n--- migrate --check on {shape.name}:\n{checked.stdout}")
    assert ("adopt" if shape.ddl else "create") in checked.stdout.splitlines()[0]
    first = cli_migrate(shape_db)
    assert first.returncode == 0 and first.stdout.startswith("applied "), first.stderr
    assert cli_migrate(shape_db).stdout.strip() == "schema is up to date"

    with psycopg.connect(shape_db, autocommit=True, row_factory=dict_row) as conn:
        cron_job_id = seed_alert(conn, shape)
        before = other_jobs_rows(conn)
        # a statement that waited on the other job's lock would fail the tick instead of hanging the test
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET lock_timeout = '5s'")

    monkeypatch.setenv("AIRFLOW_CONN_KPI_ALERTS_DB", shape_db)
    with psycopg.connect(shape_db, autocommit=True, row_factory=dict_row) as backend:
        # the other job runs while the tick does: it holds its row locked throughout, the tick never waits on it
        if shape.other_job_id:
            other_job_runs(backend, shape, hour=2, during=lambda: kpi_dag.test(logical_date=LOGICAL_TIME))
        else:
            kpi_dag.test(logical_date=LOGICAL_TIME)

    messages = mailbox.messages()
    assert [m["To"] for m in messages] == ["seed@org1.example.com"]
    assert "Seed-made daily orders" in messages[0]["Subject"]
    print(f"--- received on {shape.name}: To: {messages[0]['To']} | Subject: {messages[0]['Subject']}")
    with psycopg.connect(shape_db, autocommit=True, row_factory=dict_row) as conn:
        ledger = conn.execute(
            "SELECT cron_job_id::text AS cron_job_id, status FROM cron_job_results WHERE kpi_alert_id IS NOT NULL"
        ).fetchall()
        assert ledger == [{"cron_job_id": cron_job_id, "status": "sent"}]

        if shape.other_job_id:
            # the product's new ids never take one the backend's own default hands out next
            conn.execute("SELECT kpi_new_cron_job_id()")
            if "serial" in shape.ddl[0]:
                conn.execute("INSERT INTO cron_jobs (job_name) VALUES ('weekly_report')")
            other_job_runs(conn, shape, hour=3)
            with pytest.raises(
                psycopg.errors.RaiseException, match="already been executed in the current hour"
            ):
                other_job_runs(conn, shape, hour=3)
            assert (
                conn.execute(
                    "SELECT count(*) AS n FROM cron_job_results WHERE status = 'success' AND kpi_alert_id IS NULL"
                ).fetchone()["n"]
                == len([r for r in before if '"success"' in r]) + 2
            )

    pruned = subprocess.run(
        [sys.executable, "-m", "kpi_alerts", "prune-results", "--days", "1", "--db", shape_db],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}"},
        timeout=120,
    )
    assert pruned.returncode == 0, pruned.stderr
    with psycopg.connect(shape_db, autocommit=True, row_factory=dict_row) as conn:
        after = other_jobs_rows(conn)
        assert after[: len(before)] == before  # byte for byte, the 400-day-old ones included
        # a second tick an hour later: the same alert is not due again, nothing is sent twice
    kpi_dag.test(logical_date=LOGICAL_TIME.replace(hour=18))
    assert len(mailbox.messages()) == 1


@pytest.mark.parametrize(
    ("ddl", "reason"),
    [
        pytest.param(
            [
                "CREATE TABLE cron_jobs (id bigint, job_name text, locked boolean, master_locked boolean, "
                "last_ran_at_date date, last_ran_at_hour integer, last_ran_at_minute integer)"
            ],
            "cron_jobs.id has no primary key or unique constraint",
            id="cron-jobs-without-primary-key",
        ),
        pytest.param(
            [
                "CREATE TABLE cron_jobs (id text PRIMARY KEY, job_name text, locked boolean, master_locked boolean, "
                "last_ran_at_date date, last_ran_at_hour text, last_ran_at_minute text)"
            ],
            "cron_jobs.last_ran_at_hour is text; the product needs an integer type there",
            id="hour-as-text",
        ),
        pytest.param(
            [
                "CREATE TABLE cron_jobs (id text PRIMARY KEY, job_name text)",
                "CREATE TABLE cron_job_results (id bigserial PRIMARY KEY, cron_job_id bigint, status text)",
            ],
            "cron_job_results.cron_job_id is bigint but cron_jobs.id is text",
            id="result-job-id-of-another-type",
        ),
        pytest.param(
            [
                "CREATE TABLE cron_jobs (id text PRIMARY KEY, job_name text)",
                "CREATE TABLE cron_job_results (id bigserial PRIMARY KEY, cron_job_id text, "
                "status text CHECK (status IN ('success', 'failure')))",
            ],
            "the product's rows would be refused: cron_job_results (cron_job_results_status_check)",
            id="results-check-refusing-the-product-statuses",
        ),
        pytest.param(
            ["CREATE TABLE cron_jobs (id text PRIMARY KEY, job_name text, team text NOT NULL)"],
            "cron_jobs.team is NOT NULL without a default",
            id="required-column-the-product-cannot-fill",
        ),
    ],
)
def test_a_shape_it_cannot_adopt_is_refused_in_one_line_and_nothing_changes(
    shape_db: str, ddl: list[str], reason: str
) -> None:
    build(shape_db, ddl)
    with psycopg.connect(shape_db) as conn:
        before = schema_dump(conn)

    checked = cli_migrate(shape_db, "--check")
    refused = cli_migrate(shape_db)

    for result in (checked, refused):
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("refused, nothing changed: ") and reason in result.stderr, (
            result.stderr
        )
        assert "Traceback" not in result.stderr
    with psycopg.connect(shape_db) as conn:
        assert schema_dump(conn) == before


def test_check_says_what_it_would_do_and_changes_nothing(shape_db: str) -> None:
    build(shape_db, SHAPES[0].ddl)
    with psycopg.connect(shape_db) as conn:
        before = schema_dump(conn)
    plan = check(shape_db)
    assert [(t.table, t.action) for t in plan.tables] == [
        ("cron_jobs", "adopt"),
        ("kpi_alerts", "create"),
        ("kpi_schedules", "create"),
        ("kpi_thresholds", "create"),
        ("cron_job_results", "adopt"),
    ]
    assert "every UPDATE kept as is" in plan.tables[0].line()
    assert "2 existing row(s) kept" in plan.tables[-1].line()
    assert plan.pending[0] == "0001_cron_jobs"
    with psycopg.connect(shape_db) as conn:
        assert schema_dump(conn) == before


def test_a_failing_step_rolls_every_step_back(shape_db: str) -> None:
    """A failure after the first migrations (here: the backend's own CHECK meets the product's rows) leaves
    no half-migrated database: no migration recorded, no trigger re-attached, no column added."""
    build(
        shape_db,
        [
            "CREATE TABLE cron_jobs (id text PRIMARY KEY, job_name text)",
            "CREATE TABLE cron_job_results (id bigserial PRIMARY KEY, cron_job_id text, "
            "status text CHECK (status <> 'sent'))",
        ],
    )
    with psycopg.connect(shape_db) as conn:
        before = schema_dump(conn)
    with pytest.raises(MigrationRefused, match="cron_job_results_status_check"):
        migrate(shape_db)
    with psycopg.connect(shape_db) as conn:
        assert schema_dump(conn) == before


def test_fresh_install_takes_the_seed_sql_verbatim_and_gives_ids_to_inserts_naming_none(
    shape_db: str,
) -> None:
    migrate(shape_db)
    with psycopg.connect(shape_db, autocommit=True, row_factory=dict_row) as conn:
        seeded = seed_alert(conn, SHAPES[-1])
        assert seeded.isdigit() and len(seeded) == 10
        unnamed = conn.execute("INSERT INTO cron_jobs (job_name) VALUES ('nightly') RETURNING id").fetchone()[
            "id"
        ]
        assert unnamed and unnamed != seeded
        types = conn.execute(
            "SELECT table_name, format_type(a.atttypid, a.atttypmod) AS type FROM information_schema.columns c "
            "JOIN pg_attribute a ON a.attrelid = c.table_name::regclass AND a.attname = c.column_name "
            "WHERE c.column_name = 'cron_job_id' AND c.table_schema = 'public' ORDER BY 1"
        ).fetchall()
        assert {t["table_name"]: t["type"] for t in types} == {
            "cron_job_results": "kpi_cron_job_id",
            "kpi_alert_events": "kpi_cron_job_id",
            "kpi_alerts": "kpi_cron_job_id",
        }


@pytest.mark.slow
def test_an_install_made_before_keeps_its_bigint_ids_and_upgrades_in_place(
    shape_db: str,
    kpi_dag: Any,
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deployments migrated by earlier versions (bigint ids, CHECKs on every ledger row) upgrade in place:
    their alerts and ledger stay, the CHECKs move to the product's rows, ticks go on."""
    build(shape_db, [(REPO_ROOT / "tests/fixtures/installed_before_issue_21.sql").read_text()])
    with psycopg.connect(shape_db, autocommit=True, row_factory=dict_row) as conn:
        seed_alert(conn, Shape("old", [], "", None, "(floor(random() * 9000000000) + 1000000000)::bigint"))
    assert migrate(shape_db) == ["0001b_cron_job_id", "0010_shared_results", "0013_what_alerts_notice"]
    assert migrate(shape_db) == []
    with psycopg.connect(shape_db, autocommit=True, row_factory=dict_row) as conn:
        assert (
            conn.execute(
                "SELECT format_type(typbasetype, 0) AS t FROM pg_type WHERE typname = 'kpi_cron_job_id'"
            ).fetchone()["t"]
            == "bigint"
        )
        # the backend's other jobs may now share the ledger with their own statuses
        job = conn.execute(
            "INSERT INTO cron_jobs (id, job_name) VALUES (77, 'nightly') RETURNING id"
        ).fetchone()
        conn.execute("INSERT INTO cron_job_results (cron_job_id, status) VALUES (%s, 'success')", [job["id"]])
    monkeypatch.setenv("AIRFLOW_CONN_KPI_ALERTS_DB", shape_db)
    kpi_dag.test(logical_date=LOGICAL_TIME)
    assert [m["To"] for m in mailbox.messages()] == ["seed@org1.example.com"]
