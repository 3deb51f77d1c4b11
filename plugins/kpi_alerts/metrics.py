"""The package's own metrics: one hook point, called wherever a slot's outcome is written to the ledger.

``kpi_alerts.<status>`` is counted once per slot that ends (``sent``, ``failed``, ``missed``,
``delivery_unknown``, ``not_triggered``, ``suppressed``, ``gated``, ``skipped``), and
``kpi_alerts.late_seconds`` adds how late each finished slot was (finish time minus the slot, whole
seconds; divide by the status counts' sum for the mean).

Plain Python: the sink is pluggable (:func:`set_sink`); without one, nothing is sent. The Airflow glue
(:mod:`kpi_alerts.operators.tasks`) installs :func:`kpi_alerts.hooks.metrics.airflow_stats_sink`,
Airflow's metrics client (StatsD or OpenTelemetry, as ``[metrics]`` configures it; a no-op when metrics
are off), so under Airflow the names arrive with Airflow's prefix: ``airflow.kpi_alerts.sent``.
Metrics never break an alert: a sink's error is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

log = logging.getLogger(__name__)

#: ``sink(name, count)`` increments counter ``name`` by ``count``.
Sink = Callable[[str, int], None]
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    """Send the counters to ``sink`` (None: nowhere)."""
    global _sink
    _sink = sink


def slot_finished(status: str, *, slot: datetime, now: datetime) -> None:
    """Count a slot that ended with ``status`` and how late it ended."""
    sink = _sink
    if sink is None:
        return
    try:
        sink(f"kpi_alerts.{status}", 1)
        sink("kpi_alerts.late_seconds", max(0, round((now - slot).total_seconds())))
    except Exception:
        log.warning("metrics sink failed for kpi_alerts.%s", status, exc_info=True)
