"""The REST API, ``/kpi-alerts/api/v1`` on the Airflow API server (OpenAPI at ``.../openapi.json``).

Bodies are the alert spec of the CLI (``create-alert``) and JSON merge patches of it (``update-alert``);
answers are the dicts of :mod:`kpi_alerts.ledger.alert_views`, the same as ``show --json``. Refusals:
401 without a valid Airflow token, 403 without the DAG permission (:mod:`kpi_alerts.web.access`),
404 for an unknown alert, 422 with the readable reason for bad input (nothing written), 502 when Cube
or SMTP fail a test send, 503 when the alerts database (the ``kpi_alerts_db`` Airflow connection) is
missing or unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from airflow.api_fastapi.core_api.security import GetUserDep as UserDep
from fastapi import Body, Depends, FastAPI, Path, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kpi_alerts.errors import AlertValidationError, KpiAlertError
from kpi_alerts.hooks.db_url import resolve_db_url
from kpi_alerts.ledger.alert_changes import AlertNotFound
from kpi_alerts.ledger.database import DB_CONN_ID, connect, describe_database_error
from kpi_alerts.web.access import actor_of, edit_access, read_access
from kpi_alerts.web.plugin import API_PREFIX

ResultStatus = Literal[  # the ledger's status CHECK (include/sql/migrations)
    "claimed",
    "retrying",
    "waiting",
    "sending",
    "sent",
    "delivery_unknown",
    "not_triggered",
    "suppressed",
    "gated",
    "failed",
    "missed",
    "skipped",
]


log = logging.getLogger(__name__)


class TestSendBody(BaseModel):
    to: str = Field(description="the one address the test message goes to", examples=["me@example.com"])


class AlertsDbUnavailable(Exception):
    """The API server cannot reach the alerts database: answered 503 with what to fix."""


def alerts_db() -> Iterator[psycopg.Connection[Any]]:
    """One connection per request to the ``kpi_alerts_db`` database (autocommit; each change is one
    transaction inside the domain function)."""
    try:
        url = resolve_db_url()
    except Exception as exc:  # AirflowNotFoundException: the API server has no such connection
        log.warning("kpi_alerts_db connection not available to the API server: %s", exc)
        raise AlertsDbUnavailable(
            f"the API server has no Airflow connection {DB_CONN_ID!r} (the alerts database): define it "
            f"where the API server reads connections (AIRFLOW_CONN_{DB_CONN_ID.upper()} or the metadata DB)"
        ) from None
    try:
        conn = connect(url)
    except psycopg.OperationalError as exc:  # the message names host and port, never the password
        log.warning("kpi_alerts_db unreachable: %s", exc)
        raise AlertsDbUnavailable(
            f"the alerts database (connection {DB_CONN_ID!r}) cannot be reached: "
            f"{str(exc).strip().splitlines()[0][:300]}"
        ) from None
    with conn:
        yield conn


DbDep = Annotated[psycopg.Connection[Any], Depends(alerts_db)]
#: Ids, organizations and offsets are PostgreSQL bigints: larger numbers are refused (422), not a 500.
BIGINT_MAX = 2**63 - 1
AlertId = Annotated[int, Path(gt=0, le=BIGINT_MAX)]
OrganizationId = Annotated[int, Path(gt=0, le=BIGINT_MAX)]
Offset = Annotated[int, Query(ge=0, le=BIGINT_MAX)]


class SnoozeBody(BaseModel):
    until: datetime | None = Field(
        description="when the snooze ends, with its UTC offset; null ends it now",
        examples=["2027-01-04T09:00:00+01:00"],
    )


class QuietHoursBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: str = Field(alias="from", description="start, local time HH:MM", examples=["22:00"])
    end: str = Field(
        alias="to", description="end, HH:MM; earlier than the start: the next day", examples=["07:00"]
    )
    timezone: str = Field(
        description="the organization's IANA timezone", examples=["Europe/Berlin"], max_length=64
    )
    days: list[int] = Field(
        default_factory=list, max_length=7, description="weekdays a window starts on, 0 = Sunday"
    )


def create_api_app() -> FastAPI:
    """The API as a FastAPI app, for the plugin's ``fastapi_apps`` (mounted at :data:`API_PREFIX`)."""
    app = FastAPI(
        title="KPI alerts API",
        version="1",
        description=(
            "Manage KPI alerts (scheduled reports and threshold alerts): list, create, change, pause, "
            "resume, delete, send a test, read the execution ledger. Authenticate with an Airflow token "
            "(`Authorization: Bearer ...` from `POST /auth/token`) or the Airflow UI's cookie. Reading "
            "needs read access to the `kpi_alerts` DAG, every change edit access."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )

    @app.exception_handler(AlertValidationError)
    def _invalid(request: Request, exc: AlertValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(AlertNotFound)
    def _not_found(request: Request, exc: AlertNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(AlertsDbUnavailable)
    def _no_db(request: Request, exc: AlertsDbUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(psycopg.Error)
    def _db_refused(request: Request, exc: psycopg.Error) -> JSONResponse:  # e.g. a read-only database
        log.warning("kpi_alerts_db refused a request: %s", describe_database_error(exc))
        return JSONResponse(status_code=503, content={"detail": describe_database_error(exc)})

    @app.exception_handler(KpiAlertError)
    def _failed(request: Request, exc: KpiAlertError) -> JSONResponse:  # Cube or SMTP refused a test send
        return JSONResponse(status_code=502, content={"detail": str(exc)})

    refusals: dict[int | str, dict[str, Any]] = {
        401: {"description": "no valid Airflow token"},
        403: {"description": "no permission on the kpi_alerts DAG"},
        503: {"description": "the alerts database (connection kpi_alerts_db) is not reachable"},
    }
    with_alert = {**refusals, 404: {"description": "no alert with that id"}}

    @app.get("/alerts", dependencies=read_access(), responses=refusals, tags=["alerts"])
    def list_alerts(
        db: DbDep,
        organization_id: Annotated[int | None, Query(gt=0, le=BIGINT_MAX)] = None,
        alert_type: Literal["schedule", "threshold"] | None = None,
        state: Annotated[
            Literal["OK", "TRIGGERED", "NO_DATA", "ERROR"] | None,
            Query(description="a threshold alert's state"),
        ] = None,
        active: Annotated[bool | None, Query(description="the spec's is_active")] = None,
        paused: Annotated[bool | None, Query(description="paused by an operator")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Alerts matching the filters, by id, each with its next run and its latest ledger row."""
        from kpi_alerts.ledger.alert_changes import alert_overview
        from kpi_alerts.ledger.alert_views import alert_summary

        listed, total = alert_overview(
            db,
            organization_id=organization_id,
            alert_type=alert_type,
            state=state,
            is_active=active,
            paused=paused,
            limit=limit,
            offset=offset,
        )
        return {
            "alerts": [alert_summary(alert, last) for alert, last in listed],
            "total_entries": total,
            "limit": limit,
            "offset": offset,
        }

    @app.post(
        "/alerts",
        status_code=status.HTTP_201_CREATED,
        dependencies=edit_access(),
        responses={**refusals, 422: {"description": "the spec is invalid; detail says why"}},
        tags=["alerts"],
    )
    def create(
        db: DbDep,
        user: UserDep,
        spec: Annotated[dict[str, Any], Body(description="the alert spec, as `create-alert` takes it")],
    ) -> dict[str, Any]:
        """Create an alert (all levels in one transaction, or nothing); answers with the created alert."""
        from kpi_alerts.ledger.alert_store import create_alert
        from kpi_alerts.ledger.alert_views import alert_detail

        created = create_alert(db, spec, actor=actor_of(user))
        return alert_detail(db, created.alert_id, now=datetime.now(UTC))

    @app.get("/alerts/{alert_id}", dependencies=read_access(), responses=with_alert, tags=["alerts"])
    def show(db: DbDep, alert_id: AlertId) -> dict[str, Any]:
        """The alert: definition, next five runs (its timezone and UTC), state, last results, changes."""
        from kpi_alerts.ledger.alert_views import alert_detail

        return alert_detail(db, alert_id, now=datetime.now(UTC))

    @app.patch(
        "/alerts/{alert_id}",
        dependencies=edit_access(),
        responses={**with_alert, 422: {"description": "the change is invalid; detail says why"}},
        tags=["alerts"],
    )
    def update(
        db: DbDep,
        user: UserDep,
        alert_id: AlertId,
        patch: Annotated[dict[str, Any], Body(description="JSON merge patch of the alert spec")],
    ) -> dict[str, Any]:
        """Change any field of the spec (validated as creation is); the next run is recomputed when the
        timing changes, a threshold's state reset when what it measures changes."""
        from kpi_alerts.ledger.alert_changes import update_alert
        from kpi_alerts.ledger.alert_views import alert_detail

        updated = update_alert(db, alert_id, patch, actor=actor_of(user))
        detail = alert_detail(db, alert_id, now=datetime.now(UTC))
        return {
            **detail,
            "changed": list(updated.changed),
            "state_reset": updated.state_reset,
            "in_flight": updated.in_flight,
        }

    @app.delete("/alerts/{alert_id}", dependencies=edit_access(), responses=with_alert, tags=["alerts"])
    def delete(db: DbDep, user: UserDep, alert_id: AlertId) -> dict[str, Any]:
        """Delete the alert; its ledger rows are kept for audit (``/history`` still reads them)."""
        from kpi_alerts.ledger.alert_changes import delete_alert

        deleted = delete_alert(db, alert_id, actor=actor_of(user))
        return {
            "id": deleted.alert_id,
            "deleted": True,
            "cron_job_id": deleted.cron_job_id,
            "ledger_rows_kept": deleted.ledger_rows_kept,
        }

    @app.post("/alerts/{alert_id}/pause", dependencies=edit_access(), responses=with_alert, tags=["alerts"])
    def pause(db: DbDep, user: UserDep, alert_id: AlertId) -> dict[str, Any]:
        """Pause the alert: its slots are recorded as skipped until it is resumed."""
        from kpi_alerts.ledger.alert_changes import pause_alert

        change = pause_alert(db, alert_id, actor=actor_of(user))
        return _pause_answer(db, alert_id, changed=bool(change.changed))

    @app.post("/alerts/{alert_id}/resume", dependencies=edit_access(), responses=with_alert, tags=["alerts"])
    def resume(db: DbDep, user: UserDep, alert_id: AlertId) -> dict[str, Any]:
        """Resume the alert at its next slot after now; slots missed while paused are not sent."""
        from kpi_alerts.ledger.alert_changes import resume_alert

        change = resume_alert(db, alert_id, actor=actor_of(user))
        return _pause_answer(db, alert_id, changed=bool(change.changed))

    @app.get(
        "/organizations/{organization_id}/quiet-hours", dependencies=read_access(), tags=["organizations"]
    )
    def organization_quiet_hours(db: DbDep, organization_id: OrganizationId) -> dict[str, Any]:
        """The organization's quiet hours (``null``: none): every alert of it holds its messages inside them."""
        from kpi_alerts.ledger.alert_store import organization_quiet_hours

        return _quiet_answer(organization_id, organization_quiet_hours(db, organization_id))

    @app.put(
        "/organizations/{organization_id}/quiet-hours", dependencies=edit_access(), tags=["organizations"]
    )
    def set_quiet_hours(db: DbDep, organization_id: OrganizationId, body: QuietHoursBody) -> dict[str, Any]:
        """Set the organization's quiet hours, in its timezone (refused with one line when they make no sense)."""
        from kpi_alerts.ledger.alert_store import set_organization_quiet_hours
        from kpi_alerts.scheduling.cadence import parse_clock
        from kpi_alerts.scheduling.quiet_hours import QuietHours

        window = QuietHours(
            body.timezone,
            parse_clock(body.start, "quiet_hours.from"),
            parse_clock(body.end, "quiet_hours.to", allow_end_of_day=True),
            tuple(body.days),
        )
        set_organization_quiet_hours(db, organization_id, window)
        return _quiet_answer(organization_id, window)

    @app.delete(
        "/organizations/{organization_id}/quiet-hours", dependencies=edit_access(), tags=["organizations"]
    )
    def remove_quiet_hours(db: DbDep, organization_id: OrganizationId) -> dict[str, Any]:
        """Remove the organization's quiet hours."""
        from kpi_alerts.ledger.alert_store import set_organization_quiet_hours

        set_organization_quiet_hours(db, organization_id, None)
        return _quiet_answer(organization_id, None)

    @app.post("/alerts/{alert_id}/snooze", dependencies=edit_access(), responses=with_alert, tags=["alerts"])
    def snooze(db: DbDep, user: UserDep, alert_id: AlertId, body: SnoozeBody) -> dict[str, Any]:
        """Snooze the alert until a time (``null``: end the snooze now): nothing due before it is sent,
        then it resumes by itself at its first slot at or after that time (no backlog)."""
        from kpi_alerts.ledger.alert_changes import snooze_alert

        snooze_alert(db, alert_id, body.until, actor=actor_of(user))
        return _pause_answer(db, alert_id, changed=True)

    @app.post(
        "/alerts/{alert_id}/test-send",
        dependencies=edit_access(),
        responses={
            **with_alert,
            422: {"description": "not one valid address, or the alert cannot run"},
            502: {"description": "Cube or SMTP failed; detail says why"},
        },
        tags=["alerts"],
    )
    def test_send(db: DbDep, user: UserDep, alert_id: AlertId, body: TestSendBody) -> dict[str, Any]:
        """Fetch live data and send what recipients would get, subject marked [TEST], to ``to`` only.
        No slot is claimed, no ledger row written, no state changed (a ``test_send`` event is)."""
        from kpi_alerts.hooks.cube import CubeHook
        from kpi_alerts.hooks.smtp import SmtpMailer
        from kpi_alerts.hooks.variables import trial_settings
        from kpi_alerts.pipeline.trial import send_test_message

        with CubeHook() as source:
            sent = send_test_message(
                db,
                alert_id,
                body.to,
                source=source,
                mailer=SmtpMailer(),
                settings=trial_settings(),
                actor=actor_of(user),
            )
        return {
            "to": sent.to,
            "subject": sent.subject,
            "delivery": sent.delivery,
            "detail": sent.detail,
            "verdict": sent.verdict,
        }

    @app.get("/alerts/{alert_id}/history", dependencies=read_access(), responses=with_alert, tags=["alerts"])
    def history(
        db: DbDep,
        alert_id: AlertId,
        status_: Annotated[
            ResultStatus | None,
            Query(alias="status", description="only rows with this status"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """The alert's ledger rows, newest slot first (also for a deleted alert): status, value, error…"""
        from kpi_alerts.ledger.alert_changes import alert_history
        from kpi_alerts.ledger.alert_views import history_row

        rows, total = alert_history(db, alert_id, status=status_, limit=limit, offset=offset)
        return {
            "alert_id": alert_id,
            "results": [history_row(r) for r in rows],
            "total_entries": total,
            "limit": limit,
            "offset": offset,
        }

    return app


def _quiet_answer(organization_id: int, window: Any) -> dict[str, Any]:
    from kpi_alerts.scheduling.cadence import clock
    from kpi_alerts.scheduling.quiet_hours import describe_quiet_hours

    if window is None:
        return {"organization_id": organization_id, "quiet_hours": None}
    return {
        "organization_id": organization_id,
        "quiet_hours": {
            "from": clock(window.from_minute),
            "to": clock(window.until_minute),
            "timezone": window.timezone,
            "days": list(window.days),
            "words": describe_quiet_hours(window),
        },
    }


def _pause_answer(db: psycopg.Connection[Any], alert_id: int, *, changed: bool) -> dict[str, Any]:
    from kpi_alerts.ledger.alert_views import alert_detail

    detail = alert_detail(db, alert_id, now=datetime.now(UTC))
    return {**detail, "changed": changed}


__all__ = ["API_PREFIX", "create_api_app"]
