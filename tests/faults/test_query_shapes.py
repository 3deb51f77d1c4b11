"""Fault: bad Cube query shapes accepted, then failing late and loudly (issue 9, item 6).

``"measures": "orders.count"``, ``[{"a": 1}]``, ``"timeDimensions": ["x"]``, unknown keys and huge
queries used to be accepted at creation; at run time they ended as ``internal error: AttributeError``,
and when a failure notice was due, ``describe_period()`` raised inside the failure path, so the notice
was never sent. Cube's "query limit exceeded" 500 was retried as if Cube were down. Real PostgreSQL,
Cube.js and SMTP servers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient, CubeQueryError
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_store import create_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import AlertFailed, RunSettings, process_alert
from tests.factories import threshold_spec
from tests.fault_table import FaultTable, duplicates

pytestmark = [pytest.mark.faults, pytest.mark.services]

SLOT = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
BAD_SHAPES = [
    pytest.param({"measures": "orders.count"}, "measures", id="measures-a-string"),
    pytest.param({"measures": [{"a": 1}]}, "measures", id="measures-objects"),
    pytest.param({"measures": ["orders.count"], "timeDimensions": ["x"]}, "timeDimensions", id="td-strings"),
    pytest.param({"measures": ["orders.count"], "bogus": 1}, "bogus", id="unknown-key"),
    pytest.param(
        {
            "measures": ["orders.count"],
            "filters": [{"member": "orders.category", "operator": "equals", "values": ["x" * 100] * 1000}],
        },
        "at most",
        id="huge-query",
    ),
]


def orders_threshold(cube_query: Any) -> dict[str, Any]:
    return threshold_spec("Orders", cube_query=cube_query)


@pytest.mark.parametrize(("query", "named"), BAD_SHAPES)
def test_bad_shapes_are_refused_at_creation(db: psycopg.Connection[Any], query: Any, named: str) -> None:
    with pytest.raises(AlertValidationError) as info:
        create_alert(db, orders_threshold(query), now=SLOT)
    assert named in str(info.value) and len(str(info.value)) < 400
    assert db.execute("SELECT count(*) AS n FROM kpi_alerts").fetchone()["n"] == 0


def test_a_bad_shape_stored_by_sql_fails_permanently_and_the_notice_still_goes_out(
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    cube_server: CubeServer,
    fault_table: FaultTable,
) -> None:
    alert_id = create_alert(db, orders_threshold({"measures": ["orders.count"]}), now=SLOT).alert_id
    db.execute(  # the seed's way: plain SQL, no validation
        "UPDATE kpi_alerts SET cube_query = %s WHERE id = %s",
        (json.dumps({"measures": ["orders.count"], "timeDimensions": ["x"]}), alert_id),
    )
    db.execute("UPDATE cron_jobs SET next_run_at = %s", (SLOT,))
    cube = CubeClient(cube_server.url, api_secret=cube_server.api_secret, retries=0)
    settings = RunSettings(
        logical_time=SLOT + timedelta(minutes=5), final_attempt=False, claimant=Claimant(dag_run_id="r")
    )
    with pytest.raises(AlertFailed) as info:  # permanent: not released for a retry, even before the last try
        process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings)
    assert "timeDimensions" in str(info.value) and "internal error" not in str(info.value)
    row = db.execute("SELECT status, error FROM cron_job_results").fetchone()
    assert row["status"] == "failed" and "timeDimensions" in row["error"]
    messages = mailbox.messages()  # the ERROR notice reached the recipients (no owners set)
    assert len(messages) == 1 and "ops@org1.example.com" in str(messages[0]["X-Envelope-To"])
    fault_table.record(
        fault='query stored by SQL with "timeDimensions": ["x"]',
        alerts=1,
        messages=len(messages),
        duplicates=duplicates(messages),
        lost=0,
        run_state="failed (permanent, notice sent)",
    )


def test_cube_query_limit_exceeded_is_permanent_not_retried(cube_server: CubeServer) -> None:
    cube = CubeClient(cube_server.url, api_secret=cube_server.api_secret, retries=3, backoff=0.01)
    with pytest.raises(CubeQueryError, match="query limit"):
        cube.load(
            {"measures": ["orders.count"], "limit": 10**9},
            security_context={"organization_id": 1},
            timezone="UTC",
        )
