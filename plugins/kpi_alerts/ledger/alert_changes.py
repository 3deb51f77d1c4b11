"""Changing stored alerts: update, pause / resume, snooze, delete — each one transaction, recorded in
``kpi_alert_events`` with who asked. What a change means is decided in :mod:`kpi_alerts.alerts.lifecycle`.

Every change locks the alert's ``cron_jobs`` row first (the lock order of a claim), so a change and a
claim never interleave; a claim already in flight keeps the definition it loaded and finishes under it
(``FINISH_SLOT`` keeps a next run that a change set meanwhile).

Deleting an alert removes its ``kpi_alerts`` row and, by cascade, its ``kpi_schedules`` /
``kpi_thresholds`` row. The ledger is kept for audit: the alert's ``cron_jobs`` row stays as a paused
tombstone (``cron_job_results`` references it, with the seed's cascade), the definition as it was is
kept in the ``deleted`` event, and ``history`` still reads it; retention prunes those ledger rows like
any others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.alerts.lifecycle import merge_patch, plan_update, resume_slot, spec_of
from kpi_alerts.alerts.validation import validate_alert_spec
from kpi_alerts.errors import AlertValidationError, KpiAlertError
from kpi_alerts.ledger import queries
from kpi_alerts.ledger.alert_store import (
    alert_row,
    check_allowed_domains,
    load_alert,
    record_event,
    schedule_row,
    threshold_row,
)
from kpi_alerts.ledger.claim_terms import ACTIVE, status_list
from kpi_alerts.ledger.due_alerts import park_unusable_alert
from kpi_alerts.scheduling.quiet_hours import check_snooze


class AlertNotFound(KpiAlertError, LookupError):
    """No alert with that id (it may have been deleted)."""


@dataclass(frozen=True)
class UpdatedAlert:
    alert: AlertDefinition
    changed: tuple[str, ...]
    state_reset: bool
    #: A slot a worker is on right now goes out under the definition it loaded: this says so (or None).
    in_flight: str | None = None


@dataclass(frozen=True)
class PauseChange:
    """The alerts a pause / resume changed (ids), and the ones it found already so."""

    changed: tuple[int, ...]
    unchanged: tuple[int, ...] = ()


@dataclass(frozen=True)
class DeletedAlert:
    alert_id: int
    cron_job_id: str
    ledger_rows_kept: int


def update_alert(
    conn: psycopg.Connection[Any],
    alert_id: int,
    patch: Mapping[str, Any],
    *,
    now: datetime | None = None,
    actor: str | None = None,
    cube_meta: Mapping[str, Any] | None = None,
) -> UpdatedAlert:
    """Apply a JSON merge patch to the alert's spec; validate the result as creation does; store it."""
    if not isinstance(patch, Mapping):
        raise AlertValidationError("an update must be a JSON object with the fields to change")
    now = now or datetime.now(UTC)
    with conn.transaction():
        current = _lock(conn, alert_id)
        merged = merge_patch(spec_of(current), patch)
        if "organization_id" in patch and patch["organization_id"] != current.organization_id:
            raise AlertValidationError(
                "organization_id cannot change: an alert's data belongs to one organization"
            )
        plan = plan_update(current, validate_alert_spec(merged, cube_meta=cube_meta), now=now)
        spec = plan.spec
        check_allowed_domains(conn, spec)
        conn.execute(queries.UPDATE_ALERT, {"id": alert_id, "now": now, **alert_row(spec)})
        if spec.schedule is not None:
            conn.execute(
                queries.UPDATE_SCHEDULE, {"kpi_alert_id": alert_id, "now": now, **schedule_row(spec)}
            )
        if spec.threshold is not None:
            conn.execute(
                queries.UPDATE_THRESHOLD, {"kpi_alert_id": alert_id, "now": now, **threshold_row(spec)}
            )
        if plan.reset_threshold_state:
            conn.execute(queries.RESET_THRESHOLD_STATE, {"kpi_alert_id": alert_id, "now": now})
        if plan.next_run_at is not None and not current.master_locked:
            conn.execute(
                queries.SET_NEXT_RUN, {"next_run_at": plan.next_run_at, "cron_job_id": current.cron_job_id}
            )
        record_event(
            conn,
            alert_id=alert_id,
            cron_job_id=current.cron_job_id,
            organization_id=spec.organization_id,
            action="updated",
            actor=actor,
            now=now,
            definition=spec.model_dump(mode="json"),
            details={"changed": list(plan.changed), "state_reset": plan.reset_threshold_state},
        )
        updated = load_alert(conn, alert_id)
        flying = conn.execute(
            queries.IN_FLIGHT_SLOT,
            {"cron_job_id": current.cron_job_id, "now": now, "active": status_list(ACTIVE)},
        ).fetchone()
    assert updated is not None
    note = None
    if flying is not None and plan.changed:
        note = (
            f"slot {flying['slot'].isoformat()} is being processed right now ({flying['status']}): it goes out "
            "under the previous definition (its recipients, query and text); the change applies from the next slot"
        )
    return UpdatedAlert(updated, plan.changed, plan.reset_threshold_state, note)


def pause_alert(
    conn: psycopg.Connection[Any], alert_id: int, *, now: datetime | None = None, actor: str | None = None
) -> PauseChange:
    """Pause one alert (``cron_jobs.master_locked``): its slots are recorded as skipped until resumed."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        alert = _lock(conn, alert_id)
        if alert.master_locked:
            return PauseChange((), (alert_id,))
        conn.execute(
            queries.SET_PAUSED, {"paused": True, "next_run_at": None, "cron_job_id": alert.cron_job_id}
        )
        _event(conn, alert, "paused", actor, now)
    return PauseChange((alert_id,))


def resume_alert(
    conn: psycopg.Connection[Any], alert_id: int, *, now: datetime | None = None, actor: str | None = None
) -> PauseChange:
    """Resume one paused alert; its next run is its first slot after now (no backlog is sent)."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        alert = _lock(conn, alert_id)
        if not alert.master_locked:
            return PauseChange((), (alert_id,))
        conn.execute(
            queries.SET_PAUSED,
            {"paused": False, "next_run_at": _resume_slot(alert, now), "cron_job_id": alert.cron_job_id},
        )
        _event(conn, alert, "resumed", actor, now)
    return PauseChange((alert_id,))


@dataclass(frozen=True)
class SnoozeChange:
    alert: AlertDefinition
    next_run_at: datetime | None


def snooze_alert(
    conn: psycopg.Connection[Any],
    alert_id: int,
    until: datetime | None,
    *,
    now: datetime | None = None,
    actor: str | None = None,
) -> SnoozeChange:
    """Snooze an alert until ``until`` (None: end a snooze now). Its next run becomes its first slot at or
    after the snooze's end — nothing due meanwhile is sent then, like resume; a paused alert stays paused
    (its slots are recorded skipped as before). Recorded as a ``snoozed`` event."""
    now = now or datetime.now(UTC)
    if until is not None:
        check_snooze(until, now)
    with conn.transaction():
        alert = _lock(conn, alert_id)
        conn.execute(queries.SET_SNOOZE, {"alert_id": alert_id, "until": until, "now": now})
        snoozed = replace(alert, snoozed_until=until)
        next_run_at = None
        if not alert.master_locked and alert.is_active:
            next_run_at = _resume_slot(snoozed, now)
            if next_run_at is not None:
                conn.execute(
                    queries.SET_NEXT_RUN, {"next_run_at": next_run_at, "cron_job_id": alert.cron_job_id}
                )
        record_event(
            conn,
            alert_id=alert_id,
            cron_job_id=alert.cron_job_id,
            organization_id=alert.organization_id,
            action="snoozed",
            actor=actor,
            now=now,
            details={"until": until.isoformat() if until is not None else None},
        )
        updated = load_alert(conn, alert_id)
    assert updated is not None
    return SnoozeChange(updated, next_run_at)


def pause_alerts(
    conn: psycopg.Connection[Any],
    *,
    organization_id: int | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> PauseChange:
    """Pause every KPI alert of an organization (or all of them when ``organization_id`` is None)."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        rows = conn.execute(queries.PAUSE_ALERTS, {"organization_id": organization_id}).fetchall()
        _events(conn, rows, "paused", actor, now)
    return PauseChange(tuple(sorted(r["alert_id"] for r in rows)))


def resume_alerts(
    conn: psycopg.Connection[Any],
    *,
    organization_id: int | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> PauseChange:
    """Resume every paused KPI alert of an organization (or all); each starts at its next slot after now."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        ids = [
            r["alert_id"]
            for r in conn.execute(queries.LOCK_PAUSED_ALERTS, {"organization_id": organization_id})
        ]
        alerts = [a for a in (load_alert(conn, i) for i in ids) if a is not None]
        conn.execute(
            queries.RESUME_ALERTS,
            {
                "cron_job_ids": [a.cron_job_id for a in alerts],
                "next_runs": [_resume_slot(a, now) for a in alerts],
            },
        )
        _events(
            conn,
            [
                {"alert_id": a.alert_id, "cron_job_id": a.cron_job_id, "organization_id": a.organization_id}
                for a in alerts
            ],
            "resumed",
            actor,
            now,
        )
    return PauseChange(tuple(a.alert_id for a in alerts))


def delete_alert(
    conn: psycopg.Connection[Any], alert_id: int, *, now: datetime | None = None, actor: str | None = None
) -> DeletedAlert:
    """Delete the alert and its schedule / threshold row; keep its ledger (see the module docstring)."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        alert = _lock(conn, alert_id)
        kept = conn.execute(queries.COUNT_LEDGER_ROWS, {"cron_job_id": alert.cron_job_id}).fetchone()
        record_event(
            conn,
            alert_id=alert_id,
            cron_job_id=alert.cron_job_id,
            organization_id=alert.organization_id,
            action="deleted",
            actor=actor,
            now=now,
            definition=spec_of(alert),
            details={"job_name": alert.job_name},
        )
        conn.execute(queries.DELETE_ALERT, {"alert_id": alert_id})
        conn.execute(queries.TOMBSTONE_CRON_JOB, {"cron_job_id": alert.cron_job_id})
    return DeletedAlert(alert_id, alert.cron_job_id, int(kept["n"]) if kept else 0)


def ledger_cron_job_id(conn: psycopg.Connection[Any], alert_id: int) -> str:
    """The ``cron_jobs`` id whose ledger rows are this alert's, for a live or a deleted alert."""
    alert = load_alert(conn, alert_id)
    if alert is not None:
        return alert.cron_job_id
    deleted = conn.execute(queries.DELETED_ALERT, {"alert_id": alert_id}).fetchone()
    if deleted is None or deleted["cron_job_id"] is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return str(deleted["cron_job_id"])


def alert_history(
    conn: psycopg.Connection[Any],
    alert_id: int,
    *,
    status: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The alert's ledger rows, newest slot first, and how many there are in all."""
    params = {"cron_job_id": ledger_cron_job_id(conn, alert_id), "status": status}
    rows = conn.execute(queries.ALERT_HISTORY, {**params, "limit": limit, "offset": offset}).fetchall()
    total = conn.execute(queries.COUNT_HISTORY, params).fetchone()
    return rows, int(total["n"]) if total else 0


def alert_events(conn: psycopg.Connection[Any], alert_id: int, *, limit: int = 20) -> list[dict[str, Any]]:
    return conn.execute(queries.ALERT_EVENTS, {"alert_id": alert_id, "limit": limit}).fetchall()


def alert_overview(
    conn: psycopg.Connection[Any],
    *,
    organization_id: int | None = None,
    alert_type: str | None = None,
    state: str | None = None,
    is_active: bool | None = None,
    paused: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[tuple[AlertDefinition, dict[str, Any] | None]], int]:
    """Alerts matching the filters (paged, by id), each with its latest ledger row; and the total count."""
    params = {
        "organization_id": organization_id,
        "alert_type": alert_type,
        "state": state,
        "is_active": is_active,
        "paused": paused,
    }
    rows = conn.execute(queries.ALERT_OVERVIEW, {**params, "limit": limit, "offset": offset}).fetchall()
    total = conn.execute(queries.COUNT_ALERTS, params).fetchone()
    listed = []
    for row in rows:
        last = None
        if row["last_status"] is not None:
            last = {
                "slot": row["last_slot"],
                "status": row["last_status"],
                "error": row["last_error"],
                "finished_at": row["last_finished_at"],
            }
        listed.append((AlertDefinition.from_row(row), last))
    return listed, int(total["n"]) if total else 0


def record_paused_slots(
    conn: psycopg.Connection[Any], *, logical_time: datetime, dag_run_id: str | None, limit: int = 100_000
) -> int:
    """Record each paused alert whose slot came due as ``skipped`` ("paused by an operator"), and move
    it to its next slot after ``logical_time``; return how many were recorded."""
    recorded = 0
    for row in conn.execute(
        queries.PAUSED_DUE_ALERTS, {"logical_time": logical_time, "limit": limit}
    ).fetchall():
        try:
            recorded += _record_paused_slot(conn, row["alert_id"], logical_time, dag_run_id)
        except psycopg.Error:
            raise
        except Exception as exc:  # one row no code expected never stops the others
            park_unusable_alert(
                conn,
                alert_id=row["alert_id"],
                cron_job_id=row["cron_job_id"],
                reason=f"{type(exc).__name__}: {exc}",
                logical_time=logical_time,
                now=datetime.now(UTC),
                dag_run_id=dag_run_id,
            )
    return recorded


def _record_paused_slot(
    conn: psycopg.Connection[Any], alert_id: int, logical_time: datetime, dag_run_id: str | None
) -> int:
    alert = load_alert(conn, alert_id)
    if alert is None or alert.next_run_at is None:
        return 0
    result = conn.execute(
        queries.RECORD_PAUSED_SLOT,
        {
            "cron_job_id": alert.cron_job_id,
            "alert_id": alert.alert_id,
            "organization_id": alert.organization_id,
            "slot": alert.next_run_at,
            "now": datetime.now(UTC),
            "dag_run_id": dag_run_id,
            "next_run_at": _resume_slot(alert, logical_time),
        },
    ).fetchone()
    return int(result["recorded"]) if result else 0


def _resume_slot(alert: AlertDefinition, after: datetime) -> datetime | None:
    try:
        return resume_slot(alert, after)
    except KpiAlertError:  # an invalid schedule: first sight decides (and the run records why)
        return None


def _lock(conn: psycopg.Connection[Any], alert_id: int) -> AlertDefinition:
    if conn.execute(queries.LOCK_ALERT_FOR_CHANGE, {"alert_id": alert_id}).fetchone() is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    alert = load_alert(conn, alert_id)
    assert alert is not None
    return alert


def _event(
    conn: psycopg.Connection[Any], alert: AlertDefinition, action: str, actor: str | None, now: datetime
) -> None:
    record_event(
        conn,
        alert_id=alert.alert_id,
        cron_job_id=alert.cron_job_id,
        organization_id=alert.organization_id,
        action=action,
        actor=actor,
        now=now,
    )


def _events(
    conn: psycopg.Connection[Any], rows: list[Any], action: str, actor: str | None, now: datetime
) -> None:
    if rows:
        conn.execute(
            queries.INSERT_EVENTS,
            {
                "action": action,
                "actor": actor,
                "now": now,
                "alert_ids": [r["alert_id"] for r in rows],
                "cron_job_ids": [r["cron_job_id"] for r in rows],
                "organization_ids": [r["organization_id"] for r in rows],
            },
        )


__all__ = [
    "AlertNotFound",
    "DeletedAlert",
    "PauseChange",
    "SnoozeChange",
    "UpdatedAlert",
    "alert_events",
    "alert_history",
    "alert_overview",
    "delete_alert",
    "ledger_cron_job_id",
    "pause_alert",
    "pause_alerts",
    "record_paused_slots",
    "resume_alert",
    "resume_alerts",
    "snooze_alert",
    "update_alert",
]
