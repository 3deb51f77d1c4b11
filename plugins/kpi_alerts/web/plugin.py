"""The Airflow plugin: the REST API and the page mounted on the API server, the page in the navigation.

Airflow imports plugins from files in its plugins folder (``plugins/kpi_alerts_plugin.py`` imports this
class; ``plugins/.airflowignore`` keeps Airflow out of the package itself). Creating the two FastAPI apps
is cheap and touches no database, so every Airflow component may load the plugin.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from airflow.plugins_manager import AirflowPlugin

from kpi_alerts.web.api import API_PREFIX, create_api_app
from kpi_alerts.web.page import UI_PREFIX, create_page_app


def _under_base_url(path: str) -> str:
    """``path`` below the path of ``[api] base_url`` (Airflow behind a proxy at ``/airflow``...)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    base_path = urlparse(base).path if base.startswith(("http://", "https://")) else base
    return base_path.rstrip("/") + path


def _external_views() -> list[dict[str, Any]]:
    return [
        {
            "name": "KPI alerts",
            "href": _under_base_url(f"{UI_PREFIX}/"),
            "url_route": "kpi-alerts",
            "destination": "nav",
            "icon": _under_base_url(f"{UI_PREFIX}/static/icon.svg"),
        }
    ]


class KpiAlertsPlugin(AirflowPlugin):
    """KPI alerts: ``/kpi-alerts/api/v1`` (REST API), ``/kpi-alerts/ui/`` (page), a "KPI alerts" menu entry."""

    name = "kpi_alerts"
    fastapi_apps = [
        {"app": create_api_app(), "url_prefix": API_PREFIX, "name": "KPI alerts API"},
        {"app": create_page_app(), "url_prefix": UI_PREFIX, "name": "KPI alerts page"},
    ]
    external_views = _external_views()
