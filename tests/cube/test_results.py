"""Cube's answers match the same aggregation computed directly in SQL on the analytics database."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from kpi_alerts.cube.client import CubeClient

pytestmark = pytest.mark.services

ORG1 = {"organization_id": 1}


def sql_rows(conn: psycopg.Connection[Any], query: str, *params: object) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


class TestTotals:
    def test_total_count_and_sum(self, client: CubeClient, analytics: psycopg.Connection[Any]) -> None:
        data = client.load(
            {"measures": ["orders.count", "orders.total_amount", "orders.average_amount"]},
            security_context=ORG1,
            timezone="UTC",
        )
        [(count, total, average)] = sql_rows(
            analytics,
            "SELECT count(*), sum(total_amount), avg(total_amount) FROM orders WHERE organization_id = 1",
        )
        [row] = data.rows
        assert row["orders.count"] == Decimal(count)
        assert row["orders.total_amount"] == total
        assert row["orders.average_amount"] == pytest.approx(average)
        assert all(isinstance(v, Decimal) for v in row.values())

    def test_columns_from_the_annotation(self, client: CubeClient) -> None:
        data = client.load(
            {
                "measures": ["orders.total_amount", "orders.count"],
                "dimensions": ["orders.category"],
                "timeDimensions": [
                    {
                        "dimension": "orders.created_at",
                        "granularity": "month",
                        "dateRange": ["2026-01-01", "2026-01-31"],
                    }
                ],
            },
            security_context=ORG1,
            timezone="UTC",
        )
        assert [(c.key, c.kind) for c in data.columns] == [
            ("orders.created_at.month", "time_dimension"),
            ("orders.category", "dimension"),
            ("orders.total_amount", "measure"),
            ("orders.count", "measure"),
        ]
        revenue = data.column("orders.total_amount")
        assert (revenue.short_title, revenue.format) == ("Revenue", "currency")
        assert data.time_dimension is not None and data.time_dimension.type == "time"
        assert data.timezone == "UTC" and data.query["timezone"] == "UTC"


class TestBuckets:
    @pytest.mark.parametrize("tz", ["UTC", "Pacific/Auckland"])
    def test_by_day_in_a_timezone(
        self, client: CubeClient, analytics: psycopg.Connection[Any], tz: str
    ) -> None:
        data = client.load(
            {
                "measures": ["orders.count", "orders.total_amount"],
                "timeDimensions": [
                    {
                        "dimension": "orders.created_at",
                        "granularity": "day",
                        "dateRange": ["2026-03-01", "2026-03-31"],
                    }
                ],
            },
            security_context=ORG1,
            timezone=tz,
        )
        expected = sql_rows(
            analytics,
            """
            SELECT date_trunc('day', created_at AT TIME ZONE %s) AS day, count(*), sum(total_amount)
            FROM orders
            WHERE organization_id = 1
              AND created_at >= (timestamp '2026-03-01' AT TIME ZONE %s)
              AND created_at < (timestamp '2026-04-01' AT TIME ZONE %s)
            GROUP BY 1 ORDER BY 1
            """,
            tz,
            tz,
            tz,
        )
        zone = ZoneInfo(tz)
        got = [(r["orders.created_at.day"], r["orders.count"], r["orders.total_amount"]) for r in data.rows]
        assert got == [(day.replace(tzinfo=zone), Decimal(n), total) for day, n, total in expected]
        first = got[0][0]
        assert isinstance(first, datetime) and first.utcoffset() == zone.utcoffset(first.replace(tzinfo=None))

    def test_timezones_bucket_differently(self, client: CubeClient) -> None:
        query = {
            "measures": ["orders.total_amount"],
            "timeDimensions": [
                {
                    "dimension": "orders.created_at",
                    "granularity": "day",
                    "dateRange": ["2026-06-01", "2026-06-07"],
                }
            ],
        }
        utc = client.load(query, security_context=ORG1, timezone="UTC")
        auckland = client.load(query, security_context=ORG1, timezone="Pacific/Auckland")
        assert [r["orders.total_amount"] for r in utc.rows] != [
            r["orders.total_amount"] for r in auckland.rows
        ]


class TestFilters:
    def test_by_category_with_filter_and_date_range(
        self, client: CubeClient, analytics: psycopg.Connection[Any]
    ) -> None:
        data = client.load(
            {
                "measures": ["orders.count", "orders.total_amount"],
                "dimensions": ["orders.category"],
                "filters": [{"member": "orders.status", "operator": "equals", "values": ["completed"]}],
                "timeDimensions": [
                    {"dimension": "orders.created_at", "dateRange": ["2026-02-01", "2026-04-30"]}
                ],
                "order": {"orders.category": "asc"},
            },
            security_context=ORG1,
            timezone="America/Los_Angeles",
        )
        expected = sql_rows(
            analytics,
            """
            SELECT category, count(*), sum(total_amount) FROM orders
            WHERE organization_id = 1 AND status = 'completed'
              AND created_at >= (timestamp '2026-02-01' AT TIME ZONE 'America/Los_Angeles')
              AND created_at < (timestamp '2026-05-01' AT TIME ZONE 'America/Los_Angeles')
            GROUP BY category ORDER BY category
            """,
        )
        got = [(r["orders.category"], r["orders.count"], r["orders.total_amount"]) for r in data.rows]
        assert got == [(c, Decimal(n), total) for c, n, total in expected]
        assert len(got) == 3

    def test_or_filter_and_measure_filter(
        self, client: CubeClient, analytics: psycopg.Connection[Any]
    ) -> None:
        data = client.load(
            {
                "measures": ["orders.count"],
                "dimensions": ["orders.status"],
                "filters": [
                    {
                        "or": [
                            {"member": "orders.status", "operator": "equals", "values": ["pending"]},
                            {"member": "orders.status", "operator": "equals", "values": ["cancelled"]},
                        ]
                    },
                    {"member": "orders.count", "operator": "gt", "values": ["0"]},
                ],
            },
            security_context=ORG1,
            timezone="UTC",
        )
        expected = dict(
            sql_rows(
                analytics,
                "SELECT status, count(*) FROM orders WHERE organization_id = 1"
                " AND status IN ('pending', 'cancelled') GROUP BY status",
            )
        )
        assert {r["orders.status"]: r["orders.count"] for r in data.rows} == {
            k: Decimal(v) for k, v in expected.items()
        }


def test_measure_columns_carry_their_aggregation_from_meta(client: CubeClient) -> None:
    """/load says "number" for every measure; the KPI rule needs count/sum vs avg (from /v1/meta)."""
    data = client.load(
        {
            "measures": ["orders.total_amount", "orders.average_amount", "orders.count"],
            "dimensions": ["orders.category"],
        },
        security_context={"organization_id": 1},
        timezone="UTC",
    )
    assert {c.key: c.type for c in data.measures} == {
        "orders.total_amount": "sum",
        "orders.average_amount": "avg",
        "orders.count": "count",
    }
