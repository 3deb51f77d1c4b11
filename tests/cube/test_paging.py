"""Results larger than one page are fetched with limit/offset in a stable order, up to a cap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.cube import CubeServer
from kpi_alerts.cube.client import CubeClient, CubeQueryError

pytestmark = pytest.mark.services

ORG1 = {"organization_id": 1}
# ~3 rows per day (category) over a year: ties inside each day bucket, so the order must break them.
BY_DAY_AND_CATEGORY = {
    "measures": ["orders.count", "orders.total_amount"],
    "dimensions": ["orders.category"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-01-01", "2026-12-31"]}
    ],
}


def counting(cube: CubeClient) -> list[dict[str, Any]]:
    """Record the query of every /load request the client sends (not its one /meta lookup)."""
    sent: list[dict[str, Any]] = []
    request = cube.session.request

    def spy(method: str, url: str, **kwargs: Any) -> Any:
        if url.endswith("/load"):
            sent.append(json.loads(json.dumps(kwargs.get("json", {}))).get("query", {}))
        return request(method, url, **kwargs)

    cube.session.request = spy  # type: ignore[method-assign,assignment]
    return sent


def key(row: Any) -> tuple[Any, ...]:
    return (row["orders.created_at.day"], row["orders.category"])


class TestPaging:
    def test_pages_add_up_to_the_single_request(self, cube_server: CubeServer, client: CubeClient) -> None:
        whole = client.load(BY_DAY_AND_CATEGORY, security_context=ORG1, timezone="UTC")
        with CubeClient(cube_server.url, api_secret=cube_server.api_secret, page_size=100) as cube:
            sent = counting(cube)
            paged = cube.load(BY_DAY_AND_CATEGORY, security_context=ORG1, timezone="UTC")
        assert len(whole.rows) > 900
        assert paged.rows == whole.rows
        assert len({key(r) for r in paged.rows}) == len(paged.rows)  # no duplicates across pages
        assert len(sent) == len(whole.rows) // 100 + 1
        assert [q["offset"] for q in sent] == [100 * i for i in range(len(sent))]
        assert sent[0]["order"] == [["orders.created_at", "asc"], ["orders.category", "asc"]]

    def test_explicit_limit_is_one_request(self, cube_server: CubeServer) -> None:
        with CubeClient(cube_server.url, api_secret=cube_server.api_secret, page_size=10) as cube:
            sent = counting(cube)
            data = cube.load({**BY_DAY_AND_CATEGORY, "limit": 25}, security_context=ORG1, timezone="UTC")
        assert len(data.rows) == 25
        assert len(sent) == 1 and "offset" not in sent[0]

    def test_result_over_the_cap_is_an_error(self, cube_server: CubeServer) -> None:
        with (
            CubeClient(
                cube_server.url, api_secret=cube_server.api_secret, page_size=40, max_rows=100
            ) as cube,
            pytest.raises(CubeQueryError, match="exceeds 100 rows"),
        ):
            cube.load(BY_DAY_AND_CATEGORY, security_context=ORG1, timezone="UTC")

    def test_result_exactly_at_the_cap_is_fine(self, cube_server: CubeServer) -> None:
        day = {
            "dimension": "orders.created_at",
            "granularity": "day",
            "dateRange": ["2026-01-01", "2026-04-10"],
        }
        query = {**BY_DAY_AND_CATEGORY, "dimensions": [], "timeDimensions": [day]}
        with CubeClient(
            cube_server.url, api_secret=cube_server.api_secret, page_size=30, max_rows=100
        ) as cube:
            assert len(cube.load(query, security_context=ORG1, timezone="UTC").rows) == 100

    def test_user_order_is_kept_and_completed(self, cube_server: CubeServer) -> None:
        query = {**BY_DAY_AND_CATEGORY, "order": {"orders.total_amount": "desc"}}
        with CubeClient(cube_server.url, api_secret=cube_server.api_secret, page_size=200) as cube:
            sent = counting(cube)
            data = cube.load(query, security_context=ORG1, timezone="UTC")
        amounts: list[Any] = [r["orders.total_amount"] for r in data.rows]
        assert amounts == sorted(amounts, reverse=True)
        assert sent[0]["order"][0] == ["orders.total_amount", "desc"]
