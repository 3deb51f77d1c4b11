"""What the management surface (``show``, ``list-alerts``, the REST API, the UI page) shows of an alert:
plain JSON-ready dicts, the same for every client."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.alerts.lifecycle import describe_rule, describe_timing, next_runs, spec_of
from kpi_alerts.errors import KpiAlertError
from kpi_alerts.ledger.alert_changes import AlertNotFound, alert_events, alert_history
from kpi_alerts.ledger.alert_store import load_alert
from kpi_alerts.scheduling.quiet_hours import describe_quiet_hours
from kpi_alerts.scheduling.wording import run_in_words


def alert_status(alert: AlertDefinition) -> str:
    """``paused`` (an operator's pause), ``inactive`` (``is_active`` false in its spec) or ``active``."""
    if alert.master_locked:
        return "paused"
    return "active" if alert.is_active else "inactive"


def alert_summary(alert: AlertDefinition, last: Mapping[str, Any] | None) -> dict[str, Any]:
    """One line of the alert list."""
    threshold = alert.threshold
    return {
        "id": alert.alert_id,
        "cron_job_id": alert.cron_job_id,
        "job_name": alert.job_name,
        "organization_id": alert.organization_id,
        "alert_type": alert.alert_type,
        "alert_name": alert.alert_name,
        "recipients": list(alert.recipients),
        "owners": list(alert.owners),
        "dashboard_url": alert.dashboard_url,
        "is_active": alert.is_active,
        "paused": alert.master_locked,
        "status": alert_status(alert),
        "defect": alert.defect,  # why the stored row cannot run as it is (its slots fail), or None
        "schedule_description": _timing(alert),
        "timezone": alert.timezone,
        "next_run_at": _iso(alert.next_run_at),
        "next_run_local": _local(alert.next_run_at, alert.timezone),
        "state": threshold.state if threshold is not None else None,
        "claim_in_flight": alert.locked,
        "last_result": _plain(dict(last)) if last is not None else None,
        "created_at": _iso(alert.created_at),
        "updated_at": _iso(alert.updated_at),
    }


def alert_detail(conn: psycopg.Connection[Any], alert_id: int, *, now: datetime) -> dict[str, Any]:
    """The alert page / ``show``: definition, next five runs (its timezone and UTC), state, last results."""
    alert = load_alert(conn, alert_id)
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    rows, _ = alert_history(conn, alert_id, limit=5)
    last = rows[0] if rows else None
    detail = alert_summary(alert, _last(last))
    try:
        if alert.master_locked or alert.next_run_at is None:  # paused: what resuming now would plan
            upcoming = next_runs(alert, after=now, count=5)
        else:
            upcoming = [alert.next_run_at, *next_runs(alert, after=alert.next_run_at, count=4)]
    except KpiAlertError:  # an invalid schedule (a row written by plain SQL): nothing is planned
        upcoming = []
    threshold = alert.threshold
    detail.update(
        {
            "definition": spec_of(alert),
            "next_runs": [
                {"utc": _iso(t), "local": _local(t, alert.timezone), "words": _words(t, alert.timezone)}
                for t in upcoming
            ],
            "threshold_last_value": _plain(threshold.last_value) if threshold else None,
            "threshold_rule": _rule(alert),
            # checks in a row so far toward the pending period (breached while OK, OK while TRIGGERED)
            "threshold_streak": threshold.streak if threshold else None,
            "threshold_last_evaluated_at": _iso(threshold.last_evaluated_at) if threshold else None,
            "threshold_last_notified_at": _iso(threshold.last_notified_at) if threshold else None,
            "snoozed_until": _iso(alert.snoozed_until) if alert.hold.snoozed_at(now) else None,
            "quiet_hours": [
                {"of": of, "words": describe_quiet_hours(q)}
                for of, q in (("alert", alert.quiet_hours), ("organization", alert.organization_quiet_hours))
                if q is not None
            ],
            # a report that waits for fresh data: what it waits for, and why its slot is waiting right now
            "freshness": alert.freshness.describe() if alert.freshness is not None else None,
            "waiting_for_data": last["error"] if last is not None and last["status"] == "waiting" else None,
            "recent_results": [history_row(r) for r in rows],
            "recent_events": [_plain(dict(e)) for e in alert_events(conn, alert_id, limit=10)],
        }
    )
    return detail


def history_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ledger row, JSON-ready."""
    return _plain(dict(row))


def _last(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: row[k] for k in ("slot", "status", "error", "finished_at")}


def _rule(alert: AlertDefinition) -> str | None:
    try:
        return describe_rule(alert)
    except KpiAlertError as exc:
        return f"invalid condition: {exc}"


def _timing(alert: AlertDefinition) -> str:
    try:
        return describe_timing(alert)
    except KpiAlertError as exc:
        return f"invalid schedule: {exc}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _local(value: datetime | None, timezone: str) -> str | None:
    if value is None:
        return None
    try:
        local = value.astimezone(ZoneInfo(timezone))
    except (KeyError, ValueError):
        return None
    return local.strftime("%Y-%m-%d %H:%M %Z (%a)")


def _words(value: datetime, timezone: str) -> str | None:
    try:
        return run_in_words(value.astimezone(ZoneInfo(timezone)))
    except (KeyError, ValueError):
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
