"""What this package offers Airflow as a provider (entry point ``apache_airflow_provider`` in pyproject.toml).

Airflow reads this without importing the hooks: the ``cube`` connection type, its form fields for the
UI, the operators and the notifier. Installed (``pip install -e .``, done by ``make install``),
``airflow providers list`` shows the package and ``airflow connections test`` runs
:meth:`~kpi_alerts.hooks.cube.CubeHook.test_connection` for ``cube`` connections.
"""

from __future__ import annotations

from typing import Any

INTEGRATION = "KPI alerts"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "kpi-alerts",
        "name": "KPI alerts",
        "description": "Scheduled reports and threshold alerts on Cube.js metrics: hooks, operators and "
        "a failure notifier.",
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://cube.dev/docs",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "kpi_alerts.hooks.cube",
                    "kpi_alerts.hooks.alerts_db",
                    "kpi_alerts.hooks.smtp",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["kpi_alerts.operators.kpi_alerts", "kpi_alerts.operators.cube"],
            }
        ],
        "notifications": ["kpi_alerts.notifications.failure.FailureNotifier"],
        "connection-types": [
            {
                "hook-class-name": "kpi_alerts.hooks.cube.CubeHook",
                "hook-name": "Cube.js",
                "connection-type": "cube",
                "conn-fields": {
                    "token": {
                        "label": "Pre-made token",
                        "description": "Used verbatim instead of minting one per request from the API secret.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "base_path": {
                        "label": "API base path",
                        "schema": {"type": ["string", "null"], "default": "/cubejs-api"},
                    },
                    "continue_wait_deadline": {
                        "label": "Continue-wait deadline (s)",
                        "description": 'How long to re-send a query Cube answers with "Continue wait".',
                        "schema": {"type": ["number", "null"], "default": 60},
                    },
                    "request_timeout": {
                        "label": "Request timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "retries": {
                        "label": "Retries on connection errors and 5xx",
                        "schema": {"type": ["integer", "null"], "default": 3},
                    },
                    "page_size": {
                        "label": "Rows per page",
                        "schema": {"type": ["integer", "null"], "default": 10000},
                    },
                    "max_rows": {
                        "label": "Maximum rows per query",
                        "schema": {"type": ["integer", "null"], "default": 50000},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {"password": "API secret (HS256)", "schema": "Scheme (http or https)"},
                    "placeholders": {
                        "host": "cube.internal",
                        "port": "4000",
                        "schema": "https",
                        "extra": '{"security_context": {"region": "eu"}}',
                    },
                },
            }
        ],
    }
