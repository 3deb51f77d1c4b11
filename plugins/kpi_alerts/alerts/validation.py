"""Everything about an alert checked before it is stored, in one place: the CLI, the REST API, the page's
form and ``create`` / ``update`` all call :func:`validate_alert_spec`; an error is one readable line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_alerts.alerts.spec import AlertSpec, check_no_nul, check_text, parse_alert_spec
from kpi_alerts.conditions.anomaly import seasonal_granularity, validate_history
from kpi_alerts.conditions.gating_format import check_gate_measures, parse_gating_condition
from kpi_alerts.conditions.groups import check_group_by
from kpi_alerts.conditions.thresholds import (
    ANOMALY_CONDITIONS,
    parse_condition,
    validate_recovery,
    validate_threshold,
)
from kpi_alerts.cube.rest_format import check_query_shape, validate_cube_query
from kpi_alerts.delivery.email_message import safe_dashboard_url
from kpi_alerts.delivery.recipients import validate_recipients
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.reports.formatting import single_line
from kpi_alerts.reports.units import check_currency, check_locale
from kpi_alerts.scheduling.schedule import validate_schedule


def validate_alert_spec(
    raw: AlertSpec | Mapping[str, Any], *, cube_meta: Mapping[str, Any] | None = None
) -> AlertSpec:
    """Check everything about an alert before it is stored; raise :class:`AlertValidationError`.

    :param cube_meta: Cube's ``/v1/meta`` answer; when given, the query's members are checked too.
    """
    if not isinstance(raw, AlertSpec | Mapping):
        raise AlertValidationError("an alert spec must be a JSON object")
    check_no_nul(raw if isinstance(raw, Mapping) else raw.model_dump(mode="json"))
    spec = parse_alert_spec(raw if isinstance(raw, AlertSpec) else dict(raw))
    if not spec.alert_name.strip():
        raise AlertValidationError("alert_name must be non-blank text on one line")
    check_text(spec.alert_name, "alert_name")
    if spec.message is not None:
        check_text(spec.message, "message", multiline=True)
    recipients = validate_recipients(spec.recipients)
    owners = validate_recipients(spec.owners) if spec.owners else []
    check_query_shape(spec.cube_query)
    if spec.dashboard_url is not None and safe_dashboard_url(spec.dashboard_url) != spec.dashboard_url:
        raise AlertValidationError(
            "dashboard_url must be a plain http(s) URL: no credentials, spaces, quotes or control characters"
        )
    _check_display_settings(spec)
    if spec.schedule is not None:
        validate_schedule(spec.schedule.to_schedule())
        if spec.schedule.freshness is not None:
            spec.schedule.freshness.to_freshness().validate()
        gate = parse_gating_condition(spec.schedule.gating_condition)
        if gate is not None:
            check_gate_measures(gate, spec.cube_query)
        canonical_gate = gate.to_json() if gate is not None else None  # stored as the format writes it
        spec = spec.model_copy(
            update={"schedule": spec.schedule.model_copy(update={"gating_condition": canonical_gate})}
        )
    if spec.threshold is not None:
        condition = parse_condition(spec.threshold.condition)
        spec.threshold.to_cadence().validate()  # also the timezone
        validate_threshold(condition, spec.threshold.threshold_value)  # finite; percentages >= 0
        validate_recovery(condition, spec.threshold.threshold_value, spec.threshold.recovery_threshold)
        if condition in ANOMALY_CONDITIONS:
            validate_history(spec.threshold.history_weeks, spec.threshold.min_history)
            seasonal_granularity(spec.cube_query)
        if spec.threshold.group_by is not None:
            check_group_by(spec.cube_query, spec.threshold.group_by, condition)
        kpi_measure = spec.threshold.kpi_measure
        if kpi_measure is not None and kpi_measure not in spec.cube_query["measures"]:
            raise AlertValidationError(
                f"kpi_measure {kpi_measure[:100]!r} is not one of the query's measures"
            )
        spec = spec.model_copy(  # "greater_than", ">" ... are stored as the column's spelling
            update={"threshold": spec.threshold.model_copy(update={"condition": condition.value})}
        )
    if spec.quiet_hours is not None:
        spec.quiet_hours.to_quiet_hours(spec.timezone).validate()
        if spec.threshold is not None and spec.quiet_hours.reports != "delay":
            raise AlertValidationError(
                "quiet_hours.reports is for scheduled reports: a threshold alert's notifications wait for "
                "the end of its quiet hours"
            )
    if cube_meta is not None:
        kpi = spec.threshold.kpi_measure if spec.threshold is not None else None
        validate_cube_query(spec.cube_query, cube_meta, kpi_measure=kpi)
    return spec.model_copy(update={"recipients": recipients, "owners": owners})


def _check_display_settings(spec: AlertSpec) -> None:
    if spec.locale is not None:
        check_locale(spec.locale)
    if spec.currency is not None:
        check_currency(spec.currency)
    for key, label in spec.column_labels.items():
        if not label.strip() or single_line(label) != label or len(label) > 100 or len(key) > 200:
            raise AlertValidationError(
                f"column_labels[{key[:100]!r}] must be one line of text of at most 100 characters"
            )
