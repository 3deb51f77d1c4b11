"""Where the project's SQL and templates live (``include/`` beside ``plugins/``, as in Astro projects)."""

from __future__ import annotations

import os
from pathlib import Path

INCLUDE_DIR = Path(os.environ.get("KPI_ALERTS_INCLUDE_DIR", Path(__file__).resolve().parents[2] / "include"))
MIGRATIONS_DIR = INCLUDE_DIR / "sql" / "migrations"
TEMPLATES_DIR = INCLUDE_DIR / "templates"
