"""What a change to a stored alert means, decided without the database.

An update is a JSON merge patch (RFC 7396) on the alert's spec: the fields given replace the stored
ones (objects are merged, ``null`` removes an optional field), and the result is validated exactly as
a new alert is (:func:`kpi_alerts.alerts.validation.validate_alert_spec`). The rules:

- the alert's kind (schedule / threshold) cannot change: delete it and create a new one;
- when the schedule's timing (interval, hour, minute, days, timezone) changes, the next run is the
  new schedule's first slot after now; otherwise the stored next run stands (a slot already due is
  still sent, under the new definition);
- when what a threshold alert measures or compares against changes (query, measure, condition,
  threshold value, group_by), its state (OK / TRIGGERED / ...) and its groups' start again from OK;
- a claim in flight finishes under the definition it loaded.

Resuming a paused alert never fires a backlog: its next run is its first slot after now. Nor does a
snooze: the first slot at or after its end runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.alerts.spec import AlertSpec, cadence_spec, quiet_hours_spec
from kpi_alerts.conditions.thresholds import (
    ANOMALY_CONDITIONS,
    describe_recovery,
    describe_threshold,
    parse_condition,
)
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.cadence import describe_cadence
from kpi_alerts.scheduling.schedule import CALENDAR_FIELDS, describe

TIMING_FIELDS = (
    "frequency_interval",
    "schedule_hour",
    "schedule_minute",
    "selected_days",
    "timezone",
    *CALENDAR_FIELDS,
)
MEASURED_FIELDS = ("condition", "threshold_value", "kpi_measure", "group_by")
CHECK_FIELDS = ("timezone", "check_every_minutes", "check_daily_at", "active_hours")


def spec_of(alert: AlertDefinition) -> dict[str, Any]:
    """The stored alert as the JSON spec that created it (what ``show`` prints and a patch applies to)."""
    spec: dict[str, Any] = {
        "organization_id": alert.organization_id,
        "alert_name": alert.alert_name,
        "recipients": list(alert.recipients),
        "cube_query": dict(alert.cube_query),
        "graph_id": alert.graph_id,
        "dashboard_id": alert.dashboard_id,
        "dashboard_url": alert.dashboard_url,
        "message": alert.message,
        "owners": list(alert.owners),
        "is_active": alert.is_active,
    }
    for key, value in (
        ("locale", alert.locale),
        ("currency", alert.currency),
        ("percent_scale", alert.percent_scale),
        ("column_labels", dict(alert.column_labels) or None),
    ):
        if value is not None:  # display settings appear once set (older specs stay as they were)
            spec[key] = value
    if alert.schedule is not None:
        s = alert.schedule
        spec["schedule"] = {
            "frequency_interval": s.frequency_interval,
            "schedule_hour": s.schedule_hour,
            "schedule_minute": s.schedule_minute,
            "selected_days": list(s.selected_days),
            "timezone": s.timezone,
            "gating_condition": dict(alert.gating_condition) if alert.gating_condition is not None else None,
            "attachment_type": alert.attachment_type,
        }
        for name in CALENDAR_FIELDS:  # shown once set (older specs stay as they were)
            if (value := getattr(s, name)) is not None:
                spec["schedule"][name] = value.isoformat() if isinstance(value, date) else value
        if alert.only_if_changed:  # shown once set (older specs stay as they were)
            spec["schedule"]["only_if_changed"] = True
        if alert.freshness is not None:
            spec["schedule"]["freshness"] = alert.freshness.spec()
    if alert.quiet_hours is not None:
        spec["quiet_hours"] = quiet_hours_spec(alert.quiet_hours, alert.quiet_reports)
    if alert.threshold is not None:
        t = alert.threshold
        spec["threshold"] = {
            "condition": t.condition,
            "threshold_value": str(t.threshold_value),
            "timezone": t.timezone,
            "kpi_measure": t.kpi_measure,
            "rearm_minutes": t.rearm_minutes,
            "notify_on_recovery": t.notify_on_recovery,
            "on_no_data": t.on_no_data,
            "on_error": t.on_error,
            **cadence_spec(t.check_cadence),  # shown once set (older specs stay as they were)
        }
        # shown once set (older specs stay as they were)
        if t.recovery_threshold is not None:
            spec["threshold"]["recovery_threshold"] = str(t.recovery_threshold)
        if t.pending_checks != 1:
            spec["threshold"]["pending_checks"] = t.pending_checks
        if t.recovery_checks != 1:
            spec["threshold"]["recovery_checks"] = t.recovery_checks
        if t.group_by is not None:
            spec["threshold"]["group_by"] = t.group_by
        if (t.anomaly_method, t.history_weeks, t.min_history) != ("median_mad", 8, 4):
            spec["threshold"].update(
                anomaly_method=t.anomaly_method, history_weeks=t.history_weeks, min_history=t.min_history
            )
    return spec


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


@dataclass(frozen=True)
class UpdatePlan:
    """What :func:`kpi_alerts.ledger.alert_store.update_alert` writes, in one transaction."""

    spec: AlertSpec
    next_run_at: datetime | None  # None: the stored next run stands
    reset_threshold_state: bool
    changed: tuple[str, ...]


def plan_update(current: AlertDefinition, new_spec: AlertSpec, *, now: datetime) -> UpdatePlan:
    """Decide what an already validated new spec changes for ``current``."""
    if new_spec.alert_type != current.alert_type:
        raise AlertValidationError(
            f"alert {current.alert_id} is a {current.alert_type} alert and cannot become a "
            f"{new_spec.alert_type} alert: delete it and create a new one"
        )
    old = _comparable(spec_of(current))
    new = new_spec.model_dump(mode="json")
    changed = tuple(sorted(_changed_paths(old, new)))
    next_run_at = None
    quiet_changed = "quiet_hours" in changed
    if new_spec.schedule is not None and (
        quiet_changed or any(f"schedule.{f}" in changed for f in TIMING_FIELDS)
    ):
        next_run_at = planned(current, new_spec).next_slot_after(now)
    if new_spec.threshold is not None and (
        quiet_changed or any(f"threshold.{f}" in changed for f in CHECK_FIELDS)
    ):
        next_run_at = planned(current, new_spec).first_slot_at_or_after(now)
    reset = current.threshold is not None and (
        "cube_query" in changed or any(f"threshold.{f}" in changed for f in MEASURED_FIELDS)
    )
    return UpdatePlan(new_spec, next_run_at, reset, changed)


def planned(current: AlertDefinition, new_spec: AlertSpec) -> AlertDefinition:
    """``current`` with the new spec's timing: schedule, check cadence and quiet hours (what its next run is
    planned from; its organization's quiet hours and a snooze stay as they are)."""
    quiet = new_spec.quiet_hours
    threshold = current.threshold
    if threshold is not None and new_spec.threshold is not None:
        threshold = replace(
            threshold, timezone=new_spec.threshold.timezone, cadence=new_spec.threshold.to_cadence()
        )
    return replace(
        current,
        schedule=new_spec.schedule.to_schedule() if new_spec.schedule is not None else None,
        threshold=threshold,
        quiet_hours=quiet.to_quiet_hours(new_spec.timezone) if quiet is not None else None,
        quiet_reports=quiet.reports if quiet is not None else "delay",
    )


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """The stored spec in the form a parsed one dumps to (e.g. threshold values as decimal strings)."""
    try:
        return AlertSpec.model_validate(spec).model_dump(mode="json")
    except ValidationError:  # a row written by plain SQL that no longer passes: compare as stored
        return spec


def _changed_paths(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping) and key in ("schedule", "threshold"):
            paths += _changed_paths(before, after, f"{prefix}{key}.")
        elif before != after:
            paths.append(f"{prefix}{key}")
    return paths


def resume_slot(alert: AlertDefinition, now: datetime) -> datetime:
    """The next run of a resumed alert: its first slot strictly after now (no backlog)."""
    return alert.next_slot_after(now.astimezone(UTC))


def next_runs(alert: AlertDefinition, *, after: datetime, count: int = 5) -> list[datetime]:
    """The alert's next ``count`` slots after ``after`` (UTC): what ``show`` and the UI list."""
    runs: list[datetime] = []
    cursor = after
    for _ in range(count):
        cursor = alert.next_slot_after(cursor)
        runs.append(cursor)
    return runs


#: What each no-data / error policy means, in the words ``show`` and the UI page use.
POLICY_WORDS = {"keep_last": "keep the last state", "alert": "alert", "ok": "counts as OK"}


def describe_rule(alert: AlertDefinition) -> str | None:
    """A threshold alert's whole rule in words (condition, recovery threshold, pending period, no-data
    and error policies), e.g. ``orders.count > 2; recovers when orders.count < 1; ...``; None for reports.

    :raises AlertValidationError: for a stored condition no evaluation accepts.
    """
    t = alert.threshold
    if t is None:
        return None
    condition = parse_condition(t.condition)
    measures = alert.cube_query.get("measures")
    title = t.kpi_measure or (str(measures[0]) if isinstance(measures, list) and measures else "KPI")
    parts = [describe_threshold(condition, t.threshold_value, title)]
    if condition in ANOMALY_CONDITIONS:
        center = "median ± MAD" if t.anomaly_method == "median_mad" else "mean ± standard deviation"
        parts.append(
            f"band: {center} of the same weekday (or weekday and hour) over {t.history_weeks} weeks, "
            f"at least {t.min_history} with data"
        )
    if t.group_by is not None:
        parts.append(f"checked per {t.group_by}, each group with its own state")
    if t.recovery_threshold is not None:
        parts.append(f"recovers when {describe_recovery(condition, t.recovery_threshold, title)}")
    if t.pending_checks > 1:
        parts.append(f"notifies after {t.pending_checks} breached checks in a row")
    if t.recovery_checks > 1:
        parts.append(f"recovers after {t.recovery_checks} OK checks in a row")
    parts.append(f"no data: {POLICY_WORDS.get(t.on_no_data, t.on_no_data)}")
    parts.append(f"error: {POLICY_WORDS.get(t.on_error, t.on_error)}")
    return "; ".join(parts)


def describe_timing(alert: AlertDefinition) -> str:
    """The schedule in words, with its timezone; threshold alerts are checked at the top of every hour."""
    if alert.schedule is not None:
        changed = "; sent only if the data changed since the last report" if alert.only_if_changed else ""
        fresh = f"; {alert.freshness.describe()}" if alert.freshness is not None else ""
        return describe(alert.schedule) + changed + fresh
    return describe_cadence(alert.check_cadence)
