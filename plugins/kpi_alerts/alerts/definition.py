"""An alert as stored (cron_jobs + kpi_alerts + kpi_schedules | kpi_thresholds), loaded for one run.

Rows may have been written by plain SQL, so nothing here trusts them: :meth:`AlertDefinition.validate`
applies the same rules as alert creation and raises :class:`AlertValidationError` with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from kpi_alerts.alerts.spec import cadence_of, quiet_hours_of
from kpi_alerts.alerts.stored_json import StoredJsonDefect, decode_stored_json
from kpi_alerts.conditions.anomaly import seasonal_granularity, validate_history
from kpi_alerts.conditions.freshness import Freshness
from kpi_alerts.conditions.gating_format import parse_gating_condition
from kpi_alerts.conditions.groups import check_group_by
from kpi_alerts.conditions.thresholds import (
    ANOMALY_CONDITIONS,
    parse_condition,
    validate_recovery,
    validate_threshold,
)
from kpi_alerts.cube.rest_format import check_query_shape
from kpi_alerts.delivery.recipients import validate_recipients
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.reports.units import DEFAULT_LOCALE, DisplaySettings, check_locale
from kpi_alerts.scheduling.cadence import CheckCadence
from kpi_alerts.scheduling.quiet_hours import (
    Hold,
    QuietHours,
    SlotHeld,
    held_slot,
    next_check,
    next_report_slot,
)
from kpi_alerts.scheduling.schedule import Schedule, next_run_after, validate_schedule
from kpi_alerts.vocabulary import AttachmentKind

if TYPE_CHECKING:
    from kpi_alerts.reports.units import DisplaySettings

MICROSECOND = timedelta(microseconds=1)


def _labels(value: object) -> dict[str, str]:
    """``column_labels`` as decoded: a mapping of strings; anything else is ignored."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


@dataclass(frozen=True)
class ThresholdDefinition:
    condition: str
    threshold_value: Decimal
    timezone: str
    kpi_measure: str | None
    rearm_minutes: int
    notify_on_recovery: bool
    on_no_data: str
    on_error: str
    state: str
    last_value: Decimal | None
    last_evaluated_at: datetime | None
    last_notified_at: datetime | None
    state_changed_at: datetime | None
    recovery_threshold: Decimal | None = None
    pending_checks: int = 1
    recovery_checks: int = 1
    streak: int = 0
    anomaly_method: str = "median_mad"
    history_weeks: int = 8
    min_history: int = 4
    group_by: str | None = None
    cadence: CheckCadence | None = None  # None: every hour on the hour (UTC), in ``timezone``

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ThresholdDefinition:
        """From the ``LOAD_ALERT`` query's row (its ``kpi_thresholds`` columns)."""
        return cls(
            condition=row["condition"],
            threshold_value=row["threshold_value"],
            timezone=row["threshold_timezone"],
            kpi_measure=row["kpi_measure"],
            rearm_minutes=row["rearm_minutes"],
            notify_on_recovery=row["notify_on_recovery"],
            on_no_data=row["on_no_data"],
            on_error=row["on_error"],
            state=row["state"],
            last_value=row["last_value"],
            last_evaluated_at=row["last_evaluated_at"],
            last_notified_at=row["last_notified_at"],
            state_changed_at=row["state_changed_at"],
            cadence=cadence_of(row["threshold_timezone"], row),
            recovery_threshold=row["recovery_threshold"],
            pending_checks=row["pending_checks"],
            recovery_checks=row["recovery_checks"],
            streak=row["streak"],
            anomaly_method=row["anomaly_method"],
            history_weeks=row["history_weeks"],
            min_history=row["min_history"],
            group_by=row["group_by"],
        )

    @property
    def check_cadence(self) -> CheckCadence:
        return self.cadence if self.cadence is not None else CheckCadence(self.timezone)


@dataclass(frozen=True)
class AlertDefinition:
    alert_id: int
    cron_job_id: str
    job_name: str
    organization_id: int
    alert_type: Literal["schedule", "threshold"]
    alert_name: str
    recipients: tuple[str, ...]
    cube_query: Mapping[str, Any]
    is_active: bool
    master_locked: bool
    next_run_at: datetime | None
    dashboard_url: str | None = None
    owners: tuple[str, ...] = ()
    message: str | None = None
    schedule: Schedule | None = None
    gating_condition: Mapping[str, Any] | None = None
    attachment_type: AttachmentKind | None = None
    threshold: ThresholdDefinition | None = None
    graph_id: int | None = None
    dashboard_id: int | None = None
    locked: bool = False  # a claim is in flight
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: Why the stored row cannot be used as it is (a JSON column nested too deeply, ...): its slot fails
    #: with this reason (:meth:`validate`); None for a sound row.
    defect: str | None = None
    locale: str | None = None
    currency: str | None = None
    percent_scale: str | None = None
    column_labels: Mapping[str, str] = field(default_factory=dict)
    organization_currency: str | None = None
    #: The organization's recipient domain allow-list (None: no restriction).
    recipient_domains: tuple[str, ...] | None = None
    #: A scheduled report skips a slot whose data equals the last report sent (``kpi_schedules``).
    only_if_changed: bool = False
    #: Quiet hours: the alert's own (in its timezone) and its organization's (in the organization's).
    quiet_hours: QuietHours | None = None
    organization_quiet_hours: QuietHours | None = None
    quiet_reports: str = "delay"  # what a report due inside quiet hours does: "delay" or "skip"
    snoozed_until: datetime | None = None
    #: A report that waits after its slot for fresh data (:mod:`kpi_alerts.conditions.freshness`).
    freshness: Freshness | None = None

    @property
    def waits_at_most(self) -> timedelta:
        """How long after its slot a slot of this alert may still be waiting for fresh data (the misfire
        window counts from there: a waiting slot is not missed before its deadline)."""
        return self.freshness.max_wait if self.freshness is not None else timedelta(0)

    @property
    def hold(self) -> Hold:
        """What holds this alert's messages back (:mod:`kpi_alerts.scheduling.quiet_hours`)."""
        quiet = tuple(q for q in (self.quiet_hours, self.organization_quiet_hours) if q is not None)
        return Hold(quiet, "skip" if self.quiet_reports == "skip" else "delay", self.snoozed_until)

    def held_slot(self, slot: datetime) -> SlotHeld | None:
        """Whether a due slot is held back by a snooze or quiet hours (set after it was planned)."""
        return held_slot(slot, self.hold, is_report=self.alert_type == "schedule")

    @property
    def display(self) -> DisplaySettings:
        """How this alert's reports write numbers and name columns."""
        return DisplaySettings(
            locale=self.locale or DEFAULT_LOCALE,
            currency=self.currency,
            organization_currency=self.organization_currency,
            percent_scale="percent"
            if self.percent_scale == "percent"
            else ("fraction" if self.percent_scale else None),
            column_labels=dict(self.column_labels),
        )

    @property
    def timezone(self) -> str:
        if self.schedule is not None:
            return self.schedule.timezone
        return self.threshold.timezone if self.threshold is not None else "UTC"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertDefinition:
        """Build from the ``LOAD_ALERT`` query's row (columns of all four tables).

        Never raises for what a row holds: the JSON columns are read as text and decoded here, per row
        (:mod:`kpi_alerts.alerts.stored_json`); one that cannot be used becomes :attr:`defect`.
        """
        defects: list[str] = []

        def decoded(column: str) -> Any:
            try:
                return decode_stored_json(row[column], column)
            except StoredJsonDefect as exc:
                defects.append(str(exc))
                return None

        cube_query = decoded("cube_query")
        gating_condition = decoded("gating_condition")
        column_labels = _labels(decoded("column_labels")) if "column_labels" in row else {}
        schedule = threshold = None
        if row["frequency_interval"] is not None:
            schedule = Schedule.from_row(row)
        if row["condition"] is not None:
            threshold = ThresholdDefinition.from_row(row)
        return cls(
            alert_id=row["alert_id"],
            cron_job_id=row["cron_job_id"],
            job_name=row["job_name"],
            organization_id=row["organization_id"],
            alert_type=row["alert_type"],
            alert_name=row["alert_name"],
            recipients=tuple(row["recipients"] or ()),
            cube_query=cube_query if cube_query is not None else {},
            is_active=row["is_active"],
            master_locked=row["master_locked"],
            next_run_at=row["next_run_at"],
            dashboard_url=row["dashboard_url"],
            owners=tuple(row["owners"] or ()),
            message=row["message"],
            schedule=schedule,
            gating_condition=gating_condition,
            attachment_type=AttachmentKind(row["attachment_type"]) if row["attachment_type"] else None,
            threshold=threshold,
            graph_id=row.get("graph_id"),
            dashboard_id=row.get("dashboard_id"),
            locked=bool(row.get("locked")),
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
            locale=row.get("locale"),
            currency=row.get("currency"),
            percent_scale=row.get("percent_scale"),
            column_labels=column_labels,
            organization_currency=row.get("organization_currency"),
            recipient_domains=tuple(row["recipient_domains"])
            if row.get("recipient_domains") is not None
            else None,
            only_if_changed=bool(row["only_if_changed"]),
            freshness=Freshness.from_columns(row) if schedule is not None else None,
            quiet_hours=quiet_hours_of(
                schedule.timezone if schedule else threshold.timezone if threshold else None, row
            ),
            organization_quiet_hours=quiet_hours_of(row.get("org_quiet_timezone"), row, "org_quiet_"),
            quiet_reports=row.get("quiet_reports") or "delay",
            snoozed_until=row.get("snoozed_until"),
            defect="; ".join(defects) or None,
        )

    def validate(self) -> None:
        """Raise :class:`AlertValidationError` naming the first thing wrong with this alert."""
        if self.defect is not None:
            raise AlertValidationError(f"stored alert cannot be used: {self.defect}")
        validate_recipients(self.recipients)
        check_query_shape(self.cube_query)
        if self.locale is not None:
            check_locale(self.locale)
        if self.alert_type == "schedule":
            if self.schedule is None:
                raise AlertValidationError("schedule alert has no kpi_schedules row")
            validate_schedule(self.schedule)
            parse_gating_condition(self.gating_condition)
            if self.freshness is not None:
                self.freshness.validate()
        else:
            if self.threshold is None:
                raise AlertValidationError("threshold alert has no kpi_thresholds row")
            t = self.threshold
            condition = parse_condition(t.condition)
            validate_recovery(condition, t.threshold_value, t.recovery_threshold)
            if condition in ANOMALY_CONDITIONS:
                validate_threshold(condition, t.threshold_value)
                validate_history(t.history_weeks, t.min_history)
                seasonal_granularity(self.cube_query)
            if t.group_by is not None:
                check_group_by(self.cube_query, t.group_by, condition)
            t.check_cadence.validate()  # also the timezone
        for quiet in (self.quiet_hours, self.organization_quiet_hours):
            if quiet is not None:
                quiet.validate()

    @property
    def check_cadence(self) -> CheckCadence:
        """When a threshold alert is checked (the default, hourly, when its row has no threshold)."""
        if self.threshold is not None:
            return self.threshold.check_cadence
        return CheckCadence(self.timezone)

    def next_slot_after(self, after: datetime) -> datetime:
        """The alert's first slot strictly after ``after``: its schedule, or its next check (thresholds),
        past a snooze and moved by quiet hours (:mod:`kpi_alerts.scheduling.quiet_hours`)."""
        if self.alert_type == "schedule":
            if self.schedule is None:
                raise AlertValidationError("schedule alert has no kpi_schedules row")
            schedule = self.schedule
            return next_report_slot(lambda t: next_run_after(schedule, t), after, self.hold)
        return next_check(self.check_cadence, after, self.hold)

    def initial_slot(self, created_at: datetime) -> datetime:
        """The first slot of a new alert: a schedule's next time; a threshold's current check (check soon)."""
        if self.alert_type == "threshold":
            return self.check_cadence.current_check(created_at)
        return self.next_slot_after(created_at)

    def first_slot_at_or_after(self, at: datetime) -> datetime:
        return self.next_slot_after(at - MICROSECOND)
