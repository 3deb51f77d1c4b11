"""Registers the KPI alerts plugin (REST API, UI page) with Airflow, which imports the files of its
plugins folder but not the ``kpi_alerts`` package (see ``.airflowignore``)."""

from __future__ import annotations

from kpi_alerts.web.plugin import KpiAlertsPlugin

__all__ = ["KpiAlertsPlugin"]
