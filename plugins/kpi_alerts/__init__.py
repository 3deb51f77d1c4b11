"""KPI alerts: scheduled reports and threshold alerts on Cube.js metrics, delivered by Airflow.

The package is plain Python (schedules, conditions, claims, rendering); the Airflow shell lives in
``kpi_alerts.hooks`` and ``kpi_alerts.operators`` and is imported only by the DAG's tasks.
``docs/architecture.md`` describes the subpackages and their layers.
"""

from __future__ import annotations

__version__ = "0.1.0"
