"""When an Airflow asset was last updated, read from inside a task: reports that wait for an asset.

Airflow 3 task code cannot read the metadata database; it asks the task supervisor, which asks the API
server's execution API (``GET /execution/asset-events/by-asset?uri=...``) with the task's own token. The Task
SDK's ``InletEventsAccessor`` is that request: ``context["inlet_events"][asset]`` builds one for each of a
task's declared inlets, but the request itself needs no declaration, so one accessor per asset URI reads any
asset's latest event (newest first, one event). The assets an alert waits for are known only at run time
(an alert's spec, never the DAG file), so they cannot be declared as inlets at parse time.

The other way, the REST API's ``GET /api/v2/assets/events``, would need an HTTP connection with a user's
credentials to the API server; this one uses the task's identity and works wherever the task runs
(LocalExecutor, Celery, Kubernetes, ``dag.test()``).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk.exceptions import AirflowRuntimeError
from airflow.sdk.execution_time.context import InletEventsAccessor

from kpi_alerts.errors import TransientAlertError


class TaskAssetEvents:
    """:class:`kpi_alerts.pipeline.inputs.AssetEvents` through the Task SDK (inside a task instance only)."""

    def last_updated(self, uri: str) -> datetime | None:
        """The timestamp of the asset's latest event (None: no event, or no active asset with that URI)."""
        try:
            events = InletEventsAccessor(asset_uri=uri).ascending(False).limit(1)
            latest = events[0] if len(events) else None
        except AirflowRuntimeError as exc:
            raise TransientAlertError(
                f"Airflow did not say when asset {uri!r} was last updated: {exc}"
            ) from exc
        return latest.timestamp if latest is not None else None
