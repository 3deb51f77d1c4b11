"""The ledger's outcome counters (:mod:`kpi_alerts.metrics`) sent to Airflow's metrics client."""

from __future__ import annotations

try:
    from airflow.sdk.observability.stats import Stats
except ImportError:  # an Airflow without the Task SDK's client: the scheduler-side one
    from airflow.stats import Stats


def airflow_stats_sink(name: str, count: int) -> None:
    """Increment Airflow's counter ``name`` (StatsD or OpenTelemetry, as ``[metrics]`` configures it)."""
    Stats.incr(name, count)
