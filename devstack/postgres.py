"""A real PostgreSQL server for the demo and tests, from the binaries the ``pgserver`` wheel ships.

The wheel's PostgreSQL 16 is used (not ``pgserver``'s own process management, which stops the
server when the starting process exits and listens only on a Unix socket): we need a server that
outlives one process and listens on TCP so Cube.js, pgbench and Airflow can all reach it.
PostgreSQL refuses to run as root, so as root it runs as the ``pgserver`` system user.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pgserver._commands import POSTGRES_BIN_PATH
from psycopg import sql

from devstack import STATE_DIR

DEFAULT_PORT = int(os.environ.get("KPI_DEVSTACK_PG_PORT", "54329"))
SYSTEM_USER = "pgserver"


@dataclass(frozen=True)
class PostgresServer:
    datadir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def bin(self, name: str) -> str:
        return str(POSTGRES_BIN_PATH / name)


def _run_as_owner(args: list[str]) -> subprocess.CompletedProcess[str]:
    user = SYSTEM_USER if os.geteuid() == 0 else None
    return subprocess.run(args, user=user, capture_output=True, text=True, check=False)


def _prepare_datadir(datadir: Path) -> None:
    datadir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(datadir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    owner = pwd.getpwnam(SYSTEM_USER)
    os.chown(datadir, owner.pw_uid, owner.pw_gid)


def ensure_postgres(port: int = DEFAULT_PORT, datadir: Path | None = None) -> PostgresServer:
    """Start the server if it is not running (idempotent) and return how to reach it."""
    datadir = datadir or STATE_DIR / "postgres"
    server = PostgresServer(datadir=datadir, port=port)
    if is_running(server):
        return server
    _prepare_datadir(datadir)
    if not (datadir / "PG_VERSION").exists():
        done = _run_as_owner(
            [server.bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
    options = f"-h 127.0.0.1 -p {port} -k {datadir} -c max_connections=300 -c fsync=off"
    done = _run_as_owner(
        [
            server.bin("pg_ctl"),
            "-D",
            str(datadir),
            "-o",
            options,
            "-l",
            str(datadir / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    if done.returncode != 0:
        log = (datadir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr or done.stdout}\n{log}")
    _wait_ready(server)
    return server


def is_running(server: PostgresServer) -> bool:
    try:
        with psycopg.connect(server.url(), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _wait_ready(server: PostgresServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not is_running(server):
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL on port {server.port} is not accepting connections")
        time.sleep(0.2)


def stop_postgres(port: int = DEFAULT_PORT, datadir: Path | None = None) -> None:
    datadir = datadir or STATE_DIR / "postgres"
    if (datadir / "postmaster.pid").exists():
        _run_as_owner([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"])


def ensure_database(server: PostgresServer, name: str, *, recreate: bool = False) -> str:
    """Create database ``name`` if missing (or drop and create it) and return its URL."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        if recreate:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url(name)
