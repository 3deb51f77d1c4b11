"""Airflow finds the plugin in its plugins folder, once, and loading it costs the other components nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def test_airflow_lists_the_plugin_from_the_plugins_folder() -> None:
    listed = subprocess.run(
        [str(BIN / "airflow"), "plugins", "-o", "json"],
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}{os.pathsep}{REPO_ROOT}"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    plugins = json.loads(next(line for line in listed.stdout.splitlines() if line.startswith("[")))
    assert [p["name"] for p in plugins] == ["kpi_alerts"]  # once: not also through an entry point
    (plugin,) = plugins
    assert plugin["source"] == "$PLUGINS_FOLDER/kpi_alerts_plugin.py"
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [
        ("/kpi-alerts/api/v1", "KPI alerts API"),
        ("/kpi-alerts/ui", "KPI alerts page"),
    ]
    assert plugin["external_views"] == [
        {
            "name": "KPI alerts",
            "href": "/kpi-alerts/ui/",
            "url_route": "kpi-alerts",
            "destination": "nav",
            "icon": "/kpi-alerts/ui/static/icon.svg",
        }
    ]


def test_loading_the_plugin_imports_no_web_stack() -> None:
    """Schedulers, DAG processors and task runners load plugins too: they must not pay for the API."""
    probe = (
        "import sys, kpi_alerts_plugin\n"
        "plugin = kpi_alerts_plugin.KpiAlertsPlugin()\n"
        "assert plugin.name == 'kpi_alerts'\n"
        "heavy = [m for m in ('fastapi', 'airflow.api_fastapi.core_api.security', 'kpi_alerts.web.api',"
        " 'psycopg') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
    )
    subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}{os.pathsep}{REPO_ROOT}"},
        check=True,
        timeout=120,
    )
