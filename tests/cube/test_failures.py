"""How Cube failures surface: permanent query/auth errors, Continue wait, timeouts, outages."""

from __future__ import annotations

import json
import logging
import threading
import traceback
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devstack.cube import CubeServer, stop_cube
from kpi_alerts.cube.client import (
    CubeAuthError,
    CubeClient,
    CubeQueryError,
    CubeTimeoutError,
    CubeUnavailableError,
)
from kpi_alerts.errors import PermanentAlertError, TransientAlertError

from .conftest import free_port

pytestmark = pytest.mark.services

ORG1 = {"organization_id": 1}
TOTALS = {"measures": ["orders.count"]}


def uncached(cube: str) -> dict[str, Any]:
    """A filter no earlier run used: Cube serves a result cached within its 10 s refresh window even
    with ``renewQuery``, so a repeated slow query would not be slow."""
    return {"member": f"{cube}.id", "operator": "notEquals", "values": [str(uuid.uuid4().int % 10**9)]}


def fast_client(url: str, secret: str, **options: Any) -> CubeClient:
    return CubeClient(url, api_secret=secret, backoff=0.01, backoff_max=0.02, **options)


class TestQueryErrors:
    def test_unknown_measure_names_the_member_without_stack(self, client: CubeClient) -> None:
        with pytest.raises(CubeQueryError) as caught:
            client.load({"measures": ["orders.nope"]}, security_context=ORG1, timezone="UTC")
        message = str(caught.value)
        assert "orders.nope" in message
        assert "CubeEvaluator" not in message and "node_modules" not in message and "stack" not in message
        assert caught.value.status == 400
        assert isinstance(caught.value, PermanentAlertError)

    def test_invalid_query_format(self, client: CubeClient) -> None:
        with pytest.raises(CubeQueryError, match="Invalid query format"):
            client.load({"measures": ["orders.count"], "bogus": 1}, security_context=ORG1, timezone="UTC")

    def test_error_types(self) -> None:
        assert issubclass(CubeAuthError, PermanentAlertError)
        assert issubclass(CubeTimeoutError, TransientAlertError)
        assert issubclass(CubeUnavailableError, TransientAlertError)


class TestContinueWait:
    """``slow_orders`` sleeps 4 s in PostgreSQL; the devstack Cube answers "Continue wait" after 2 s."""

    def test_polling_until_data(self, client: CubeClient, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="kpi_alerts.cube.client")
        query = {
            "measures": ["slow_orders.count"],
            "filters": [uncached("slow_orders")],
        }
        [row] = client.load(query, security_context=ORG1, timezone="UTC").rows
        assert isinstance(row["slow_orders.count"], Decimal) and row["slow_orders.count"] > 0
        assert "Continue wait" in caplog.text

    def test_deadline_exceeded(self, cube_server: CubeServer) -> None:
        query = {
            "measures": ["slow_orders.count"],
            "filters": [uncached("slow_orders")],
        }
        cube = fast_client(cube_server.url, cube_server.api_secret, continue_wait_deadline=1)
        with (
            cube,
            pytest.raises(CubeTimeoutError, match=r"still computing the query after \d+\.\d s") as caught,
        ):
            cube.load(query, security_context=ORG1, timezone="UTC")
        assert "deadline 1 s" in str(caught.value)


class TestOutages:
    def test_database_down_is_retried_then_unavailable(
        self, db_down_cube: CubeServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="kpi_alerts.cube.client")
        with fast_client(db_down_cube.url, db_down_cube.api_secret, retries=2) as cube:
            with pytest.raises(CubeUnavailableError, match="ECONNREFUSED") as caught:
                cube.load(TOTALS, security_context=ORG1, timezone="UTC")
            assert not cube.ready()
        assert "gave up after 3 attempts" in str(caught.value)
        assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2

    def test_nothing_listening(self) -> None:
        with fast_client(
            f"http://127.0.0.1:{free_port()}", "a-secret-that-is-long-enough-for-hs256", retries=2
        ) as cube:
            with pytest.raises(
                CubeUnavailableError,
                match=r"unreachable: \[Errno 111\] Connection refused.*gave up after 3 attempts",
            ):
                cube.load(TOTALS, security_context=ORG1, timezone="UTC")
            assert not cube.ready()

    def test_cube_process_stopped(self, spare_cube: CubeServer) -> None:
        with fast_client(spare_cube.url, spare_cube.api_secret, retries=1) as cube:
            assert cube.load(TOTALS, security_context=ORG1, timezone="UTC").rows
            stop_cube(spare_cube.port)
            with pytest.raises(CubeUnavailableError, match="unreachable"):
                cube.load(TOTALS, security_context=ORG1, timezone="UTC")


class _FakeProxy(BaseHTTPRequestHandler):
    """Answers 502 (like a reverse proxy whose upstream Cube is restarting), then a real-looking result."""

    failures_left = 0
    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append((self.path, self.headers.get("x-request-id", "")))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self._reply(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            return
        body = {
            "data": [{"orders.count": "42"}],
            "annotation": {"measures": {"orders.count": {"title": "Orders Count", "type": "number"}}},
        }
        self._reply(200, json.dumps(body).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeProxy)
    _FakeProxy.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class TestProxy502:
    """A FAKE server, not Cube: a real Cube cannot be made to answer 502; a proxy in front of it can."""

    def test_502_then_200_is_retried(self, fake_proxy: str) -> None:
        _FakeProxy.failures_left = 2
        with fast_client(fake_proxy, "a-secret-that-is-long-enough-for-hs256", retries=3) as cube:
            [row] = cube.load(TOTALS, security_context=ORG1, timezone="UTC").rows
        assert row["orders.count"] == 42
        assert len(_FakeProxy.seen) == 3
        assert {path for path, _ in _FakeProxy.seen} == {"/cubejs-api/v1/load"}
        assert len({rid for _, rid in _FakeProxy.seen}) == 1  # retries keep the request id

    def test_persistent_502(self, fake_proxy: str) -> None:
        _FakeProxy.failures_left = 10
        cube = fast_client(fake_proxy, "a-secret-that-is-long-enough-for-hs256", retries=1)
        with (
            cube,
            pytest.raises(CubeUnavailableError, match=r"HTTP 502 Bad Gateway.*gave up after 2 attempts"),
        ):
            cube.load(TOTALS, security_context=ORG1, timezone="UTC")


class TestNoSecretsInLogs:
    SECRET = "super-secret-cube-api-key-that-must-not-leak"

    @pytest.mark.parametrize("target", ["wrong-secret", "nothing-listening", "database-down"])
    def test_failures_never_show_secret_or_token(
        self,
        target: str,
        cube_server: CubeServer,
        db_down_cube: CubeServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        url = {
            "wrong-secret": cube_server.url,
            "nothing-listening": f"http://127.0.0.1:{free_port()}",
            "database-down": db_down_cube.url,
        }[target]
        # database-down needs the right secret to get past auth to the failing database.
        secret = db_down_cube.api_secret if target == "database-down" else self.SECRET
        with fast_client(url, secret, retries=1) as cube, pytest.raises(Exception) as caught:
            cube.load(TOTALS, security_context=ORG1, timezone="UTC")
        text = "".join(traceback.format_exception(caught.value)) + caplog.text + repr(cube)
        assert secret not in text
        assert "eyJ" not in text  # every JWT starts with base64 '{"'
