"""Who may call the management surface: Airflow's own auth manager decides, per request.

A plugin's FastAPI app gets none of the core API's protection by itself, so every route depends on one
of these. The caller is identified as the core API does it (:func:`airflow.api_fastapi.core_api.security.get_user`:
``Authorization: Bearer <token from POST /auth/token>``, else the UI's ``_token`` cookie): 401 without a
valid token. Authorization is the permission on the ``kpi_alerts`` DAG: reading needs DAG read access,
changing (create, update, delete, pause, resume, test-send) DAG edit access; 403 without it.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends
from fastapi.params import Depends as DependsParam

DAG_ID = "kpi_alerts"


def read_access() -> list[DependsParam]:
    """Dependencies of a route that only reads alerts."""
    return [Depends(requires_access_dag("GET", param_dag_id=DAG_ID))]


def edit_access() -> list[DependsParam]:
    """Dependencies of a route that changes alerts or sends mail."""
    return [Depends(requires_access_dag("PUT", param_dag_id=DAG_ID))]


def actor_of(user: Any) -> str:
    """Who changed an alert, as ``kpi_alert_events`` records it (the CLI writes ``cli:user@host``)."""
    return f"api:{user.get_name()}"
