"""A real Airflow API server with the KPI alerts plugin loaded, and users of each kind.

``airflow api-server`` runs in its own ``AIRFLOW_HOME`` (SQLite metadata DB, migrated first), with
SimpleAuthManager and four users: ``admin`` (ADMIN), ``editor`` (USER: edits DAGs), ``viewer`` (VIEWER:
reads DAGs) and ``nobody`` (no role: no DAG access at all). Its connections point at the test
session's PostgreSQL, Cube.js and SMTP servers, as in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack import free_port
from devstack.stack import Stack, airflow_env
from tests.integration.test_under_the_scheduler import stop_process_tree

BIN = Path(sys.executable).parent
PASSWORDS = {"admin": "admin-pw", "editor": "editor-pw", "viewer": "viewer-pw", "nobody": "nobody-pw"}
USERS = "admin:admin,editor:user,viewer:viewer,nobody:"
API = "/kpi-alerts/api/v1"


@dataclass
class AirflowApi:
    """The running API server: its URL, and a token per user (``POST /auth/token``)."""

    base_url: str
    home: Path
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        if user not in self._tokens:
            answer = requests.post(
                f"{self.base_url}/auth/token",
                json={"username": user, "password": PASSWORDS[user]},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            self._tokens[user] = answer.json()["access_token"]
        return self._tokens[user]

    def call(
        self, method: str, path: str, *, user: str | None = "admin", json_body: Any = None, **kwargs: Any
    ) -> requests.Response:
        """``method`` on ``/kpi-alerts/api/v1{path}`` with ``user``'s token (none when ``user`` is None)."""
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user is not None else {}
        return requests.request(
            method, f"{self.base_url}{API}{path}", json=json_body, headers=headers, timeout=60, **kwargs
        )


def api_server_env(stack: Stack, home: Path, port: int) -> dict[str, str]:
    """The environment of an API server in ``home`` on ``port``, pointed at the test session's servers."""
    (home / "passwords.json").write_text(json.dumps(PASSWORDS))
    return {
        **os.environ,
        **airflow_env(stack, home),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "kpi-alerts-test-jwt-secret-" + "x" * 40,
    }


@contextlib.contextmanager
def running_api_server(home: Path, env: dict[str, str]) -> Iterator[AirflowApi]:
    """``airflow db migrate``, then ``airflow api-server`` until it serves the plugin's OpenAPI document."""
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    port = env["AIRFLOW__API__PORT"]
    log_path = home / "api-server.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    api = AirflowApi(f"http://127.0.0.1:{port}", home)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            try:
                if requests.get(f"{api.base_url}{API}/openapi.json", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        yield api
    finally:
        stop_process_tree(server.pid)
        log.close()


@pytest.fixture(scope="package")  # one server for the API and the page tests
def airflow_api(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[AirflowApi]:
    home = tmp_path_factory.mktemp("airflow-api")
    with running_api_server(home, api_server_env(stack, home, free_port())) as api:
        yield api
