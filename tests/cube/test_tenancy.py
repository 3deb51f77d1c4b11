"""Tenant isolation: the organization in the token decides which rows Cube reads, whatever the query says."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import jwt
import psycopg
import pytest
import requests

from devstack.cube import CubeServer
from kpi_alerts.cube.client import CubeAuthError, CubeClient
from kpi_alerts.errors import AlertValidationError

pytestmark = pytest.mark.services

TOTALS = {"measures": ["orders.count", "orders.total_amount"]}


def token(secret: str, **claims: Any) -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, secret, algorithm="HS256")


class TestIsolation:
    @pytest.mark.parametrize("org", [1, 2])
    def test_each_org_sees_its_own_totals(
        self, client: CubeClient, analytics: psycopg.Connection[Any], org: int
    ) -> None:
        [row] = client.load(TOTALS, security_context={"organization_id": org}, timezone="UTC").rows
        count, total = analytics.execute(
            "SELECT count(*), sum(total_amount) FROM orders WHERE organization_id = %s", (org,)
        ).fetchone()  # type: ignore[misc]
        assert (row["orders.count"], row["orders.total_amount"]) == (Decimal(count), total)

    def test_filter_for_another_org_returns_nothing(self, client: CubeClient) -> None:
        query = {
            **TOTALS,
            "dimensions": ["orders.organization_id"],
            "filters": [{"member": "orders.organization_id", "operator": "equals", "values": ["2"]}],
        }
        assert client.load(query, security_context={"organization_id": 1}, timezone="UTC").rows == ()

    def test_or_filter_cannot_widen_the_tenant(self, client: CubeClient) -> None:
        query = {
            "measures": ["orders.count"],
            "dimensions": ["orders.organization_id"],
            "filters": [
                {
                    "or": [
                        {"member": "orders.organization_id", "operator": "equals", "values": ["2"]},
                        {"member": "orders.organization_id", "operator": "set"},
                    ]
                }
            ],
        }
        data = client.load(query, security_context={"organization_id": 1}, timezone="UTC")
        assert {r["orders.organization_id"] for r in data.rows} == {"1"}

    def test_other_cubes_are_filtered_too(self, client: CubeClient) -> None:
        data = client.load(
            {"measures": ["orders.count"], "dimensions": ["orders.organization_id"]},
            security_context={"organization_id": 2},
            timezone="UTC",
        )
        assert [r["orders.organization_id"] for r in data.rows] == ["2"]


class TestTokens:
    @pytest.mark.parametrize(
        "claims",
        [
            pytest.param({}, id="no-organization"),
            pytest.param({"organization_id": "1"}, id="string-organization"),
            pytest.param({"organization_id": 1.5}, id="float-organization"),
            pytest.param({"organization_id": None}, id="null-organization"),
        ],
    )
    def test_server_refuses_token_without_integer_org(
        self, cube_server: CubeServer, claims: dict[str, Any]
    ) -> None:
        """Straight to the server: the 403 comes from Cube's checkAuth (cube/index.js), not our client."""
        for method, path in (("POST", "/cubejs-api/v1/load"), ("GET", "/cubejs-api/v1/meta")):
            response = requests.request(
                method,
                f"{cube_server.url}{path}",
                json={"query": TOTALS},
                headers={"Authorization": token(cube_server.api_secret, **claims)},
                timeout=10,
            )
            assert response.status_code == 403
            assert "organization_id" in response.json()["error"]

    def test_premade_token_without_org_is_an_auth_error(self, cube_server: CubeServer) -> None:
        cube = CubeClient(cube_server.url, token=token(cube_server.api_secret))
        with cube, pytest.raises(CubeAuthError):
            cube.load(TOTALS, security_context={"organization_id": 1}, timezone="UTC")

    def test_premade_token_for_another_org_is_refused_locally(self, cube_server: CubeServer) -> None:
        cube = CubeClient(cube_server.url, token=token(cube_server.api_secret, organization_id=2))
        with cube, pytest.raises(CubeAuthError, match="organization 2, not 1"):
            cube.load(TOTALS, security_context={"organization_id": 1}, timezone="UTC")

    def test_premade_token_works(self, cube_server: CubeServer) -> None:
        with CubeClient(cube_server.url, token=token(cube_server.api_secret, organization_id=2)) as cube:
            [row] = cube.load(TOTALS, security_context={"organization_id": 2}, timezone="UTC").rows
        total = row["orders.total_amount"]
        assert isinstance(total, Decimal) and total > Decimal(1_000_000)

    def test_bad_secret(self, cube_server: CubeServer) -> None:
        with (
            CubeClient(
                cube_server.url, api_secret="not-the-secret-of-this-cube-server-at-all", retries=0
            ) as cube,
            pytest.raises(CubeAuthError, match="Invalid token") as caught,
        ):
            cube.load(TOTALS, security_context={"organization_id": 1}, timezone="UTC")
        assert caught.value.status == 403

    def test_expired_token(self, cube_server: CubeServer) -> None:
        expired = jwt.encode(
            {"organization_id": 1, "exp": int(time.time()) - 10}, cube_server.api_secret, algorithm="HS256"
        )
        with CubeClient(cube_server.url, token=expired) as cube, pytest.raises(CubeAuthError):
            cube.load(TOTALS, security_context={"organization_id": 1}, timezone="UTC")

    @pytest.mark.parametrize("context", [{}, {"organization_id": "1"}, {"organization_id": True}])
    def test_call_without_integer_org_is_refused_before_sending(
        self, client: CubeClient, context: dict[str, Any]
    ) -> None:
        with pytest.raises(AlertValidationError, match="organization_id"):
            client.load(TOTALS, security_context=context, timezone="UTC")

    def test_extras_cannot_override_the_org(self, cube_server: CubeServer) -> None:
        with CubeClient(
            cube_server.url, api_secret=cube_server.api_secret, extra_security_context={"organization_id": 2}
        ) as cube:
            data = cube.load(
                {"measures": ["orders.count"], "dimensions": ["orders.organization_id"]},
                security_context={"organization_id": 1},
                timezone="UTC",
            )
        assert [r["orders.organization_id"] for r in data.rows] == ["1"]
