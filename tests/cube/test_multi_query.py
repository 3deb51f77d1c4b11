"""Several queries of one organization in one request (``CubeClient.load_many``, Cube's ``queryType:
multi``): the same rows as asking each alone, scoped to the organization, in order."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.cube import CubeServer
from kpi_alerts.cube.client import CubeClient, CubeQueryError
from tests.cube.test_paging import BY_DAY_AND_CATEGORY, counting

pytestmark = pytest.mark.services

ORG1, ORG2 = {"organization_id": 1}, {"organization_id": 2}
DAILY = {
    "measures": ["orders.total_amount", "orders.count"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-03-08", "2026-03-14"]}
    ],
}
PREVIOUS = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-03-01", "2026-03-07"]}
    ],
}
COMPLETED = {**DAILY, "measures": ["orders.average_amount"], "filters": [
    {"member": "orders.status", "operator": "equals", "values": ["completed"]}]}  # fmt: skip
TOTAL = {"measures": ["orders.average_amount"]}  # no granularity: Cube will not take it with others


def alone(client: CubeClient, queries: list[dict[str, Any]], context: dict[str, int], tz: str) -> list[Any]:
    return [client.load(q, security_context=context, timezone=tz) for q in queries]


class TestLoadMany:
    def test_same_answers_as_one_by_one_in_one_request(self, client: CubeClient) -> None:
        queries = [DAILY, PREVIOUS, COMPLETED]
        expected = alone(client, queries, ORG1, "America/Los_Angeles")
        sent = counting(client)
        got = client.load_many(queries, security_context=ORG1, timezone="America/Los_Angeles")
        assert len(sent) == 1 and isinstance(sent[0], list) and len(sent[0]) == 3
        assert [d.rows for d in got] == [d.rows for d in expected]
        assert [d.columns for d in got] == [d.columns for d in expected]  # titles, aggregation types
        assert all(q["timezone"] == "America/Los_Angeles" for q in sent[0])
        assert got[0].rows and got[1].rows and got[2].rows
        assert got[0].rows != got[1].rows  # each query its own answer, in order

    def test_queries_without_one_granularity_are_asked_one_by_one(self, client: CubeClient) -> None:
        weekly = {**DAILY, "timeDimensions": [{**DAILY["timeDimensions"][0], "granularity": "week"}]}
        for queries in ([DAILY, TOTAL], [DAILY, weekly]):
            sent = counting(client)
            got = client.load_many(queries, security_context=ORG1, timezone="UTC")
            assert [d.rows for d in got] == [d.rows for d in alone(client, queries, ORG1, "UTC")]
            assert len(sent) >= 2 and all(isinstance(q, dict) for q in sent)

    def test_scoped_to_the_organization(self, client: CubeClient) -> None:
        one = client.load_many([DAILY, PREVIOUS], security_context=ORG1, timezone="UTC")
        two = client.load_many([DAILY, PREVIOUS], security_context=ORG2, timezone="UTC")
        assert [d.rows for d in two] == [d.rows for d in alone(client, [DAILY, PREVIOUS], ORG2, "UTC")]
        assert one[0].rows != two[0].rows  # the tenancy rewrite applies to every query of the request

    def test_one_query_is_one_plain_request(self, client: CubeClient) -> None:
        sent = counting(client)
        [data] = client.load_many([DAILY], security_context=ORG1, timezone="UTC")
        assert len(sent) == 1 and isinstance(sent[0], dict)
        assert data.rows == client.load(DAILY, security_context=ORG1, timezone="UTC").rows

    def test_a_result_larger_than_a_page_is_paged_alone(
        self, cube_server: CubeServer, client: CubeClient
    ) -> None:
        whole = client.load(BY_DAY_AND_CATEGORY, security_context=ORG1, timezone="UTC")
        with CubeClient(cube_server.url, api_secret=cube_server.api_secret, page_size=100) as cube:
            sent = counting(cube)
            big, small = cube.load_many([BY_DAY_AND_CATEGORY, DAILY], security_context=ORG1, timezone="UTC")
        assert big.rows == whole.rows and len(whole.rows) > 900
        assert small.rows == client.load(DAILY, security_context=ORG1, timezone="UTC").rows
        assert isinstance(sent[0], list)  # the multi-query, then the big one's pages alone
        assert len(sent) == 1 + len(whole.rows) // 100 + 1

    def test_a_bad_query_fails_the_request(self, client: CubeClient) -> None:
        with pytest.raises(CubeQueryError, match="nope"):
            client.load_many(
                [DAILY, {**DAILY, "measures": ["orders.nope"]}], security_context=ORG1, timezone="UTC"
            )
