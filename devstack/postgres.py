"""A real PostgreSQL server for the demo and tests, from the binaries the ``pgserver`` wheel ships.

The wheel's PostgreSQL 16 is used (not ``pgserver``'s own process management, which stops the
server when the starting process exits and listens only on a Unix socket): we need a server that
outlives one process and listens on TCP so Cube.js, pgbench and Airflow can all reach it.
PostgreSQL refuses to run as root, so as root it runs as the ``pgserver`` system user.

A server already listening on the port is reused only if its data directory is ours; databases are
dropped (``recreate``, :func:`drop_database`) only if this stack created them, which it records as
the database's comment when it creates one.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from pgserver._commands import POSTGRES_BIN_PATH
from psycopg import sql

from devstack import OWNER, STATE_DIR, ForeignServerError, port_open

DEFAULT_PORT = int(os.environ.get("KPI_DEVSTACK_PG_PORT", "54329"))
SYSTEM_USER = "pgserver"
#: The comment this stack puts on each database it creates: the record of what it may drop.
CREATED_MARK = f"created by {OWNER}"


class ForeignDatabaseError(RuntimeError):
    """A database this stack did not create: it is never dropped."""


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
    """Start the server if it is not running (idempotent) and return how to reach it.

    :raises ForeignServerError: when something else (another checkout's stack...) holds the port.
    """
    datadir = (datadir or STATE_DIR / "postgres").resolve()
    server = PostgresServer(datadir=datadir, port=port)
    if port_open(port):
        _check_ours(server)
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


def _check_ours(server: PostgresServer, timeout: float = 30) -> None:
    """The server on the port must run on our data directory (it may still be starting up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=2) as conn:
                row = conn.execute("SELECT current_setting('data_directory')").fetchone()
            break
        except psycopg.Error as exc:
            starting = "starting up" in str(exc) and (server.datadir / "postmaster.pid").exists()
            if not starting or time.monotonic() > deadline:
                raise ForeignServerError(
                    "PostgreSQL", server.port, "KPI_DEVSTACK_PG_PORT", f"not our PostgreSQL: {exc}".strip()
                ) from None
            time.sleep(0.2)
    found = Path(row[0]).resolve() if row and row[0] else None
    if found != server.datadir:
        raise ForeignServerError(
            "PostgreSQL", server.port, "KPI_DEVSTACK_PG_PORT", f"its data directory is {found}"
        )


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
    """Create database ``name`` if missing (or drop and create it) and return its URL.

    :param recreate: start from an empty database; refused for a database this stack did not create.
    :raises ForeignDatabaseError: when ``recreate`` would drop someone else's database.
    """
    with psycopg.connect(server.url(), autocommit=True) as conn:
        if recreate:
            _drop(conn, server, name)
        if _created_by_us(conn, name) is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                return server.url(name)  # a concurrent caller created it (and records it)
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(CREATED_MARK)
                )
            )
    return server.url(name)


def drop_database(server: PostgresServer, name: str) -> None:
    """Drop ``name`` if it exists and this stack created it.

    :raises ForeignDatabaseError: for a database this stack did not create (it is left alone).
    """
    with psycopg.connect(server.url(), autocommit=True) as conn:
        _drop(conn, server, name)


def _created_by_us(conn: psycopg.Connection[Any], name: str) -> bool | None:
    """Whether this stack created ``name``; None when there is no such database."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
    ).fetchone()
    return None if row is None else row[0] == CREATED_MARK


def _drop(conn: psycopg.Connection[Any], server: PostgresServer, name: str) -> None:
    ours = _created_by_us(conn, name)
    if ours is None:
        return
    if not ours:
        raise ForeignDatabaseError(
            f"database {name!r} on 127.0.0.1:{server.port} was not created by this stack "
            f"(no record in its comment); refusing to drop it. Drop it yourself if it is disposable."
        )
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
