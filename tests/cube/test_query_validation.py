"""Query validation against the real server's /v1/meta, and the timezone the client injects."""

from __future__ import annotations

from typing import Any

import pytest

from kpi_alerts.cube.client import CubeClient
from kpi_alerts.cube.rest_format import validate_cube_query, with_timezone
from kpi_alerts.errors import AlertValidationError

pytestmark = pytest.mark.services

TD = {"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 7 days"}


@pytest.fixture(scope="module")
def meta(cube_server: Any) -> dict[str, Any]:
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as cube:
        return cube.meta({"organization_id": 1})


class TestMeta:
    def test_meta_lists_the_cubes(self, meta: dict[str, Any]) -> None:
        cubes = {c["name"]: c for c in meta["cubes"]}
        assert {"orders", "slow_orders"} <= set(cubes)
        assert "orders.total_amount" in {m["name"] for m in cubes["orders"]["measures"]}


class TestValid:
    @pytest.mark.parametrize(
        "query",
        [
            pytest.param({"measures": ["orders.count"]}, id="minimal"),
            pytest.param(
                {
                    "measures": ["orders.total_amount", "orders.count"],
                    "dimensions": ["orders.category"],
                    "timeDimensions": [{**TD, "dateRange": ["2026-01-01", "2026-01-31T23:59:59"]}],
                    "filters": [
                        {"member": "orders.status", "operator": "equals", "values": ["completed"]},
                        {"or": [{"member": "orders.category", "operator": "set"}]},
                        {"member": "orders.count", "operator": "gt", "values": [3]},
                    ],
                    "order": [["orders.total_amount", "desc"]],
                    "limit": 100,
                    "timezone": "Europe/Paris",
                },
                id="full",
            ),
            pytest.param({"measures": ["orders.count"], "timeDimensions": [TD]}, id="relative-range"),
            pytest.param(
                {"measures": ["orders.count"], "dimensions": ["orders.created_at.month"]}, id="dim-gran"
            ),
        ],
    )
    def test_valid(self, meta: dict[str, Any], query: dict[str, Any]) -> None:
        validate_cube_query(query, meta, kpi_measure=query["measures"][0])


class TestInvalid:
    @pytest.mark.parametrize(
        ("query", "kpi_measure", "message"),
        [
            pytest.param(["orders.count"], None, "must be a JSON object, got list", id="not-a-dict"),
            pytest.param({}, None, "no measures", id="no-measures"),
            pytest.param({"measures": []}, None, "no measures", id="empty-measures"),
            pytest.param(
                {"measures": ["orders.nope"]}, None, "unknown member 'orders.nope'", id="unknown-measure"
            ),
            pytest.param(
                {"measures": ["orders.totl_amount"]},
                None,
                "did you mean 'orders.total_amount'?",
                id="did-you-mean",
            ),
            pytest.param(
                {"measures": ["orders.status"]},
                None,
                "'orders.status' is a dimension, not a measure",
                id="dim",
            ),
            pytest.param(
                {"measures": ["orders.count"]},
                "orders.status",
                "KPI measure: 'orders.status' is a dimension, not a measure",
                id="kpi-not-measure",
            ),
            pytest.param(
                {"measures": ["orders.count"]},
                "orders.total_amount",
                "'orders.total_amount' is not among the query's measures",
                id="kpi-not-in-query",
            ),
            pytest.param(
                {"measures": ["orders.count"], "timeDimensions": [{**TD, "granularity": "fortnight"}]},
                None,
                "granularity 'fortnight' is not one of",
                id="bad-granularity",
            ),
            pytest.param(
                {"measures": ["orders.count"], "timeDimensions": [{**TD, "dateRange": 7}]},
                None,
                "dateRange must be [start, end]",
                id="date-range-type",
            ),
            pytest.param(
                {"measures": ["orders.count"], "timeDimensions": [{**TD, "dateRange": ["2026-13-01", "x"]}]},
                None,
                "'2026-13-01' is not an ISO date",
                id="date-range-value",
            ),
            pytest.param(
                {"measures": ["orders.count"], "timeDimensions": [{**TD, "dimension": "orders.status"}]},
                None,
                "is a string dimension, not a time dimension",
                id="not-time",
            ),
            pytest.param(
                {"measures": ["orders.count"], "filters": [{"member": "orders.status", "operator": "is"}]},
                None,
                "unknown filter operator 'is'",
                id="operator",
            ),
            pytest.param(
                {
                    "measures": ["orders.count"],
                    "filters": [{"member": "orders.status", "operator": "equals"}],
                },
                None,
                "needs values",
                id="no-values",
            ),
            pytest.param(
                {"measures": ["orders.count"], "limit": 0}, None, "limit must be an integer >= 1", id="lim"
            ),
            pytest.param(
                {"measures": ["orders.count"], "limit": 60000}, None, "exceeds Cube's maximum", id="max"
            ),
            pytest.param({"measures": ["orders.count"], "timezone": "Mars/Base"}, None, "timezone", id="tz"),
            pytest.param(
                {"measures": ["orders.count"], "measure": ["x"]}, None, "unknown query keys", id="key"
            ),
            pytest.param({"measures": "orders.count"}, None, "measures must be a list", id="measures-str"),
        ],
    )
    def test_invalid(self, meta: dict[str, Any], query: Any, kpi_measure: str | None, message: str) -> None:
        with pytest.raises(AlertValidationError) as caught:
            validate_cube_query(query, meta, kpi_measure=kpi_measure)
        assert message in str(caught.value)

    def test_all_problems_in_one_message(self, meta: dict[str, Any]) -> None:
        with pytest.raises(AlertValidationError) as caught:
            validate_cube_query({"measures": ["orders.nope"], "dimensions": ["orders.colour"]}, meta)
        assert "orders.nope" in str(caught.value) and "orders.colour" in str(caught.value)

    def test_server_agrees_the_valid_query_runs(self, meta: dict[str, Any], client: CubeClient) -> None:
        query = {"measures": ["orders.count"], "timeDimensions": [TD]}
        validate_cube_query(query, meta)
        client.load(query, security_context={"organization_id": 1}, timezone="UTC")


class TestTimezone:
    def test_with_timezone_copies(self) -> None:
        query = {"measures": ["orders.count"], "timezone": "UTC"}
        assert with_timezone(query, "Asia/Tokyo") == {"measures": ["orders.count"], "timezone": "Asia/Tokyo"}
        assert query["timezone"] == "UTC"

    def test_with_timezone_rejects_unknown(self) -> None:
        with pytest.raises(AlertValidationError, match="unknown timezone 'Nowhere/Land'"):
            with_timezone({}, "Nowhere/Land")

    def test_load_uses_the_alert_timezone_over_the_query_one(self, client: CubeClient) -> None:
        query = {"measures": ["orders.count"], "timeDimensions": [TD], "timezone": "UTC"}
        data = client.load(query, security_context={"organization_id": 1}, timezone="Asia/Kolkata")
        assert data.query["timezone"] == "Asia/Kolkata"
        assert query["timezone"] == "UTC"  # the caller's query is not mutated

    def test_load_rejects_unknown_timezone_before_sending(self, client: CubeClient) -> None:
        with pytest.raises(AlertValidationError, match="unknown timezone"):
            client.load(
                {"measures": ["orders.count"]}, security_context={"organization_id": 1}, timezone="PST8"
            )
