"""What a user asks for when creating an alert, validated before anything touches the database.

pydantic checks the shape; the domain modules check the meaning (schedule, recipients, gating
condition, threshold condition), so a definition in the table is judged by the same rules at
run time (:func:`kpi_alerts.alerts.definition.AlertDefinition.validate`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from kpi_alerts.conditions.freshness import MAX_AGE_MINUTES, MAX_ASSET_URI, MAX_WAIT_MINUTES, Freshness
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.cadence import CheckCadence, clock, parse_clock
from kpi_alerts.scheduling.quiet_hours import QuietHours
from kpi_alerts.scheduling.schedule import Schedule, validate_schedule
from kpi_alerts.vocabulary import AttachmentKind

#: Ids are PostgreSQL ``bigint``: larger ones are refused here, not by a driver error.
MAX_ID = 2**63 - 1


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")
    return value


#: A whole number that JSON ``true`` / ``false`` is not (pydantic's lax mode would read ``true`` as 1:
#: ``"organization_id": true`` once made an alert of organization 1).
Whole = Annotated[int, BeforeValidator(_not_a_bool)]
#: A year: longer re-arm intervals are a typo (and ``integer`` ends at 2**31 - 1 minutes).
MAX_REARM_MINUTES = 525_600
#: A month of hourly checks: a longer pending period would never notify in time to matter.
MAX_PENDING_CHECKS = 720


class FreshnessSpec(BaseModel):
    """What fresh data a report waits for after its slot: ``{"cube": true, "max_age_minutes": 60,
    "max_wait_minutes": 120}`` (Cube's refresh time of the report's query) or ``{"asset":
    "warehouse://orders", ...}`` (an Airflow asset an upstream DAG updates); see
    :mod:`kpi_alerts.conditions.freshness`."""

    model_config = ConfigDict(extra="forbid")

    cube: bool = False
    asset: str | None = Field(default=None, max_length=MAX_ASSET_URI)
    max_age_minutes: Whole = Field(ge=1, le=MAX_AGE_MINUTES)
    max_wait_minutes: Whole = Field(ge=5, le=MAX_WAIT_MINUTES)

    def to_freshness(self) -> Freshness:
        """The requirement (not yet validated: ``cube`` and ``asset`` together are refused there)."""
        if self.cube and self.asset is not None:
            raise AlertValidationError("freshness: give either cube: true or an asset, not both")
        return Freshness(
            source="asset" if self.asset is not None else "cube" if self.cube else "",  # type: ignore[arg-type]
            max_age_minutes=self.max_age_minutes,
            max_wait_minutes=self.max_wait_minutes,
            asset=self.asset,
        )


class ScheduleSpec(BaseModel):
    """When a report is sent (the meaning is checked by :meth:`Schedule.validate`, one rule for all)."""

    model_config = ConfigDict(extra="forbid")

    frequency_interval: Literal["hour", "day", "week", "month", "cron"]
    schedule_hour: Whole = 0
    schedule_minute: Whole = 0
    selected_days: list[Whole] = Field(default_factory=list, max_length=31)
    timezone: str = Field(default="UTC", max_length=64)
    #: ``cron``: five fields, e.g. ``0 9 * * 1-5`` (:mod:`kpi_alerts.scheduling.cron`).
    cron_expression: str | None = Field(default=None, max_length=200)
    #: ``week``: every N weeks, counted from the week of ``start_date``.
    every_n_weeks: Whole | None = None
    #: No run before this local date; with ``every_n_weeks`` its week is the first one.
    start_date: date | None = None
    #: ``month``: the n-th business day (1 the first, -1 the last).
    business_day: Whole | None = None
    #: Public holidays of this country (and subdivision) are not business days.
    holiday_country: str | None = Field(default=None, max_length=10)
    holiday_subdivision: str | None = Field(default=None, max_length=40)
    #: What a run on a public holiday does: ``skip`` (the default once a country is given) or
    #: ``next_business_day``.
    on_holiday: Literal["skip", "next_business_day"] | None = None
    gating_condition: dict[str, Any] | None = None
    attachment_type: AttachmentKind | None = AttachmentKind.CSV
    #: Skip a slot (recorded ``skipped``) when the query's data equals the last report sent.
    only_if_changed: bool = False
    #: Wait after the slot for fresh data, up to a deadline (``waiting`` in the ledger meanwhile).
    freshness: FreshnessSpec | None = None

    def freshness_columns(self) -> dict[str, Any]:
        """The ``kpi_schedules.freshness_*`` columns (all NULL when the report does not wait)."""
        if self.freshness is None:
            return dict.fromkeys(
                (
                    "freshness_source",
                    "freshness_asset",
                    "freshness_max_age_minutes",
                    "freshness_max_wait_minutes",
                )
            )
        return self.freshness.to_freshness().columns()

    def to_schedule(self) -> Schedule:
        """The timing part, as the scheduler reads a ``kpi_schedules`` row (not yet validated)."""
        return Schedule(
            frequency_interval=self.frequency_interval,
            schedule_hour=self.schedule_hour,
            schedule_minute=self.schedule_minute,
            selected_days=tuple(self.selected_days),
            timezone=self.timezone,
            cron_expression=self.cron_expression,
            every_n_weeks=self.every_n_weeks,
            start_date=self.start_date,
            business_day=self.business_day,
            holiday_country=self.holiday_country,
            holiday_subdivision=self.holiday_subdivision,
            on_holiday=self.on_holiday,
        )


class ActiveHoursSpec(BaseModel):
    """When a threshold alert is checked: ``{"days": [1, 2, 3, 4, 5], "from": "08:00", "to": "18:00"}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    days: list[Whole] = Field(default_factory=list, max_length=7)
    start: str | None = Field(default=None, alias="from", max_length=5)
    end: str | None = Field(default=None, alias="to", max_length=5)


class ThresholdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: str = Field(max_length=40)
    threshold_value: Decimal
    timezone: str = Field(default="UTC", max_length=64)
    kpi_measure: str | None = Field(default=None, max_length=200)
    rearm_minutes: Whole = Field(default=240, ge=0, le=MAX_REARM_MINUTES)
    notify_on_recovery: bool = True
    on_no_data: Literal["keep_last", "alert", "ok"] = "keep_last"
    on_error: Literal["keep_last", "alert", "ok"] = "alert"
    #: Hysteresis: once triggered, the alert recovers only past this level ("above 100, recover below 90").
    recovery_threshold: Decimal | None = None
    #: Pending period: breached checks in a row before notifying, OK checks in a row before recovering.
    pending_checks: Whole = Field(default=1, ge=1, le=MAX_PENDING_CHECKS)
    recovery_checks: Whole = Field(default=1, ge=1, le=MAX_PENDING_CHECKS)
    #: Anomaly conditions (``*_EXPECTED_RANGE``): how the band is learned, from how many past weeks, and
    #: how many of them must have data (else "not enough history").
    anomaly_method: Literal["median_mad", "mean_std"] = "median_mad"
    history_weeks: Whole = Field(default=8, ge=2, le=52)
    min_history: Whole = Field(default=4, ge=2, le=52)
    #: Per-group checks: a dimension of the query; each of its values is checked and keeps its own state.
    group_by: str | None = Field(default=None, max_length=200)

    #: How often it is checked: 5, 10, 15, 30 or 60 minutes (default 60, on the UTC grid), or daily at a
    #: local time ``HH:MM``; optionally only within active hours (:mod:`kpi_alerts.scheduling.cadence`).
    check_every_minutes: Whole | None = None
    check_daily_at: str | None = Field(default=None, max_length=5)
    active_hours: ActiveHoursSpec | None = None

    def cadence_columns(self) -> dict[str, Any]:
        """The ``kpi_thresholds`` cadence columns (minutes after local midnight)."""
        hours = self.active_hours
        return {
            "check_every_minutes": self.check_every_minutes,
            "check_daily_minute": (
                parse_clock(self.check_daily_at, "check_daily_at")
                if self.check_daily_at is not None
                else None
            ),
            "active_days": list(hours.days) if hours is not None and hours.days else None,
            "active_from_minute": (
                parse_clock(hours.start, "active_hours.from") if hours is not None and hours.start else None
            ),
            "active_until_minute": (
                parse_clock(hours.end, "active_hours.to", allow_end_of_day=True)
                if hours is not None and hours.end
                else None
            ),
        }

    def to_cadence(self) -> CheckCadence:
        """When it is checked (not yet validated)."""
        return cadence_of(self.timezone, self.cadence_columns())


def cadence_of(timezone: str, columns: Mapping[str, Any]) -> CheckCadence:
    """A :class:`CheckCadence` from the ``kpi_thresholds`` cadence columns (a row or :meth:`cadence_columns`)."""
    return CheckCadence(
        timezone=timezone,
        every_minutes=columns.get("check_every_minutes"),
        daily_at_minute=columns.get("check_daily_minute"),
        active_days=tuple(columns.get("active_days") or ()),
        active_from_minute=columns.get("active_from_minute"),
        active_until_minute=columns.get("active_until_minute"),
    )


def cadence_spec(cadence: CheckCadence) -> dict[str, Any]:
    """The spec fields of a cadence that differs from the default (what ``show`` prints back)."""
    fields: dict[str, Any] = {}
    if cadence.every_minutes is not None:
        fields["check_every_minutes"] = cadence.every_minutes
    if cadence.daily_at_minute is not None:
        fields["check_daily_at"] = clock(cadence.daily_at_minute)
    if cadence.active_days or cadence.active_from_minute is not None:
        hours: dict[str, Any] = {"days": list(cadence.active_days)}
        if cadence.active_from_minute is not None and cadence.active_until_minute is not None:
            hours.update(
                {"from": clock(cadence.active_from_minute), "to": clock(cadence.active_until_minute)}
            )
        fields["active_hours"] = hours
    return fields


class QuietHoursSpec(BaseModel):
    """When an alert holds its messages back, in its timezone: ``{"from": "22:00", "to": "07:00"}`` (across
    midnight when ``to`` is earlier), optionally only windows starting on ``days`` (0 = Sunday); a report
    due inside them is sent at their end (``"reports": "delay"``, the default) or skipped (``"skip"``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    start: str = Field(alias="from", max_length=5)
    end: str = Field(alias="to", max_length=5)
    days: list[Whole] = Field(default_factory=list, max_length=7)
    reports: Literal["delay", "skip"] = "delay"

    def columns(self) -> dict[str, Any]:
        """The ``kpi_alerts`` quiet-hours columns (minutes after local midnight)."""
        return {
            "quiet_from_minute": parse_clock(self.start, "quiet_hours.from"),
            "quiet_until_minute": parse_clock(self.end, "quiet_hours.to", allow_end_of_day=True),
            "quiet_days": list(self.days) or None,
            "quiet_reports": self.reports,
        }

    def to_quiet_hours(self, timezone: str) -> QuietHours:
        """The window in the alert's timezone (not yet validated)."""
        columns = self.columns()
        return QuietHours(
            timezone, columns["quiet_from_minute"], columns["quiet_until_minute"], tuple(self.days)
        )


def quiet_hours_of(
    timezone: str | None, columns: Mapping[str, Any], prefix: str = "quiet_"
) -> QuietHours | None:
    """A :class:`QuietHours` from quiet-hours columns (``kpi_alerts`` or ``kpi_organization_settings``), or
    None when they are not set."""
    start, end = columns.get(f"{prefix}from_minute"), columns.get(f"{prefix}until_minute")
    if start is None or end is None or timezone is None:
        return None
    return QuietHours(timezone, start, end, tuple(columns.get(f"{prefix}days") or ()))


def quiet_hours_spec(quiet: QuietHours, reports: str) -> dict[str, Any]:
    """What ``show`` prints back for an alert's quiet hours."""
    spec: dict[str, Any] = {"from": clock(quiet.from_minute), "to": clock(quiet.until_minute)}
    if quiet.days:
        spec["days"] = list(quiet.days)
    spec["reports"] = reports
    return spec


class AlertSpec(BaseModel):
    """A KPI alert as the API and ``python -m kpi_alerts create-alert`` accept it (JSON)."""

    model_config = ConfigDict(extra="forbid")

    organization_id: Whole = Field(gt=0, le=MAX_ID)
    alert_name: str = Field(min_length=1, max_length=200)
    recipients: list[str] = Field(max_length=1000)
    cube_query: dict[str, Any]
    graph_id: Whole | None = Field(default=None, ge=0, le=MAX_ID)
    dashboard_id: Whole | None = Field(default=None, ge=0, le=MAX_ID)
    dashboard_url: str | None = Field(default=None, max_length=2000)
    message: str | None = Field(default=None, max_length=2000)
    owners: list[str] = Field(default_factory=list, max_length=1000)
    is_active: bool = True
    #: How reports write numbers (all optional): locale such as ``en-US``; ISO 4217 currency of the
    #: currency measures (else the organization's, else Cube's meta); whether percent measures hold
    #: ``fraction`` or ``percent`` values; a label per column (member key) instead of Cube's title.
    locale: str | None = Field(default=None, max_length=35)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    percent_scale: Literal["fraction", "percent"] | None = None
    column_labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    schedule: ScheduleSpec | None = None
    threshold: ThresholdSpec | None = None
    #: Quiet hours in the alert's timezone (:mod:`kpi_alerts.scheduling.quiet_hours`).
    quiet_hours: QuietHoursSpec | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> AlertSpec:
        if (self.schedule is None) == (self.threshold is None):
            raise ValueError("give exactly one of 'schedule' or 'threshold'")
        return self

    @property
    def timezone(self) -> str:
        """The alert's timezone: its schedule's or its threshold's."""
        if self.schedule is not None:
            return self.schedule.timezone
        return self.threshold.timezone if self.threshold is not None else "UTC"

    def quiet_hours_columns(self) -> dict[str, Any]:
        if self.quiet_hours is None:
            return {
                "quiet_from_minute": None,
                "quiet_until_minute": None,
                "quiet_days": None,
                "quiet_reports": None,
            }
        return self.quiet_hours.columns()

    @property
    def alert_type(self) -> Literal["schedule", "threshold"]:
        return "schedule" if self.schedule is not None else "threshold"


def parse_alert_spec(raw: AlertSpec | dict[str, Any]) -> AlertSpec:
    """Parse and check a spec's shape; raise :class:`AlertValidationError` with one readable line."""
    if isinstance(raw, AlertSpec):
        return raw
    try:
        return AlertSpec.model_validate(raw)
    except ValidationError as exc:
        raise AlertValidationError(describe_validation_error(exc)) from None


def parse_schedule_spec(raw: object) -> Schedule:
    """A schedule on its own (``next-runs``), shape and meaning checked; one readable line if not."""
    try:
        spec = ScheduleSpec.model_validate(raw)
    except ValidationError as exc:
        raise AlertValidationError(describe_validation_error(exc, "schedule")) from None
    return validate_schedule(spec.to_schedule())


def describe_validation_error(exc: ValidationError, what: str = "alert") -> str:
    """One line naming each problem; echoed input is cut to a few characters (never 70 KB of it)."""
    parts = []
    errors = exc.errors(include_url=False)
    for error in errors[:5]:
        where = ".".join(str(p) for p in error["loc"])[:80] or what
        given = error.get("input")
        shown = (
            f" (got {_short(given)})"
            if isinstance(given, str | int | float | bool) and given is not None
            else ""
        )
        parts.append(f"{where}: {error['msg'][:200]}{shown}")
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return f"Invalid {what}: " + "; ".join(parts) + more


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Bidirectional overrides and isolates (U+202E once reversed a Subject and the PDF text) and marks.
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_text(value: str, field: str, *, multiline: bool = False) -> None:
    """Refuse characters that rewrite how text is shown: control characters (ESC, NUL, CR/LF — except
    line breaks and tabs in a ``multiline`` field) and bidirectional overrides.

    :raises AlertValidationError: naming the field and the character's code point.
    """
    allowed = {"\n", "\r", "\t"} if multiline else set()
    for ch in value:
        if ch in allowed:
            continue
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) in {"Cc", "Zl", "Zp"}:
            raise AlertValidationError(
                f"{field} must not contain control or bidirectional-override characters "
                f"(found U+{ord(ch):04X})"
            )


def check_no_nul(value: object, where: str = "alert") -> None:
    """Refuse a NUL character anywhere in a JSON value (PostgreSQL text and jsonb cannot store one);
    iterative, so a deep value cannot exhaust the stack."""
    pending: list[tuple[object, str]] = [(value, where)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise AlertValidationError(f"{path[:80]} must not contain a NUL character")
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    raise AlertValidationError(f"{path[:80]} has a key with a NUL character")
                pending.append((child, f"{path}.{key}"))
        elif isinstance(item, list | tuple):
            pending.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
