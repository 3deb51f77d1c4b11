"""What `make env` (``python -m devstack env``) and `make demo` give a newcomer (README, issue 12 part 6)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.demo import DEMO_DB
from devstack.stack import ALERTS_DB

pytestmark = pytest.mark.services


def test_make_env_keeps_airflows_ui_and_api_on_this_machine(pg: object) -> None:
    env = subprocess.run(
        [sys.executable, "-m", "devstack", "env"], capture_output=True, text=True, check=True, timeout=300
    )
    lines = env.stdout.splitlines()
    assert "export AIRFLOW__API__HOST=127.0.0.1" in lines  # `airflow standalone` listens on 0.0.0.0 otherwise
    assert any(
        line.startswith("export AIRFLOW_CONN_KPI_ALERTS_DB=") and line.endswith(f"/{ALERTS_DB}")
        for line in lines
    )


def test_the_demo_never_recreates_the_database_make_env_points_at() -> None:
    assert DEMO_DB != ALERTS_DB
