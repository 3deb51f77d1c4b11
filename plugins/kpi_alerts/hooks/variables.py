"""The package's Airflow Variables read outside a task (the CLI, the API server's plugin).

Inside a task the operators read them through the Task SDK; here Airflow's secrets backends answer
(``AIRFLOW_VAR_*`` first, then the metadata database when one is configured).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

from kpi_alerts import settings
from kpi_alerts.pipeline.inputs import RunSettings, TaskSettings

log = logging.getLogger(__name__)


def airflow_variable(setting: settings.Setting) -> Any:
    """The setting's value: its Variable (``AIRFLOW_VAR_*`` first), else its default."""
    env = os.environ.get(f"AIRFLOW_VAR_{setting.variable.upper()}")
    if env is not None:
        return setting.value(env)
    try:
        from airflow.models.variable import Variable

        return setting.value(Variable.get(setting.variable, default_var=setting.default))
    except Exception as exc:  # no metadata database here (e.g. a laptop running the CLI): the default
        log.debug("Variable %s not readable (%s); using %r", setting.variable, exc, setting.default)
        return setting.value()


def variable_settings() -> TaskSettings:
    """Every setting as its Variable says, as a task would see it."""
    return TaskSettings(**{s.name: airflow_variable(s) for s in settings.SETTINGS})


def trial_settings(now: datetime | None = None) -> RunSettings:
    """Settings for a test send or a preview: the run's envelope (sender, attachment limit), at ``now``."""
    return RunSettings(
        logical_time=(now or datetime.now(UTC)).replace(second=0, microsecond=0),
        envelope=variable_settings().envelope,
    )
