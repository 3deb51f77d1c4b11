"""The package's Airflow Variables read outside a task (the CLI, the API server's plugin).

Inside a task the operators read them through the Task SDK; here Airflow's secrets backends answer
(``AIRFLOW_VAR_*`` first, then the metadata database when one is configured).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from kpi_alerts.pipeline.inputs import RunSettings

log = logging.getLogger(__name__)

DEFAULT_SENDER = "KPI Alerts <kpi-alerts@localhost>"


def airflow_variable(name: str, default: str) -> str:
    env = os.environ.get(f"AIRFLOW_VAR_{name.upper()}")
    if env is not None:
        return env
    try:
        from airflow.models.variable import Variable

        return str(Variable.get(name, default_var=default))
    except Exception as exc:  # no metadata database here (e.g. a laptop running the CLI): the default
        log.debug("Variable %s not readable (%s); using %r", name, exc, default)
        return default


def trial_settings(now: datetime | None = None) -> RunSettings:
    """Settings for a test send or a preview: the run's sender and attachment limit, at ``now``."""
    return RunSettings(
        logical_time=(now or datetime.now(UTC)).replace(second=0, microsecond=0),
        sender=airflow_variable("kpi_alerts_sender", DEFAULT_SENDER),
        max_attachment_bytes=int(float(airflow_variable("kpi_alerts_max_attachment_mb", "10")) * 1024 * 1024),
        recipient_privacy=airflow_variable("kpi_alerts_recipient_privacy", "bcc").strip().lower() or "bcc",
        message_id_domain=airflow_variable("kpi_alerts_message_id_domain", "").strip(),
    )
