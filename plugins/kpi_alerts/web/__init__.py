"""The management surface served by the Airflow API server: the REST API and the "KPI alerts" page.

A thin shell over the domain (:mod:`kpi_alerts.ledger.alert_changes`, :mod:`kpi_alerts.ledger.alert_views`,
:mod:`kpi_alerts.pipeline.trial`): the same validation and the same readable refusals as the CLI.
Registered with Airflow by ``plugins/kpi_alerts_plugin.py`` (:class:`kpi_alerts.web.plugin.KpiAlertsPlugin`).
"""
