"""A real Cube.js server (``node cube/index.js``) over the demo dataset, for the demo and tests.

The server is detached from the starting process (like the PostgreSQL of :mod:`devstack.postgres`)
so one instance serves the demo, several pytest sessions and the benchmark; ``ensure_cube`` is
idempotent and reuses a server already listening on the port when it is this checkout's own (it
answers ``GET /kpi-devstack/owner`` with :data:`devstack.OWNER`), and refuses any other. Its log is
``.devstack/cube-<port>.log``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import jwt
import psycopg
import requests

from devstack import OWNER, REPO_ROOT, STATE_DIR, ForeignServerError, port_open
from devstack.postgres import PostgresServer, ensure_database

DEFAULT_PORT = int(os.environ.get("KPI_DEVSTACK_CUBE_PORT", "4010"))
# A well-known secret for the local stack only; production reads it from the cube_default connection.
DEV_API_SECRET = "kpi-alerts-devstack-secret-not-for-production"
CUBE_DIR = REPO_ROOT / "cube"
DATASET_SQL = Path(__file__).with_name("analytics_data.sql")
DATASET_MARKER = "kpi-alerts demo dataset v4"
_DATASET_LOCK = 0x6B7069  # pg advisory lock key: concurrent loaders wait instead of racing


@dataclass(frozen=True)
class CubeServer:
    """How to reach a running Cube server.

    :param url: base URL, e.g. ``http://127.0.0.1:4010``.
    :param api_secret: the HS256 secret tokens must be signed with.
    :param port: the HTTP port.
    :param process: the ``node`` process when this call started it; None when an existing one is reused.
    """

    url: str
    api_secret: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return log_path(self.port)


def log_path(port: int) -> Path:
    return STATE_DIR / f"cube-{port}.log"


def _pid_path(port: int) -> Path:
    return STATE_DIR / f"cube-{port}.pid"


def load_analytics_data(pg: PostgresServer, database: str = "analytics") -> str:
    """Create ``database`` and load the demo ``orders`` table unless this version is already there.

    :return: the database URL.
    """
    url = ensure_database(pg, database)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DATASET_LOCK,))
        row = conn.execute("SELECT obj_description(to_regclass('public.orders'), 'pg_class')").fetchone()
        if row is None or row[0] != DATASET_MARKER:
            conn.execute(DATASET_SQL.read_text())  # a trusted local file
    return url


def _probe(url: str) -> int | None:
    """HTTP status of ``/readyz`` (200 only when Cube reaches its database), None when nobody answers."""
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code
    except requests.RequestException:
        return None


def _check_ours(url: str, port: int) -> None:
    """The server answering on ``url`` must be one this checkout started (its owner is ours)."""
    try:
        answer = requests.get(f"{url}/kpi-devstack/owner", timeout=5)
        owner = answer.json().get("owner") if answer.ok else None
    except (requests.RequestException, ValueError, AttributeError):
        owner = None
    if owner != OWNER:
        seen = f"it says it belongs to {owner}" if owner else "it does not say it is ours"
        if _pid_path(port).exists():
            seen += "; if it is this checkout's server from before this check existed, run `make down`"
        raise ForeignServerError("Cube.js", port, "KPI_DEVSTACK_CUBE_PORT", seen)


def _check_secret(url: str, api_secret: str) -> None:
    """Refuse to reuse a server on the port that was started with another secret."""
    token = jwt.encode({"organization_id": 1, "exp": int(time.time()) + 60}, api_secret, algorithm="HS256")
    status = requests.get(
        f"{url}/cubejs-api/v1/meta", headers={"Authorization": token}, timeout=10
    ).status_code
    if status == 403:
        raise RuntimeError(f"The Cube server at {url} was started with another API secret; stop it first")


@contextmanager
def _start_lock() -> Iterator[None]:
    """Serialise check-and-start across processes (parallel pytest sessions, the demo); one file for
    every port, so stopping an instance never has to delete a lock someone may hold."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (STATE_DIR / "cube-start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure_node_modules() -> None:
    if (CUBE_DIR / "node_modules" / "@cubejs-backend" / "server").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: it is needed once to install cube/node_modules")
    subprocess.run([npm, "ci", "--ignore-scripts"], cwd=CUBE_DIR, check=True)


def _server_env(
    pg: PostgresServer, *, port: int, database: str, api_secret: str, continue_wait_timeout: int, db_port: int
) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TZ") if key in os.environ}
    env.update(
        CUBEJS_DB_TYPE="postgres",
        CUBEJS_DB_HOST="127.0.0.1",
        CUBEJS_DB_PORT=str(db_port),
        CUBEJS_DB_NAME=database,
        CUBEJS_DB_USER="postgres",
        CUBEJS_DB_PASS="",
        CUBEJS_API_SECRET=api_secret,
        CUBEJS_TELEMETRY="false",
        CUBEJS_CACHE_AND_QUEUE_DRIVER="memory",
        CUBEJS_SCHEMA_PATH="model",
        # An API instance builds pre-aggregations itself (no refresh worker here): the loaded_orders rollup
        # is built on the first query that needs it and rebuilt when its refresh key changes.
        CUBEJS_PRE_AGGREGATIONS_BUILDER="true",
        CUBEJS_PRE_AGGREGATIONS_SCHEMA="kpi_pre_aggregations",
        CUBEJS_CONCURRENCY="4",  # slow_orders tests hold queue slots; keep room for the others
        CUBEJS_HOST="127.0.0.1",
        KPI_CUBE_CONTINUE_WAIT_TIMEOUT=str(continue_wait_timeout),
        KPI_DEVSTACK_OWNER=OWNER,
        NODE_ENV="production",  # otherwise Cube runs in dev mode and accepts requests without a token
        PORT=str(port),
    )
    return env


def ensure_cube(
    pg: PostgresServer,
    *,
    port: int = DEFAULT_PORT,
    database: str = "analytics",
    api_secret: str = DEV_API_SECRET,
    continue_wait_timeout: int = 2,
    db_port: int | None = None,
    timeout: float = 60,
) -> CubeServer:
    """Load the dataset and start Cube on ``127.0.0.1:port`` unless it is already up (idempotent).

    :param pg: the PostgreSQL server holding ``database``.
    :param port: HTTP port (env ``KPI_DEVSTACK_CUBE_PORT``, default 4010).
    :param database: database with the demo ``orders`` table (loaded if missing).
    :param api_secret: HS256 secret for tokens.
    :param continue_wait_timeout: seconds before ``/load`` answers "Continue wait" (integer).
    :param db_port: database port Cube connects to, default ``pg.port``; a closed port gives a Cube
        whose database is down (then readiness means "answers HTTP", not "/readyz is 200").
    :param timeout: seconds to wait for the server.
    """
    url = f"http://127.0.0.1:{port}"
    db_port = pg.port if db_port is None else db_port
    if port_open(port):
        _check_ours(url, port)  # before touching any database for it
    load_analytics_data(pg, database)
    with _start_lock():
        if port_open(port):
            _check_ours(url, port)
            _check_secret(url, api_secret)
            return CubeServer(url=url, api_secret=api_secret, port=port)
        _ensure_node_modules()
        env = _server_env(
            pg,
            port=port,
            database=database,
            api_secret=api_secret,
            continue_wait_timeout=continue_wait_timeout,
            db_port=db_port,
        )
        with log_path(port).open("ab") as log:
            process = subprocess.Popen(
                ["node", "index.js"],
                cwd=CUBE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this process, like the devstack's PostgreSQL
            )
        _pid_path(port).write_text(str(process.pid))
        _wait_ready(url, process, port=port, db_expected=port_open(db_port), timeout=timeout)
        return CubeServer(url=url, api_secret=api_secret, port=port, process=process)


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], *, port: int, db_expected: bool, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = _probe(url)
        if status == 200 or (status is not None and not db_expected):
            return
        if process.poll() is not None:
            tail = log_path(port).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Cube exited with code {process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Cube on port {port} not ready after {timeout:.0f} s (last /readyz: {status})"
            )
        time.sleep(0.2)


def _is_our_node(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"node" in Path(cmdline[0].decode(errors="replace")).name.encode() and b"index.js" in cmdline


def stop_cube(port: int = DEFAULT_PORT, timeout: float = 10, *, remove_log: bool = False) -> None:
    """Stop the Cube server this devstack started on ``port`` (no-op when none is running).

    :param remove_log: also delete its log (throw-away instances of the tests).
    """
    if remove_log:
        log_path(port).unlink(missing_ok=True)
    pid_file = _pid_path(port)
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip() or 0)
    if pid and _is_our_node(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_our_node(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _is_our_node(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our child (else it lingers as a zombie)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
