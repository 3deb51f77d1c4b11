"""The docker-compose production topology, run natively on this machine (there is no Docker engine here).

    python -m devstack topology up | down | status

What runs (each a process of its own, state and logs in ``.devstack/topology/``):

- **Redis** (Debian's ``redis-server``): the Celery broker, append-only file on, so a restart keeps the
  queue as a real Redis with persistence would;
- the **Airflow metadata database**: database ``airflow_topology`` on the devstack PostgreSQL (not
  SQLite), also Celery's result backend;
- the **alerts database** on a PostgreSQL instance of its own, so it can be restarted alone;
- **two schedulers**, **two Celery workers** (``airflow celery worker``), the **dag-processor**, the
  **triggerer** and the **API server**;
- Cube.js (the devstack one, over the analytics database), a mail catcher and a StatsD receiver.

The Airflow configuration is docker-compose's: ``x-airflow-common.environment`` is read from
``docker-compose.yaml`` and only the values that name a compose host or a container path are
replaced by this machine's addresses (:data:`ADDRESS_KEYS`), plus a few settings that only a
one-machine topology needs (:data:`LOCAL_SETTINGS`, each with its reason). So the two cannot drift:
``tests/test_topology_definition.py`` checks exactly that.

Ports: ``KPI_TOPOLOGY_BASE_PORT`` (default 31200) and the next ten (see :class:`Ports`). A port held by
a server this checkout did not start is refused (:class:`~devstack.ForeignServerError`); only
processes started here (by their pid files, and checked to carry this checkout's owner mark) are
ever stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack import OWNER, REPO_ROOT, STATE_DIR, ForeignServerError, port_open
from devstack.cube import DEV_API_SECRET, ensure_cube
from devstack.postgres import DEFAULT_PORT as DEVSTACK_PG_PORT
from devstack.postgres import PostgresServer, ensure_database, ensure_postgres, stop_postgres

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
TOPOLOGY_DIR = STATE_DIR / "topology"
METADATA_DB = "airflow_topology"
ALERTS_DB = "kpi_alerts"
OWNER_VAR = "KPI_TOPOLOGY_OWNER"
#: Environment values that name a compose host, port or container path: replaced by this machine's.
ADDRESS_KEYS = frozenset(
    {
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API__BASE_URL",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__METRICS__STATSD_HOST",
        "AIRFLOW__METRICS__STATSD_PORT",
        "KPI_ALERTS_INCLUDE_DIR",
        "PYTHONPATH",
        "AIRFLOW_CONN_KPI_ALERTS_DB",
        "AIRFLOW_CONN_CUBE_DEFAULT",
        "AIRFLOW_CONN_SMTP_DEFAULT",
    }
)
#: Settings only a one-machine topology needs (compose gets them from containers or defaults).
LOCAL_SETTINGS = {
    # Containers mount dags/ and plugins/ at AIRFLOW_HOME's defaults; here they stay in the checkout.
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
    # Containers have a hostname each; here every component says which one it is (devstack.hostname).
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.hostname.get_hostname",
    # Two cores shared with everything else: small pools (compose's defaults suit a real host).
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__CORE__PARALLELISM": "8",
    # Faults are detected in seconds rather than the defaults' 5 minutes, so the fault tests finish:
    # a task instance whose worker stopped heartbeating, and tasks of a scheduler that went away.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    # ...and a failed try is retried after at most 10 s, not the DAG's 1-minute exponential backoff.
    "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY": "10",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}


@dataclass(frozen=True)
class Ports:
    base: int

    @property
    def redis(self) -> int:
        return self.base

    @property
    def api(self) -> int:
        return self.base + 1

    @property
    def alerts_db(self) -> int:
        return self.base + 2

    @property
    def smtp(self) -> int:
        return self.base + 3

    @property
    def statsd(self) -> int:
        return self.base + 4

    @property
    def trigger_logs(self) -> int:
        return self.base + 5

    def worker_logs(self, n: int) -> int:
        return self.base + 5 + n  # 6, 7

    def scheduler_health(self, n: int) -> int:
        return self.base + 7 + n  # 8, 9


@dataclass(frozen=True)
class Component:
    """One Airflow process: the compose service it stands for and its ``airflow`` arguments."""

    name: str
    service: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def compose_environment(path: Path = COMPOSE_FILE) -> dict[str, str]:
    """docker-compose's ``x-airflow-common.environment``, as strings."""
    compose = yaml.safe_load(path.read_text())
    return {k: str(v) for k, v in compose["x-airflow-common"]["environment"].items()}


def compose_services(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text())["services"])


@dataclass(frozen=True)
class Topology:
    state_dir: Path = TOPOLOGY_DIR
    ports: Ports = field(
        default_factory=lambda: Ports(int(os.environ.get("KPI_TOPOLOGY_BASE_PORT", "31200")))
    )

    # -- where things are ----------------------------------------------------------------------
    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def mail_dir(self) -> Path:
        return self.state_dir / "mail"

    @property
    def metrics_file(self) -> Path:
        return self.state_dir / "statsd.log"

    @property
    def alerts_pg(self) -> PostgresServer:
        return PostgresServer(
            datadir=(self.state_dir / "alerts-postgres").resolve(), port=self.ports.alerts_db
        )

    @property
    def alerts_db_url(self) -> str:
        return self.alerts_pg.url(ALERTS_DB)

    def metadata_url(self, devstack_pg: PostgresServer | None = None) -> str:
        port = devstack_pg.port if devstack_pg else DEVSTACK_PG_PORT
        return f"postgresql://postgres@127.0.0.1:{port}/{METADATA_DB}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def log(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    # -- the configuration ---------------------------------------------------------------------
    def environment(self, cube_url: str | None = None, cube_secret: str = DEV_API_SECRET) -> dict[str, str]:
        """docker-compose's Airflow environment with this machine's addresses (see the module doc)."""
        env = compose_environment()
        metadata = self.metadata_url().removeprefix("postgresql://")
        cube_url = cube_url or f"http://127.0.0.1:{os.environ.get('KPI_DEVSTACK_CUBE_PORT', '4000')}"
        cube_host, _, cube_port = cube_url.removeprefix("http://").partition(":")
        addresses = {
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://localhost:{self.ports.api}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{metadata}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{metadata}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:@127.0.0.1:{self.ports.redis}/0",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.ports.statsd),
            "KPI_ALERTS_INCLUDE_DIR": str(REPO_ROOT / "include"),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)]),
            "AIRFLOW_CONN_KPI_ALERTS_DB": self.alerts_db_url,
            "AIRFLOW_CONN_CUBE_DEFAULT": json.dumps(
                {
                    "conn_type": "cube",
                    "host": cube_host,
                    "port": int(cube_port),
                    "schema": "http",
                    "password": cube_secret,
                }
            ),
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": self.ports.smtp,
                    "extra": {
                        "disable_ssl": True,
                        "disable_tls": True,
                        "from_email": "kpi-alerts@example.com",
                        "timeout": 10,
                        "retry_limit": 1,
                    },
                }
            ),
        }
        missing = ADDRESS_KEYS - set(env)
        if missing:
            raise RuntimeError(f"docker-compose.yaml's x-airflow-common lacks {sorted(missing)}")
        env.update(addresses)
        env.update(LOCAL_SETTINGS)
        env["AIRFLOW_HOME"] = str(self.airflow_home)
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(self.ports.trigger_logs)
        return env

    def components(self) -> list[Component]:
        """The Airflow processes, one or more per compose service (two schedulers, two workers)."""
        out = []
        for n in (1, 2):
            out.append(
                Component(
                    f"scheduler-{n}",
                    "airflow-scheduler",
                    ("scheduler",),
                    {
                        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(
                            self.ports.scheduler_health(n)
                        )
                    },
                )
            )
        for n in (1, 2):
            out.append(
                Component(
                    f"worker-{n}",
                    "airflow-worker",
                    ("celery", "worker", "--celery-hostname", f"worker-{n}@%h"),
                    {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports.worker_logs(n))},
                )
            )
        out.append(Component("dag-processor", "airflow-dag-processor", ("dag-processor",)))
        out.append(Component("triggerer", "airflow-triggerer", ("triggerer",)))
        out.append(
            Component("api-server", "airflow-apiserver", ("api-server", "--port", str(self.ports.api)))
        )
        return out

    def component(self, name: str) -> Component:
        return next(c for c in self.components() if c.name == name)

    # -- running it ----------------------------------------------------------------------------
    def up(self) -> dict[str, str]:
        """Start whatever is not running (idempotent); wait until every component is healthy."""
        from kpi_alerts.ledger.migrations import migrate

        for sub in ("logs", "pids", "redis"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        pg = ensure_postgres()
        ensure_database(pg, METADATA_DB)
        cube = ensure_cube(pg)
        self.start_alerts_db()
        migrate(self.alerts_db_url)
        self.start_redis()
        self._start_helper(
            "mail",
            [
                sys.executable,
                "-m",
                "devstack.mail",
                "--port",
                str(self.ports.smtp),
                "--folder",
                str(self.mail_dir),
                "--owner",
                OWNER,
            ],
            self.ports.smtp,
        )
        self._start_helper(
            "statsd",
            [
                sys.executable,
                "-m",
                "devstack.statsd",
                "--port",
                str(self.ports.statsd),
                "--file",
                str(self.metrics_file),
                "--owner",
                OWNER,
            ],
            None,
        )
        env = self.environment(cube.url, cube.api_secret)
        (self.state_dir / "environment.json").write_text(json.dumps(env, indent=1))
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        migrated = subprocess.run(
            [_airflow(), "db", "migrate"], env=self._process_env(env), capture_output=True, text=True
        )
        if migrated.returncode != 0:
            raise RuntimeError(
                f"airflow db migrate failed:\n{migrated.stdout[-3000:]}{migrated.stderr[-3000:]}"
            )
        for component in self.components():
            self.start(component.name, env)
        self.wait_healthy()
        return env

    def _process_env(self, env: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KPI_TOPOLOGY_HOSTNAME"))
        }
        path = f"{Path(sys.executable).parent}{os.pathsep}{inherited.get('PATH', '')}"
        return {**inherited, **env, **(extra or {}), "PATH": path, OWNER_VAR: OWNER}

    def start(self, name: str, env: dict[str, str] | None = None) -> int:
        """Start one Airflow component unless it runs; returns its pid."""
        running = self.pid(name)
        if running:
            return running
        if env is None:
            env = json.loads((self.state_dir / "environment.json").read_text())
        component = self.component(name)
        extra = {**component.env, "KPI_TOPOLOGY_HOSTNAME": name}
        return self._spawn(name, [_airflow(), *component.args], self._process_env(env, extra))

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> int:
        log = self.log(name).open("ab")
        process = subprocess.Popen(
            args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self._pid_file(name).write_text(f"{process.pid} {_start_time(process.pid)}")
        return process.pid

    def _start_helper(self, name: str, args: list[str], port: int | None) -> None:
        if self.pid(name):
            return
        if port is not None and port_open(port):
            raise ForeignServerError(
                name, port, "KPI_TOPOLOGY_BASE_PORT", "a server this topology did not start"
            )
        self._spawn(name, args, {**os.environ, "PYTHONPATH": str(REPO_ROOT), OWNER_VAR: OWNER})
        if port is not None:
            _wait(lambda: port_open(port), 15, f"{name} did not start; see {self.log(name)}")

    def pid(self, name: str) -> int | None:
        """The pid of our running process ``name``, else None. The pid file holds the pid and the process's
        start time, so a pid reused by another process is never taken for ours (an environment or
        command line would not do: Redis, Celery and uvicorn rewrite their process titles over both)."""
        path = self._pid_file(name)
        if not path.exists():
            return None
        try:
            pid, started = (int(v) for v in path.read_text().split())
        except ValueError:
            return None
        if _start_time(pid) != started or not _alive(pid):
            return None
        return pid

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop one of our processes and everything it started (its session); SIGKILL after ``timeout``."""
        pid = self.pid(name)
        if pid is None:
            return
        members = _session_members(pid)
        for target in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, sig)
        if sig != signal.SIGKILL:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(_alive(p) for p in members):
                time.sleep(0.2)
            for target in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        _wait(lambda: not any(_alive(p) for p in members), 20, f"{name} did not stop")
        self._pid_file(name).unlink(missing_ok=True)

    def kill(self, name: str) -> list[int]:
        """SIGKILL one component and every process of its session at once (a machine that died)."""
        pid = self.pid(name)
        members = _session_members(pid) if pid else []
        self.stop(name, signal.SIGKILL)
        return members

    def down(self) -> None:
        # SIGTERM to every Airflow component at once (each then shuts down in parallel), then reap them.
        for component in self.components():
            pid = self.pid(component.name)
            if pid is not None:
                for target in _session_members(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(target, signal.SIGTERM)
        for component in reversed(self.components()):
            self.stop(component.name)
        for name in ("mail", "statsd"):
            self.stop(name)
        self.stop_redis()
        self.stop_alerts_db()

    def status(self) -> dict[str, bool]:
        names = [c.name for c in self.components()] + ["mail", "statsd", "redis"]
        state = {name: self.pid(name) is not None for name in names}
        state["alerts-db"] = (
            port_open(self.ports.alerts_db) and (self.alerts_pg.datadir / "postmaster.pid").exists()
        )
        return state

    # -- health ----------------------------------------------------------------------------------
    def health(self) -> dict[str, bool]:
        """Each component's own health signal: the API server's /monitor/health (metadata DB, scheduler,
        triggerer, dag-processor), each scheduler's health endpoint, each worker's "ready" line."""
        import requests

        result: dict[str, bool] = {}
        try:
            monitor = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            monitor = {}
        result["api-server"] = monitor.get("metadatabase", {}).get("status") == "healthy"
        result["dag-processor"] = monitor.get("dag_processor", {}).get("status") == "healthy"
        result["triggerer"] = monitor.get("triggerer", {}).get("status") == "healthy"
        for n in (1, 2):
            try:
                ok = requests.get(f"http://127.0.0.1:{self.ports.scheduler_health(n)}/health", timeout=5).ok
            except requests.RequestException:
                ok = False
            result[f"scheduler-{n}"] = ok and self.pid(f"scheduler-{n}") is not None
            result[f"worker-{n}"] = self.pid(f"worker-{n}") is not None and self.worker_ready(n)
        result["redis"] = self.redis_ping()
        return result

    def worker_ready(self, n: int) -> bool:
        """The worker logged ``worker-n@<host> ready.`` since it was last started (Celery's own signal)."""
        log = self.log(f"worker-{n}")
        if not log.exists():
            return False
        text = log.read_text(errors="replace")
        start = text.rfind(f"-------------- worker-{n}@")  # the banner of the latest start
        return start >= 0 and re.search(rf"worker-{n}@\S+ ready\.", text[start:]) is not None

    def wait_healthy(self, timeout: float = 300, names: set[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            wanted = {k: v for k, v in health.items() if names is None or k in names}
            if all(wanted.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"topology not healthy after {timeout:.0f}s: {wanted}; logs in {self.state_dir / 'logs'}"
                )
            time.sleep(1)

    # -- the servers faults are injected into -----------------------------------------------------
    def start_alerts_db(self) -> PostgresServer:
        server = ensure_postgres(self.ports.alerts_db, self.alerts_pg.datadir)
        ensure_database(server, ALERTS_DB)
        return server

    def stop_alerts_db(self) -> None:
        stop_postgres(self.ports.alerts_db, self.alerts_pg.datadir)

    def start_redis(self) -> None:
        if self.pid("redis"):
            return
        if port_open(self.ports.redis):
            raise ForeignServerError(
                "Redis", self.ports.redis, "KPI_TOPOLOGY_BASE_PORT", "not this topology's redis-server"
            )
        args = [
            _redis_server(),
            "--port", str(self.ports.redis),
            "--bind", "127.0.0.1",
            "--dir", str(self.state_dir / "redis"),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        self._spawn("redis", args, {**os.environ, OWNER_VAR: OWNER})
        _wait(self.redis_ping, 15, f"redis-server did not start; see {self.log('redis')}")

    def stop_redis(self) -> None:
        self.stop("redis")

    def redis_ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.ports.redis, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far (user + system, including reaped children) by the workers, the
        control plane (schedulers, API server, dag-processor, triggerer) and the alerts PostgreSQL."""
        groups = {"workers": 0.0, "control plane": 0.0, "alerts db": 0.0}
        for component in self.components():
            pid = self.pid(component.name)
            if pid is None:
                continue
            group = "workers" if component.service == "airflow-worker" else "control plane"
            groups[group] += sum(_cpu(p) for p in _session_members(pid))
        postmaster = self.alerts_pg.datadir / "postmaster.pid"
        if postmaster.exists():
            pid = int(postmaster.read_text().split()[0])
            groups["alerts db"] = _cpu(pid) + sum(_cpu(p) for p in _children(pid))
        return groups

    def task_instances(self) -> Iterator[dict[str, Any]]:
        """Every task instance of the kpi_alerts DAG in the metadata DB (state, hostname, try...)."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.metadata_url(), row_factory=dict_row) as conn:
            yield from conn.execute(
                "SELECT run_id, task_id, map_index, state, hostname, try_number FROM task_instance "
                "WHERE dag_id = 'kpi_alerts' ORDER BY run_id, task_id, map_index"
            ).fetchall()


def _airflow() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def _redis_server() -> str:
    import shutil

    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed: `make system-deps` (apt-get install redis-server)")
    return found


def _session_members(pid: int) -> list[int]:
    """``pid`` and every live process of its session (what it started, however deep)."""
    try:
        sid = os.getsid(pid)
    except ProcessLookupError:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return sorted(set(members) | {pid})


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid``, in seconds (0 for a process gone meanwhile)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


def _wait(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.2)


def main(command: str) -> None:
    topology = Topology()
    if command == "up":
        topology.up()
        print(
            f"topology up: API server {topology.api_url} (admin; password in "
            f"{topology.airflow_home / 'simple_auth_manager_passwords.json.generated'}), "
            f"alerts DB {topology.alerts_db_url}, mail in {topology.mail_dir}, metrics in {topology.metrics_file}"
        )
    elif command == "down":
        topology.down()
        print("topology stopped")
    else:
        for name, running in topology.status().items():
            print(f"{name:15} {'running' if running else 'stopped'}")
