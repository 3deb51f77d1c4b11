"""A report's period and the previous one from one Cube query (``reports.model.PeriodPair``): split, the
answer is exactly what asking the two queries apart gives, against the real Cube server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kpi_alerts.cube.client import CubeClient
from kpi_alerts.reports.periods import query_date_range, resolve_date_range
from kpi_alerts.reports.query_plan import period_pair, previous_series_query

pytestmark = pytest.mark.services

ORG1 = {"organization_id": 1}


def series(granularity: str, date_range: Any, *measures: str, **extra: Any) -> dict[str, Any]:
    td = {"dimension": "orders.created_at", "granularity": granularity, "dateRange": date_range}
    return {
        "measures": list(measures or ["orders.total_amount", "orders.count"]),
        "timeDimensions": [td],
        **extra,
    }


COMPLETED = [{"member": "orders.status", "operator": "equals", "values": ["completed"]}]
CASES = {
    "daily, two measures": (series("day", ["2026-03-08", "2026-03-14"]), "UTC"),
    "daily across a DST change": (series("day", ["2026-03-05", "2026-03-11"]), "America/Los_Angeles"),
    "hourly, half-hour zone": (series("hour", ["2026-06-01", "2026-06-02"]), "Asia/Kolkata"),
    "hourly across a DST change": (series("hour", ["2026-11-01", "2026-11-01"]), "America/Los_Angeles"),
    "last 7 days (Cube resolves it)": (series("day", "last 7 days"), "Europe/Berlin"),
    "last month: a previous month of another length": (series("day", "last month"), "UTC"),
    "non-additive, filtered, ordered by a measure": (
        series(
            "day",
            ["2026-02-01", "2026-02-10"],
            "orders.average_amount",
            "orders.completion_rate",
            filters=COMPLETED,
            order={"orders.average_amount": "desc"},
        ),
        "America/New_York",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_one_query_gives_exactly_the_two_answers(client: CubeClient, case: str) -> None:
    query, tz = CASES[case]
    now = datetime.now(UTC)
    pair = period_pair(query, tz, now)
    assert pair is not None and pair.query["limit"] >= 2 * 7  # one page, never fewer rows than buckets
    current, previous = pair.split(client.load(pair.query, security_context=ORG1, timezone=tz))

    solo = client.load(query, security_context=ORG1, timezone=tz)
    assert (current.columns, current.rows, current.timezone) == (solo.columns, solo.rows, solo.timezone)
    # the same query, but for the order paging adds (the pair is one page: it asks no more rows than buckets)
    assert {k: v for k, v in current.query.items() if k != "order"} == {
        k: v for k, v in solo.query.items() if k != "order"
    }
    date_range = resolve_date_range(query_date_range(query), tz, now)
    assert date_range is not None and pair.previous_query == previous_series_query(
        query, query["measures"][0], date_range
    )  # the key the report's builder asks it under
    alone = client.load(pair.previous_query, security_context=ORG1, timezone=tz)
    assert (previous.columns, previous.rows, previous.timezone) == (alone.columns, alone.rows, alone.timezone)
    assert current.rows and previous.rows  # the data covers both periods: the comparison is not vacuous


@pytest.mark.parametrize(
    "query",
    [
        series("day", ["2026-03-08", "2026-03-14"], dimensions=["orders.category"]),  # a breakdown
        series("day", ["2026-03-08", "2026-03-14"], limit=5),
        series("week", ["2026-03-04", "2026-03-31"]),  # weeks straddle the periods' edge
        series("month", "last 3 months"),
        {
            "measures": ["orders.count"],
            "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day"}],
        },
        {"measures": ["orders.count"]},
    ],
)
def test_queries_whose_rows_are_not_whole_buckets_of_days_are_asked_apart(query: dict[str, Any]) -> None:
    assert period_pair(query, "UTC", datetime(2026, 4, 1, tzinfo=UTC)) is None
