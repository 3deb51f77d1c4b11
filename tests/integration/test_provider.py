"""The package as an installed Airflow provider (``make install`` installs it editable into .venv):
Airflow discovers it through the ``apache_airflow_provider`` entry point, registers the ``cube``
connection type, and ``airflow connections test`` runs ``CubeHook.test_connection`` against a real Cube."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

from devstack.cube import CubeServer
from kpi_alerts.get_provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _airflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIRFLOW, *args],
        env={**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestProviderInfo:
    def test_matches_airflow_schema_and_the_installed_distribution(self) -> None:
        import jsonschema
        from airflow import providers_manager

        schema = json.loads(
            (Path(providers_manager.__file__).parent / "provider_info.schema.json").read_text()
        )
        info = get_provider_info()
        jsonschema.validate(info, schema)
        dist = distribution("kpi-alerts")
        assert info["package-name"] == dist.metadata["Name"]
        (entry_point,) = [ep for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
        assert entry_point.load() is get_provider_info

    def test_every_listed_module_and_class_imports(self) -> None:
        info = get_provider_info()
        modules = [
            m for key in ("hooks", "operators") for group in info[key] for m in group["python-modules"]
        ]
        for name in modules:
            importlib.import_module(name)
        for dotted in [
            *info.get("notifications", []),
            *(c["hook-class-name"] for c in info["connection-types"]),
        ]:
            module, _, cls = dotted.rpartition(".")
            assert isinstance(getattr(importlib.import_module(module), cls), type)

    def test_providers_manager_registers_the_cube_connection_type(self) -> None:
        from airflow.providers_manager import ProvidersManager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        manager = ProvidersManager()
        assert "kpi-alerts" in manager.providers
        hook = ProvidersManagerTaskRuntime().hooks["cube"]
        assert hook is not None and hook.hook_class_name == "kpi_alerts.hooks.cube.CubeHook"
        assert manager.field_behaviours["cube"]["hidden_fields"] == ["login"]
        token = manager.connection_form_widgets["extra__cube__token"]
        assert token.is_sensitive  # masked in the UI and in logs


@pytest.mark.services
class TestAirflowCli:
    def test_providers_list_shows_the_package(self) -> None:
        result = _airflow("providers", "list", "--output", "json")
        assert result.returncode == 0, result.stderr
        listed = {p["package_name"]: p for p in json.loads(result.stdout)}
        assert listed["kpi-alerts"]["version"] == distribution("kpi-alerts").version

    def _conn(self, cube_server: CubeServer, **fields: Any) -> dict[str, str]:
        conn = {
            "conn_type": "cube",
            "host": "127.0.0.1",
            "port": cube_server.port,
            "schema": "http",
            **fields,
        }
        return {"AIRFLOW_CONN_CUBE_DEFAULT": json.dumps(conn)}

    def test_connections_test_runs_the_cube_hook(self, cube_server: CubeServer) -> None:
        result = _airflow(
            "connections",
            "test",
            "cube_default",
            env=self._conn(cube_server, password=cube_server.api_secret),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Connection success!" in result.stdout

    def test_connections_test_reports_the_cube_answer(self, cube_server: CubeServer) -> None:
        secret = "not-the-secret-4d1f"
        result = _airflow("connections", "test", "cube_default", env=self._conn(cube_server, password=secret))
        assert result.returncode == 1
        assert "Connection failed!" in result.stdout
        assert "Cube refused the token: Invalid token (HTTP 403" in result.stdout  # Cube's own answer
        assert secret not in result.stdout + result.stderr
