"""Shared fixtures: a real PostgreSQL, Cube.js and SMTP server, and a real Airflow (SQLite metadata DB).

Airflow reads its configuration when first imported, so its environment is set here, at import
time, before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="kpi-alerts-tests-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
)

import psycopg  # noqa: E402
import pytest  # noqa: E402

from devstack.cube import CubeServer, ensure_cube  # noqa: E402
from devstack.mail import MailCatcher  # noqa: E402
from devstack.pgbouncer import PgBouncer  # noqa: E402
from devstack.postgres import PostgresServer, drop_database, ensure_database, ensure_postgres  # noqa: E402
from devstack.stack import Stack  # noqa: E402
from kpi_alerts.ledger.database import connect  # noqa: E402
from kpi_alerts.ledger.migrations import migrate  # noqa: E402
from tests.fault_table import fault_table, pytest_terminal_summary  # noqa: E402, F401  (the fault suite)

# One database per pytest process, so concurrent sessions (developers, CI) never clobber each other.
TEST_DB = f"kpi_alerts_test_{os.getpid()}"


@pytest.fixture(scope="session")
def pg() -> PostgresServer:
    return ensure_postgres()


@pytest.fixture(scope="session")
def alerts_db_url(pg: PostgresServer) -> Iterator[str]:
    """A freshly created and migrated alerts database for this test session (dropped afterwards)."""
    url = ensure_database(pg, TEST_DB, recreate=True)
    migrate(url)
    yield url
    drop_database(pg, TEST_DB)


@pytest.fixture
def db(alerts_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to an empty alerts database."""
    with connect(alerts_db_url) as conn:
        conn.execute(
            "TRUNCATE cron_jobs, kpi_alerts, kpi_schedules, kpi_thresholds, cron_job_results, "
            "kpi_organization_settings, kpi_alert_events CASCADE"
        )
        yield conn


@pytest.fixture(scope="session")
def pgbouncer(pg: PostgresServer, alerts_db_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the session's PostgreSQL (Debian's ``pgbouncer``)."""
    with PgBouncer(pg.port) as bouncer:
        yield bouncer


@pytest.fixture
def pooled_db_url(pgbouncer: PgBouncer) -> str:
    """The test database through PgBouncer, its server connections open (so transactions alternate)."""
    pgbouncer.open_pool(TEST_DB)
    return pgbouncer.url(TEST_DB)


@pytest.fixture(scope="session")
def cube_server(pg: PostgresServer) -> CubeServer:
    return ensure_cube(pg)


@pytest.fixture(scope="session")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailCatcher]:
    with MailCatcher(tmp_path_factory.mktemp("mail")) as catcher:
        yield catcher


@pytest.fixture
def mailbox(smtp_server: MailCatcher) -> MailCatcher:
    smtp_server.clear()
    return smtp_server


@pytest.fixture(scope="session")
def stack(pg: PostgresServer, alerts_db_url: str, cube_server: CubeServer, smtp_server: MailCatcher) -> Stack:
    """The test session's servers, as ``devstack.stack.airflow_env`` takes them."""
    return Stack(
        pg, alerts_db_url, cube_server.url, cube_server.api_secret, smtp_server.port, smtp_server.folder
    )


@pytest.fixture
def airflow_connections(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> dict[str, str]:
    """The three connections and the production switch, as Airflow environment variables."""
    from devstack.stack import airflow_env

    env = {
        k: v
        for k, v in airflow_env(stack, _AIRFLOW_HOME).items()
        if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A fresh Airflow metadata DB (SQLite in this session's AIRFLOW_HOME)."""
    from airflow.utils.db import resetdb

    resetdb()


@pytest.fixture(scope="session")
def kpi_dag(airflow_db: None) -> Any:
    """The real ``kpi_alerts`` DAG, parsed from the dags folder (``dag.test()`` needs it there)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag("kpi_alerts")
