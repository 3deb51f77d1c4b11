"""Issue 23 item 4: a Cube answer that never ends. The real Cube.js behind the fault suite's proxy
(``cube_proxy``: a real Cube cannot be made to trickle its answer), which sends the headers, then one
byte of the body every 0.2 s.

Before: ``request_timeout`` (30 s) bounded each socket read, the Continue-wait deadline each reply, and
nothing the whole answer: ``preview`` still hung after 240 s, and in a batch one such answer held its
chunk until the run's timeout and its claims until the lease. Now the body must arrive whole within
``request_timeout``: the alert fails transiently (retried, inside the misfire window) in seconds.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from kpi_alerts.cube.client import CubeClient, CubeTimeoutError
from tests.fault_table import FaultTable
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger
from tests.faults.cube_proxy import cube_proxy

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

ORG1 = {"organization_id": 1}


def test_a_trickling_answer_is_abandoned_at_the_deadline(cube_server: CubeServer) -> None:
    with cube_proxy(cube_server.url) as (url, proxy):
        proxy.trickle = 0.2
        with CubeClient(url, api_secret=cube_server.api_secret, request_timeout=2, retries=0) as cube:
            started = time.monotonic()
            with pytest.raises(
                CubeTimeoutError, match=r"answer did not finish within 2 s \(\d+ bytes received"
            ):
                cube.load({"measures": ["orders.count"]}, security_context=ORG1, timezone="UTC")
            assert time.monotonic() - started < 5  # before: until the proxy hung up (15 s), then retried


def test_a_run_whose_cube_answer_never_ends_fails_in_seconds_and_keeps_the_slot(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    cube_server: CubeServer,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    fault_table: FaultTable,
) -> None:
    due_report(db, "Daily revenue", ["cfo@org1.example.com"])
    with cube_proxy(cube_server.url) as (url, proxy):
        proxy.trickle = 0.2
        port = int(url.rsplit(":", 1)[1])
        conn = json.loads(airflow_connections["AIRFLOW_CONN_CUBE_DEFAULT"])
        conn.update(port=port, extra={"request_timeout": 2, "retries": 0})
        monkeypatch.setenv("AIRFLOW_CONN_CUBE_DEFAULT", json.dumps(conn))
        started = time.monotonic()
        run = fast_retries.test(logical_date=LOGICAL_TIME)
        elapsed = time.monotonic() - started

    (row,) = ledger(db)
    fault_table.record(
        fault=f"Cube sends headers, then 1 byte per 0.2 s (3 tries took {elapsed:.0f} s)",
        alerts=1,
        messages=0,
        duplicates=0,
        lost=0 if row["status"] == "retrying" else 1,
        run_state=str(run.state),
    )
    assert row["status"] == "retrying"  # later ticks retry it inside the misfire window
    assert all("did not finish within 2 s" in entry["error"] for entry in row["attempt_history"])
    assert str(run.state) == "failed"
    assert elapsed < 60
