"""Where the project's SQL and templates live: ``include/`` beside ``plugins/`` (the Astro layout),
both in the repository and under ``$AIRFLOW_HOME``; ``$KPI_ALERTS_INCLUDE_DIR`` overrides it."""

from __future__ import annotations

import os
from pathlib import Path

INCLUDE_DIR = Path(
    os.environ.get("KPI_ALERTS_INCLUDE_DIR") or Path(__file__).parents[2] / "include"
).resolve()
MIGRATIONS_DIR = INCLUDE_DIR / "sql" / "migrations"
TEMPLATES_DIR = INCLUDE_DIR / "templates"
