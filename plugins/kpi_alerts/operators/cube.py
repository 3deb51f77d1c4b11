"""``CubeQueryOperator``: one Cube.js query for one organization, in any DAG.

    CubeQueryOperator(
        task_id="revenue_by_day",
        organization_id=7,
        query={"measures": ["orders.total_amount"],
               "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day",
                                   "dateRange": "last 7 days"}]},
        timezone="Europe/Paris",
    )

The token sent to Cube is scoped to ``organization_id`` (minted per request by
:class:`~kpi_alerts.hooks.cube.CubeHook`), so the query sees that organization's rows only. The
result is returned through XCom when it is small (at most ``max_xcom_rows`` rows: columns, then rows
with exact ``Decimal`` measures and aware datetimes); a larger one is written to ``output_path`` as
CSV (exact numbers, spreadsheet-safe) and only the path and counts go to XCom.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from kpi_alerts.settings import CUBE_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kpi_alerts.kpi_data import KpiData


class CubeQueryOperator(BaseOperator):
    """Run a Cube query for one organization; return the rows (XCom) or write them to a CSV file.

    :param query: the Cube REST query (a mapping, or its JSON text; templated).
    :param organization_id: the organization the token is scoped to (templated).
    :param timezone: the IANA timezone the query runs in: it decides buckets and relative date
        ranges (templated).
    :param output_path: write the result here as CSV and return ``{"path", "rows", "columns"}``;
        without it the rows themselves are returned (templated).
    :param max_xcom_rows: above this many rows without ``output_path`` the task fails rather than
        push a large XCom.
    :param cube_conn_id: the Cube connection (type ``cube``, or ``http``).
    """

    template_fields: Sequence[str] = ("query", "organization_id", "timezone", "output_path")
    template_fields_renderers = {"query": "json"}
    ui_color = "#ede7f6"

    def __init__(
        self,
        *,
        query: Mapping[str, Any] | str,
        organization_id: int | str,
        timezone: str = "UTC",
        output_path: str | None = None,
        max_xcom_rows: int = 1000,
        cube_conn_id: str = CUBE_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.query = query
        self.organization_id = organization_id
        self.timezone = timezone
        self.output_path = output_path
        self.max_xcom_rows = max_xcom_rows
        self.cube_conn_id = cube_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        # Lazy: the Cube client (requests, PyJWT) loads when the task runs, not when its DAG is parsed.
        from kpi_alerts.hooks.cube import CubeHook

        query = json.loads(self.query) if isinstance(self.query, str) else dict(self.query)
        organization_id = int(self.organization_id)
        with CubeHook(self.cube_conn_id) as hook:
            data = hook.load(
                query, security_context={"organization_id": organization_id}, timezone=self.timezone
            )
        self.log.info("Cube returned %d row(s) for organization %d", len(data.rows), organization_id)
        if self.output_path:
            return write_csv(data, Path(self.output_path))
        if len(data.rows) > self.max_xcom_rows:
            raise ValueError(
                f"{len(data.rows)} rows is more than max_xcom_rows={self.max_xcom_rows}: "
                "set output_path to write them to a file"
            )
        return small_result(data)


def small_result(data: KpiData) -> dict[str, Any]:
    """The result as an XCom value: the columns (key, title, kind, type) and the rows."""
    return {
        "columns": [{"key": c.key, "title": c.title, "kind": c.kind, "type": c.type} for c in data.columns],
        "rows": [dict(row) for row in data.rows],
        "timezone": data.timezone,
    }


def write_csv(data: KpiData, path: Path) -> dict[str, Any]:
    """The rows as CSV (UTF-8, RFC 4180): exact numbers, ISO 8601 times, spreadsheet formulas neutralised."""
    from kpi_alerts.reports.formatting import neutralise_formula

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, datetime):
            return value.isoformat()
        return neutralise_formula(str(value))

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([c.key for c in data.columns])
        out.writerows([cell(row.get(c.key)) for c in data.columns] for row in data.rows)
    return {"path": str(path), "rows": len(data.rows), "columns": [c.key for c in data.columns]}
