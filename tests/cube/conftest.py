"""Fixtures for the Cube.js tests: a real PostgreSQL and a real Cube server (see devstack.cube).

``pg`` and ``cube_server`` (the shared server on ``KPI_DEVSTACK_CUBE_PORT``, reused when already up)
come from ``tests/conftest.py``; extra instances (database down, stopped process) get free ports
and are stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devstack import free_port
from devstack.cube import CubeServer, ensure_cube, stop_cube
from devstack.postgres import PostgresServer
from kpi_alerts.cube.client import CubeClient


@pytest.fixture(scope="session")
def analytics(pg: PostgresServer, cube_server: CubeServer) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the database Cube reads, for computing the expected answers directly."""
    with psycopg.connect(pg.url("analytics"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(cube_server: CubeServer) -> Iterator[CubeClient]:
    with CubeClient(
        cube_server.url, api_secret=cube_server.api_secret, backoff=0.01, backoff_max=0.05
    ) as cube:
        yield cube


@pytest.fixture
def spare_cube(pg: PostgresServer) -> Iterator[CubeServer]:
    """A second, private Cube instance (so stopping it cannot disturb the shared one)."""
    server = ensure_cube(pg, port=free_port())
    yield server
    stop_cube(server.port, remove_log=True)


@pytest.fixture(scope="module")
def db_down_cube(pg: PostgresServer) -> Iterator[CubeServer]:
    """A Cube instance whose database port is closed: it answers HTTP, every query fails."""
    server = ensure_cube(pg, port=free_port(), db_port=free_port())
    yield server
    stop_cube(server.port, remove_log=True)
