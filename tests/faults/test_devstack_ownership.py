"""Fault: a second checkout's local stack on the same ports (issue 9, item 10).

``make up`` used to reuse whatever answered on its ports — another checkout's PostgreSQL, Cube.js and
mail catcher — and ``make demo`` then dropped ``kpi_alerts`` there. Now a server is reused only when
it proves to be this checkout's own (PostgreSQL by its data directory, Cube.js and the mail catcher by
the owner they were started with), and a database is dropped only when this stack created it.

The "second checkout" is this repository with another state directory (``KPI_DEVSTACK_DIR``), run as
its own process against this session's real servers, exactly as a second clone would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devstack.cube import CubeServer
from devstack.postgres import ForeignDatabaseError, PostgresServer, drop_database, ensure_database
from devstack.stack import MAIL_PORT, ensure_mail_catcher
from tests.conftest import REPO_ROOT
from tests.fault_table import FaultTable

pytestmark = [pytest.mark.faults, pytest.mark.services]


def second_checkout(state_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` as another checkout would: same code, its own ``.devstack``."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}",
            "KPI_DEVSTACK_DIR": str(state_dir),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )


def database_oids(pg: PostgresServer) -> dict[str, int]:
    with psycopg.connect(pg.url()) as conn:
        return dict(conn.execute("SELECT datname, oid FROM pg_database").fetchall())  # type: ignore[arg-type]


def errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error: ")]


def test_a_second_stack_on_the_same_ports_refuses_and_drops_nothing(
    pg: PostgresServer,
    alerts_db_url: str,
    cube_server: CubeServer,
    tmp_path: Path,
    fault_table: FaultTable,
) -> None:
    ensure_database(pg, "kpi_alerts")  # what this checkout's `make demo` / `make up` works on
    ensure_mail_catcher()
    before = database_oids(pg)
    other = tmp_path / "other-checkout" / ".devstack"

    up = second_checkout(other, "-m", "devstack", "up")
    assert up.returncode == 2, up.stdout + up.stderr
    [line] = errors(up)
    assert f"PostgreSQL port {pg.port} is in use by a server this checkout did not start" in line
    assert "KPI_DEVSTACK_PG_PORT=" in line and "Traceback" not in up.stderr
    assert not (other / "postgres" / "PG_VERSION").exists()  # no server of its own half-made either

    demo = second_checkout(other, "-m", "devstack.demo")
    assert demo.returncode == 2 and len(errors(demo)) == 1, demo.stdout + demo.stderr

    # Cube.js and the mail catcher, asked directly, refuse this checkout's servers too.
    probe = (
        "from pathlib import Path\n"
        "from devstack import ForeignServerError\n"
        "from devstack.cube import ensure_cube\n"
        "from devstack.postgres import PostgresServer\n"
        "from devstack.stack import ensure_mail_catcher\n"
        f"pg = PostgresServer(Path({str(other / 'postgres')!r}), {pg.port})\n"
        "for start in (lambda: ensure_cube(pg, port=%d), lambda: ensure_mail_catcher(%d)):\n"
        "    try:\n"
        "        start()\n"
        "    except ForeignServerError as exc:\n"
        "        print('refused:', exc)\n" % (cube_server.port, MAIL_PORT)
    )
    refused = second_checkout(other, "-c", probe)
    assert refused.returncode == 0, refused.stderr
    assert f"refused: Cube.js port {cube_server.port}" in refused.stdout
    assert f"refused: SMTP port {MAIL_PORT}" in refused.stdout

    down = second_checkout(other, "-m", "devstack", "down")
    assert down.returncode == 0, down.stderr
    assert database_oids(pg) == before  # nothing dropped, nothing re-created
    with psycopg.connect(alerts_db_url) as conn:  # and every server still runs
        assert conn.execute("SELECT 1").fetchone() == (1,)
    import requests

    assert requests.get(f"{cube_server.url}/readyz", timeout=5).status_code == 200
    with socket.create_connection(("127.0.0.1", MAIL_PORT), timeout=5):
        pass
    fault_table.record(
        fault="second checkout's `make up`/`make demo` on our ports",
        alerts=0,
        messages=0,
        duplicates=0,
        lost=0,
        run_state="refused (exit 2), 0 DBs dropped",
    )


def test_a_port_held_by_something_else_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        done = second_checkout(tmp_path / ".devstack", "-m", "devstack", "up", KPI_DEVSTACK_PG_PORT=str(port))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = errors(done)
    assert f"PostgreSQL port {port} is in use by a server this checkout did not start" in line
    assert not (tmp_path / ".devstack" / "postgres" / "PG_VERSION").exists()


def test_only_databases_the_stack_created_are_dropped(pg: PostgresServer) -> None:
    by_hand, ours = f"kpi_by_hand_{os.getpid()}", f"kpi_devstack_made_{os.getpid()}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(by_hand)))
    try:
        with pytest.raises(ForeignDatabaseError, match="was not created by this stack"):
            ensure_database(pg, by_hand, recreate=True)
        with pytest.raises(ForeignDatabaseError):
            drop_database(pg, by_hand)
        assert by_hand in database_oids(pg)

        ensure_database(pg, ours)
        first = database_oids(pg)[ours]
        ensure_database(pg, ours, recreate=True)
        assert database_oids(pg)[ours] != first  # dropped and created again: it was ours
        drop_database(pg, ours)
        assert ours not in database_oids(pg)
    finally:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            for name in (by_hand, ours):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
