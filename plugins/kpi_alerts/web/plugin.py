"""The Airflow plugin: the REST API and the page mounted on the API server, the page in the navigation.

Airflow imports plugins from files in its plugins folder (``plugins/kpi_alerts_plugin.py`` imports this
class; ``plugins/.airflowignore`` keeps Airflow out of the package itself). Every Airflow process may load
plugins (scheduler, DAG processor, task runners), so importing this module costs nothing: the two
FastAPI apps (and Airflow's API security module, ~3 s of imports) are built only when the API server
asks for :attr:`KpiAlertsPlugin.fastapi_apps`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any
from urllib.parse import urlparse

from airflow.plugins_manager import AirflowPlugin

from kpi_alerts.web.prefixes import API_PREFIX, UI_PREFIX


def _under_base_url(path: str) -> str:
    """``path`` below the path of ``[api] base_url`` (Airflow behind a proxy at ``/airflow``...)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    base_path = urlparse(base).path if base.startswith(("http://", "https://")) else base
    return base_path.rstrip("/") + path


class KpiAlertsPlugin(AirflowPlugin):
    """KPI alerts: ``/kpi-alerts/api/v1`` (REST API), ``/kpi-alerts/ui/`` (page), a "KPI alerts" menu entry."""

    name = "kpi_alerts"

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from kpi_alerts.web.api import create_api_app
        from kpi_alerts.web.page import create_page_app

        return [
            {"app": create_api_app(), "url_prefix": API_PREFIX, "name": "KPI alerts API"},
            {"app": create_page_app(), "url_prefix": UI_PREFIX, "name": "KPI alerts page"},
        ]

    @cached_property
    def external_views(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [
            {
                "name": "KPI alerts",
                "href": _under_base_url(f"{UI_PREFIX}/"),
                "url_route": "kpi-alerts",
                "destination": "nav",
                "icon": _under_base_url(f"{UI_PREFIX}/static/icon.svg"),
            }
        ]
