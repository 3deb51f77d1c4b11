"""Creating and loading alerts. Creation writes all four levels in one transaction, or nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition, ThresholdDefinition
from kpi_alerts.alerts.spec import AlertSpec, quiet_hours_of
from kpi_alerts.alerts.validation import validate_alert_spec
from kpi_alerts.delivery.recipients import check_recipient_domains, validate_domain, validate_recipients
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger import queries
from kpi_alerts.reports.units import check_currency
from kpi_alerts.scheduling.quiet_hours import QuietHours


@dataclass(frozen=True)
class CreatedAlert:
    alert_id: int
    cron_job_id: str
    job_name: str
    next_run_at: datetime


def set_organization_currency(
    conn: psycopg.Connection[Any], organization_id: int, currency: str | None, *, now: datetime | None = None
) -> None:
    """An organization's currency (``kpi_organization_settings``): its alerts' default for money."""
    if currency is not None:
        check_currency(currency)
    conn.execute(
        queries.UPSERT_ORGANIZATION_SETTINGS,
        {"organization_id": organization_id, "currency": currency, "now": now or datetime.now(UTC)},
    )


def set_organization_quiet_hours(
    conn: psycopg.Connection[Any],
    organization_id: int,
    quiet: QuietHours | None,
    *,
    now: datetime | None = None,
) -> None:
    """An organization's quiet hours (``kpi_organization_settings``), in its own timezone; None removes
    them. Every alert of the organization holds its messages inside them as inside its own."""
    if quiet is not None:
        quiet.validate()
    conn.execute(
        queries.UPSERT_ORGANIZATION_QUIET_HOURS,
        {
            "organization_id": organization_id,
            "quiet_from_minute": quiet.from_minute if quiet else None,
            "quiet_until_minute": quiet.until_minute if quiet else None,
            "quiet_days": list(quiet.days) or None if quiet else None,
            "quiet_timezone": quiet.timezone if quiet else None,
            "now": now or datetime.now(UTC),
        },
    )


def organization_quiet_hours(conn: psycopg.Connection[Any], organization_id: int) -> QuietHours | None:
    """An organization's quiet hours, or None when it has none."""
    row = conn.execute(queries.ORGANIZATION_QUIET_HOURS, {"organization_id": organization_id}).fetchone()
    return quiet_hours_of(row["quiet_timezone"], row) if row is not None else None


def recipient_domains(conn: psycopg.Connection[Any], organization_id: int) -> tuple[str, ...] | None:
    """The organization's recipient domain allow-list; None when it has none (no restriction)."""
    row = conn.execute(queries.RECIPIENT_DOMAINS, {"organization_id": organization_id}).fetchone()
    domains = row["recipient_domains"] if row is not None else None
    return tuple(domains) if domains is not None else None


def check_allowed_domains(conn: psycopg.Connection[Any], spec: AlertSpec) -> None:
    """An alert's recipients and owners must be inside its organization's allow-list (when it has one)."""
    domains = recipient_domains(conn, spec.organization_id)
    check_recipient_domains(validate_recipients(spec.recipients), domains, spec.organization_id)
    if spec.owners:
        check_recipient_domains(validate_recipients(spec.owners), domains, spec.organization_id, "owner")


def set_recipient_domains(
    conn: psycopg.Connection[Any],
    organization_id: int,
    domains: Sequence[str] | None,
    *,
    now: datetime | None = None,
) -> tuple[str, ...] | None:
    """Set (or, with None, clear) the organization's recipient domain allow-list; return it normalised.
    Existing alerts are not changed: a recipient outside the list is refused at their next send."""
    if domains is not None:
        if not domains:
            raise AlertValidationError("an allow-list needs at least one domain (or clear it)")
        if len(domains) > 100:
            raise AlertValidationError(f"{len(domains)} domains; at most 100 are allowed")
        domains = list(dict.fromkeys(validate_domain(d) for d in domains))
    conn.execute(
        queries.SET_RECIPIENT_DOMAINS,
        {"organization_id": organization_id, "domains": domains, "now": now or datetime.now(UTC)},
    )
    return tuple(domains) if domains is not None else None


def create_alert(
    conn: psycopg.Connection[Any],
    raw: AlertSpec | Mapping[str, Any],
    *,
    now: datetime | None = None,
    cube_meta: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> CreatedAlert:
    """Validate and store an alert (cron_jobs → kpi_alerts → kpi_schedules | kpi_thresholds).

    :param actor: who asked (recorded in ``kpi_alert_events``), e.g. ``api:admin`` or ``cli:root@host``.
    :param now: the creation instant; a schedule's first slot is the first one strictly after it,
        a threshold alert is first checked at the current hour's slot.
    """
    spec = validate_alert_spec(raw, cube_meta=cube_meta)
    now = now or datetime.now(UTC)
    with conn.transaction():
        check_allowed_domains(conn, spec)
        alert_id = conn.execute(queries.NEXT_ALERT_ID).fetchone()["id"]  # type: ignore[index]
        job_name = f"kpi_alert_{spec.alert_type}_{alert_id}"
        draft = _definition(spec, alert_id, cron_job_id="", job_name=job_name)
        next_run_at = draft.initial_slot(now)
        cron_job_id = conn.execute(
            queries.INSERT_CRON_JOB, {"job_name": job_name, "next_run_at": next_run_at}
        ).fetchone()["id"]  # type: ignore[index]
        conn.execute(
            queries.INSERT_ALERT,
            {"id": alert_id, "cron_job_id": cron_job_id, "alert_type": spec.alert_type, **alert_row(spec)},
        )
        if spec.schedule is not None:
            conn.execute(queries.INSERT_SCHEDULE, {"kpi_alert_id": alert_id, **schedule_row(spec)})
        if spec.threshold is not None:
            conn.execute(queries.INSERT_THRESHOLD, {"kpi_alert_id": alert_id, **threshold_row(spec)})
        record_event(
            conn,
            alert_id=alert_id,
            cron_job_id=cron_job_id,
            organization_id=spec.organization_id,
            action="created",
            actor=actor,
            now=now,
            definition=spec.model_dump(mode="json"),
        )
    return CreatedAlert(alert_id, cron_job_id, job_name, next_run_at)


def alert_row(spec: AlertSpec) -> dict[str, Any]:
    """The ``kpi_alerts`` columns of a validated spec (creation and update write the same)."""
    return {
        "organization_id": spec.organization_id,
        "graph_id": spec.graph_id,
        "dashboard_id": spec.dashboard_id,
        "alert_name": spec.alert_name.strip(),
        "recipients": spec.recipients,
        "is_active": spec.is_active,
        "cube_query": json.dumps(spec.cube_query),
        "owners": spec.owners,
        "message": (spec.message or "").strip() or None,
        "dashboard_url": spec.dashboard_url,
        "locale": spec.locale,
        "currency": spec.currency,
        "percent_scale": spec.percent_scale,
        "column_labels": json.dumps(spec.column_labels) if spec.column_labels else None,
        **spec.quiet_hours_columns(),
    }


def schedule_row(spec: AlertSpec) -> dict[str, Any]:
    assert spec.schedule is not None
    gate = spec.schedule.gating_condition
    return {
        **spec.schedule.model_dump(exclude={"gating_condition", "freshness"}),
        "gating_condition": json.dumps(gate) if gate is not None else None,
        **spec.schedule.freshness_columns(),
    }


def threshold_row(spec: AlertSpec) -> dict[str, Any]:
    assert spec.threshold is not None
    row = spec.threshold.model_dump(exclude={"check_every_minutes", "check_daily_at", "active_hours"})
    return {**row, **spec.threshold.cadence_columns()}


def record_event(
    conn: psycopg.Connection[Any],
    *,
    alert_id: int,
    cron_job_id: str | None,
    organization_id: int | None,
    action: str,
    actor: str | None,
    now: datetime,
    definition: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """One row of ``kpi_alert_events``: who changed (or test-sent) an alert, when, and to what."""
    conn.execute(
        queries.INSERT_EVENT,
        {
            "alert_id": alert_id,
            "cron_job_id": cron_job_id,
            "organization_id": organization_id,
            "action": action,
            "actor": actor,
            "now": now,
            "definition": json.dumps(definition, default=str) if definition is not None else None,
            "details": json.dumps(details, default=str) if details is not None else None,
        },
    )


def load_alert(conn: psycopg.Connection[Any], alert_id: int) -> AlertDefinition | None:
    row = conn.execute(queries.LOAD_ALERT, {"alert_id": alert_id}).fetchone()
    return AlertDefinition.from_row(row) if row is not None else None


def load_alerts(conn: psycopg.Connection[Any], alert_ids: Sequence[int]) -> dict[int, AlertDefinition]:
    """Several alerts in one query (a batch's), by id. Ids that no longer exist are absent, and so are rows
    that cannot be read as an alert: :func:`load_alert` of that id then raises, for its caller to record."""
    found: dict[int, AlertDefinition] = {}
    for row in conn.execute(queries.LOAD_ALERTS, {"alert_ids": list(alert_ids)}).fetchall():
        try:
            found[row["alert_id"]] = AlertDefinition.from_row(row)
        except Exception:
            continue
    return found


def list_alerts(conn: psycopg.Connection[Any], organization_id: int | None = None) -> list[AlertDefinition]:
    rows = conn.execute(queries.LIST_ALERTS, {"organization_id": organization_id}).fetchall()
    return [AlertDefinition.from_row(r) for r in rows]


def _definition(spec: AlertSpec, alert_id: int, *, cron_job_id: str, job_name: str) -> AlertDefinition:
    """A new alert as a definition, enough to plan its first slot."""
    schedule = spec.schedule.to_schedule() if spec.schedule is not None else None
    threshold = None
    if spec.threshold is not None:
        t = spec.threshold
        threshold = ThresholdDefinition(
            condition=t.condition,
            threshold_value=t.threshold_value,
            timezone=t.timezone,
            kpi_measure=t.kpi_measure,
            rearm_minutes=t.rearm_minutes,
            notify_on_recovery=t.notify_on_recovery,
            on_no_data=t.on_no_data,
            on_error=t.on_error,
            state="OK",
            last_value=None,
            last_evaluated_at=None,
            last_notified_at=None,
            state_changed_at=None,
            cadence=t.to_cadence(),
        )
    return AlertDefinition(
        alert_id=alert_id,
        cron_job_id=cron_job_id,
        job_name=job_name,
        organization_id=spec.organization_id,
        alert_type=spec.alert_type,
        alert_name=spec.alert_name,
        recipients=tuple(spec.recipients),
        cube_query=spec.cube_query,
        is_active=spec.is_active,
        master_locked=False,
        next_run_at=None,
        schedule=schedule,
        threshold=threshold,
        quiet_hours=spec.quiet_hours.to_quiet_hours(spec.timezone) if spec.quiet_hours is not None else None,
        quiet_reports=spec.quiet_hours.reports if spec.quiet_hours is not None else "delay",
    )
