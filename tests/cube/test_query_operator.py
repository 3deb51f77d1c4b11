"""CubeQueryOperator against the real Cube server: scoped to one organization, XCom or CSV file."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from kpi_alerts.operators.cube import CubeQueryOperator

pytestmark = pytest.mark.services

BY_STATUS = {"measures": ["orders.count"], "dimensions": ["orders.status"]}


@pytest.fixture
def cube_conn(monkeypatch: pytest.MonkeyPatch, cube_server: CubeServer) -> None:
    conn = {
        "conn_type": "cube",
        "host": "127.0.0.1",
        "port": cube_server.port,
        "schema": "http",
        "password": cube_server.api_secret,
    }
    monkeypatch.setenv("AIRFLOW_CONN_CUBE_DEFAULT", json.dumps(conn))


def counts_by_status(analytics: psycopg.Connection[Any], org: int) -> dict[str, Decimal]:
    rows = analytics.execute(
        "SELECT status, count(*) FROM orders WHERE organization_id = %s GROUP BY status", (org,)
    ).fetchall()
    return {status: Decimal(n) for status, n in rows}


class TestCubeQueryOperator:
    def test_keyword_only_and_templated(self) -> None:
        with pytest.raises(TypeError):
            CubeQueryOperator("t", BY_STATUS, 1)  # type: ignore[misc]
        op = CubeQueryOperator(task_id="t", query=BY_STATUS, organization_id="{{ params.org }}")
        assert set(op.template_fields) == {"query", "organization_id", "timezone", "output_path"}

    @pytest.mark.parametrize("org", [pytest.param(1, id="org-1"), pytest.param(2, id="org-2")])
    def test_returns_the_organizations_rows_only(
        self, cube_conn: None, analytics: psycopg.Connection[Any], org: int
    ) -> None:
        op = CubeQueryOperator(task_id="by_status", query=json.dumps(BY_STATUS), organization_id=str(org))

        result = op.execute({})  # type: ignore[arg-type]

        assert [c["key"] for c in result["columns"]] == ["orders.status", "orders.count"]
        got = {r["orders.status"]: r["orders.count"] for r in result["rows"]}
        assert got == counts_by_status(analytics, org)

    def test_a_large_result_goes_to_a_file_not_xcom(
        self, cube_conn: None, analytics: psycopg.Connection[Any], tmp_path: Path
    ) -> None:
        too_small = CubeQueryOperator(task_id="q", query=BY_STATUS, organization_id=1, max_xcom_rows=1)
        with pytest.raises(ValueError, match="set output_path"):
            too_small.execute({})  # type: ignore[arg-type]

        out = tmp_path / "out" / "by_status.csv"
        op = CubeQueryOperator(task_id="q", query=BY_STATUS, organization_id=1, output_path=str(out))
        result = op.execute({})  # type: ignore[arg-type]

        expected = counts_by_status(analytics, 1)
        assert result == {
            "path": str(out),
            "rows": len(expected),
            "columns": ["orders.status", "orders.count"],
        }
        with out.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        assert {status: Decimal(n) for status, n in rows[1:]} == expected
