"""PgBouncer (Debian's ``pgbouncer`` package) in **transaction** pooling mode in front of a PostgreSQL: how
most production databases are reached. Tests start one per session (``tests/conftest.py``).

Transaction mode hands each transaction to whichever server connection is free, so anything a session
keeps on the server — a prepared statement above all — may be missing on the next transaction's
connection. ``server_round_robin`` and a pool of two connections opened up front make that happen on
every other transaction, not only under load.

PgBouncer refuses to run as root: as root it drops to ``nobody`` (``-u``), which owns its directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from devstack import free_port, port_open

_CONFIG = """\
[databases]
* = host=127.0.0.1 port={target_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = transaction
server_round_robin = 1
default_pool_size = {pool_size}
min_pool_size = {pool_size}
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
logfile = {folder}/pgbouncer.log
"""


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (str(p) for p in (Path("/usr/sbin/pgbouncer"), Path("/usr/bin/pgbouncer")) if p.exists()), None
    )


class PgBouncer:
    """One PgBouncer process on a free port of 127.0.0.1, pooling ``target_port``'s databases.

    Its configuration and log live in a directory of its own under the system's temporary directory
    (``nobody`` must reach it when run as root: a pytest ``tmp_path`` is private to root), removed at stop.

    :param pool_size: server connections per database (all opened at start, used in turn).
    """

    def __init__(self, target_port: int, *, pool_size: int = 2) -> None:
        self.target_port = target_port
        self.folder = Path(tempfile.mkdtemp(prefix="kpi-pgbouncer-"))
        self.pool_size = pool_size
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def open_pool(self, database: str) -> None:
        """Open every server connection of ``database``'s pool now (concurrent transactions), so that
        round robin spreads the very next transactions over all of them."""
        import psycopg

        conns = [psycopg.connect(self.url(database), autocommit=True) for _ in range(self.pool_size)]
        try:
            with contextlib.ExitStack() as stack:
                for conn in conns:
                    stack.enter_context(conn.transaction())
                    conn.execute("SELECT 1")
        finally:
            for conn in conns:
                conn.close()

    def start(self) -> PgBouncer:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError(
                "pgbouncer is not installed (Debian: apt-get install pgbouncer; `make system-deps`)"
            )
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            _CONFIG.format(
                target_port=self.target_port, port=self.port, folder=self.folder, pool_size=self.pool_size
            )
        )
        (self.folder / "users.txt").write_text('"postgres" ""\n')
        args = [binary, str(config)]
        if os.geteuid() == 0:  # "PgBouncer should not run as root"
            nobody = pwd.getpwnam("nobody")
            for path in (self.folder, config, self.folder / "users.txt"):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            args[1:1] = ["-u", "nobody"]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not port_open(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self.stop()
                raise RuntimeError(f"pgbouncer did not start on port {self.port}: {err.strip()[:300]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
