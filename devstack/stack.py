"""The whole local stack: PostgreSQL (alerts + analytics databases), Cube.js and a mail catcher,
plus the Airflow environment (connections as ``AIRFLOW_CONN_*``) that points at them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devstack import OWNER, REPO_ROOT, STATE_DIR, ForeignServerError, port_open
from devstack.cube import DEV_API_SECRET, ensure_cube, stop_cube
from devstack.postgres import PostgresServer, ensure_database, ensure_postgres, stop_postgres

MAIL_PORT = int(os.environ.get("KPI_DEVSTACK_SMTP_PORT", "2525"))
MAIL_DIR = STATE_DIR / "mail"
ALERTS_DB = "kpi_alerts"


@dataclass(frozen=True)
class Stack:
    pg: PostgresServer
    alerts_db_url: str
    cube_url: str
    cube_secret: str
    smtp_port: int
    mail_dir: Path


def airflow_env(stack: Stack, airflow_home: Path, *, production: bool = True) -> dict[str, str]:
    """Environment for a local Airflow pointed at the stack (SQLite metadata DB in ``airflow_home``)."""
    cube_host, _, cube_port = stack.cube_url.removeprefix("http://").partition(":")
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # `airflow standalone` (the API server and UI) listens on 0.0.0.0 by default: this machine only.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW_CONN_KPI_ALERTS_DB": stack.alerts_db_url,
        "AIRFLOW_CONN_CUBE_DEFAULT": json.dumps(
            {
                "conn_type": "cube",
                "host": cube_host,
                "port": int(cube_port),
                "schema": "http",
                "password": stack.cube_secret,
            }
        ),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": stack.smtp_port,
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "kpi-alerts@example.com",
                    "timeout": 10,
                    "retry_limit": 1,
                },
            }
        ),
        "AIRFLOW_VAR_KPI_ALERTS_ENVIRONMENT": "production" if production else "development",
        "AIRFLOW_VAR_KPI_ALERTS_SENDER": "KPI Alerts <kpi-alerts@example.com>",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)]),
    }


def up(*, with_mail: bool = True) -> Stack:
    """Start everything that is not running yet (idempotent) and migrate the alerts database."""
    from kpi_alerts.ledger.migrations import migrate

    pg = ensure_postgres()
    alerts_db_url = ensure_database(pg, ALERTS_DB)
    migrate(alerts_db_url)
    cube = ensure_cube(pg)
    if with_mail:
        ensure_mail_catcher()
    return Stack(pg, alerts_db_url, cube.url, DEV_API_SECRET, MAIL_PORT, MAIL_DIR)


def ensure_mail_catcher(port: int = MAIL_PORT) -> None:
    """Run ``python -m devstack.mail`` in the background unless ours already answers on the port.

    :raises ForeignServerError: when another SMTP server (another checkout's catcher...) holds it.
    """
    if port_open(port):
        greeting = mail_catcher_greeting(port)
        if OWNER not in greeting:
            raise ForeignServerError("SMTP", port, "KPI_DEVSTACK_SMTP_PORT", f"it greets {greeting[:120]!r}")
        return
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = (STATE_DIR / "mail.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.mail",
            "--port",
            str(port),
            "--folder",
            str(MAIL_DIR),
            "--owner",
            OWNER,
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    (STATE_DIR / "mail.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"mail catcher did not start; see {STATE_DIR / 'mail.log'}")


def mail_catcher_greeting(port: int) -> str:
    """The SMTP greeting on the port (ours names :data:`devstack.OWNER`); empty if none is read."""
    try:
        client = smtplib.SMTP(timeout=5)
        _, greeting = client.connect("127.0.0.1", port)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
    except (smtplib.SMTPException, OSError):
        return ""
    return greeting.decode(errors="replace")


def down() -> None:
    """Stop the servers this checkout started (by their pid files); others are never touched."""
    stop_cube()
    pid_file = STATE_DIR / "mail.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            pid = int(pid_file.read_text())
            if _is_mail_catcher(pid):
                os.kill(pid, signal.SIGTERM)
        pid_file.unlink()
    stop_postgres()


def _is_mail_catcher(pid: int) -> bool:
    try:
        return b"devstack.mail" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc").is_dir()  # no /proc to ask: trust our pid file
