"""CubeHook: the Airflow connection from AIRFLOW_CONN_CUBE_DEFAULT, as the DAG's tasks use it."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jwt
import pytest

from devstack.cube import CubeServer
from kpi_alerts.cube.client import CubeAuthError, CubeClient
from kpi_alerts.hooks.cube import CubeHook

from .conftest import free_port

pytestmark = pytest.mark.services

QUERY = {"measures": ["orders.total_amount"], "dimensions": ["orders.status"]}
ORG2 = {"organization_id": 2}


def set_conn(
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    conn_id: str = "CUBE_DEFAULT",
    conn_type: str = "cube",
    **fields: Any,
) -> None:
    conn = {"conn_type": conn_type, "host": "127.0.0.1", "port": port, "schema": "http", **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", json.dumps(conn))


@pytest.fixture
def cube_conn(monkeypatch: pytest.MonkeyPatch, cube_server: CubeServer) -> None:
    set_conn(monkeypatch, cube_server.port, password=cube_server.api_secret)


class TestHook:
    def test_attributes(self) -> None:
        assert (CubeHook.conn_name_attr, CubeHook.default_conn_name) == ("cube_conn_id", "cube_default")
        assert (CubeHook.conn_type, CubeHook.hook_name) == ("cube", "Cube.js")

    def test_init_reads_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("AIRFLOW_CONN_CUBE_DEFAULT", raising=False)
        hook = CubeHook(retries=0)
        assert hook.cube_conn_id == "cube_default" and hook.client_options == {"retries": 0}

    def test_load_from_env_connection(self, cube_conn: None, client: CubeClient) -> None:
        with CubeHook() as hook:
            data = hook.load(QUERY, security_context=ORG2, timezone="Europe/Berlin")
            assert isinstance(hook.get_conn(), CubeClient) and hook.get_conn() is hook.get_conn()
        assert data.rows == client.load(QUERY, security_context=ORG2, timezone="Europe/Berlin").rows
        assert data.rows and data.timezone == "Europe/Berlin"

    def test_http_connection_made_before_the_provider_still_works(
        self, monkeypatch: pytest.MonkeyPatch, cube_server: CubeServer, client: CubeClient
    ) -> None:
        set_conn(monkeypatch, cube_server.port, conn_type="http", password=cube_server.api_secret)
        with CubeHook() as hook:
            data = hook.load(QUERY, security_context=ORG2, timezone="UTC")
            assert hook.test_connection()[0]
        assert data.rows and data.rows == client.load(QUERY, security_context=ORG2, timezone="UTC").rows

    def test_extras(self, monkeypatch: pytest.MonkeyPatch, cube_server: CubeServer) -> None:
        extra = {
            "security_context": {"region": "eu"},
            "continue_wait_deadline": "12.5",
            "request_timeout": 7,
            "max_rows": 1000,
            "base_path": "/cubejs-api/",
        }
        set_conn(
            monkeypatch, cube_server.port, conn_id="CUBE_EU", password=cube_server.api_secret, extra=extra
        )
        client = CubeHook("cube_eu").get_conn()
        assert (client.continue_wait_deadline, client.request_timeout, client.max_rows) == (12.5, 7, 1000)
        assert client.extra_security_context == {"region": "eu"}
        assert client.api_url == f"{cube_server.url}/cubejs-api"

    def test_token_extra(self, monkeypatch: pytest.MonkeyPatch, cube_server: CubeServer) -> None:
        token = jwt.encode(
            {"organization_id": 2, "exp": int(time.time()) + 60}, cube_server.api_secret, algorithm="HS256"
        )
        set_conn(monkeypatch, cube_server.port, extra={"token": token})
        data = CubeHook().load(QUERY, security_context=ORG2, timezone="UTC")
        assert data.rows
        with pytest.raises(CubeAuthError):  # the token is organization 2's only
            CubeHook().load(QUERY, security_context={"organization_id": 1}, timezone="UTC")
        assert CubeHook().test_connection()[0]

    def test_meta(self, cube_conn: None) -> None:
        assert "orders" in {c["name"] for c in CubeHook().meta(ORG2)["cubes"]}

    def test_test_connection_ok(self, cube_conn: None) -> None:
        ok, message = CubeHook().test_connection()
        assert ok, message
        assert "ready" in message

    @pytest.mark.parametrize("target", ["wrong-secret", "nothing-listening"])
    def test_test_connection_fails_without_leaking(
        self,
        monkeypatch: pytest.MonkeyPatch,
        cube_server: CubeServer,
        caplog: pytest.LogCaptureFixture,
        target: str,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        secret = "a-wrong-secret-for-this-cube-that-must-not-be-logged"
        port = cube_server.port if target == "wrong-secret" else free_port()
        set_conn(monkeypatch, port, password=secret)
        hook = CubeHook(retries=1, backoff=0.01)
        ok, message = hook.test_connection()
        assert not ok
        assert ("Invalid token" if target == "wrong-secret" else "not ready") in message
        if target == "nothing-listening":  # the logs are captured: this check is not vacuous
            with pytest.raises(Exception, match="unreachable"):
                hook.meta(ORG2)
            assert "retrying" in caplog.text
        assert secret not in message + caplog.text
        assert "eyJ" not in message + caplog.text

    def test_load_error_does_not_leak(
        self, monkeypatch: pytest.MonkeyPatch, cube_server: CubeServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        secret = "another-wrong-secret-for-this-cube-not-for-logs"
        set_conn(monkeypatch, cube_server.port, password=secret)
        with pytest.raises(CubeAuthError) as caught:
            CubeHook(retries=0).load(QUERY, security_context=ORG2, timezone="UTC")
        assert secret not in str(caught.value) + caplog.text
        assert "eyJ" not in str(caught.value) + caplog.text
