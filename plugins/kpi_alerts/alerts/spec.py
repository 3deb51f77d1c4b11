"""What a user asks for when creating an alert, validated before anything touches the database.

pydantic checks the shape; the domain modules check the meaning (schedule, recipients, gating
condition, threshold condition), so a definition in the table is judged by the same rules at
run time (:func:`kpi_alerts.alerts.definition.AlertDefinition.validate`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kpi_alerts.errors import AlertValidationError


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frequency_interval: Literal["hour", "day", "week", "month"]
    schedule_hour: int = 0
    schedule_minute: int = 0
    selected_days: list[int] = Field(default_factory=list)
    timezone: str = "UTC"
    gating_condition: dict[str, Any] | None = None
    attachment_type: Literal["pdf", "excel", "csv"] | None = "csv"


class ThresholdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: str
    threshold_value: Decimal
    timezone: str = "UTC"
    kpi_measure: str | None = None
    rearm_minutes: int = Field(default=240, ge=0)
    notify_on_recovery: bool = True
    on_no_data: Literal["keep_last", "alert", "ok"] = "keep_last"
    on_error: Literal["keep_last", "alert", "ok"] = "alert"


class AlertSpec(BaseModel):
    """A KPI alert as the API and ``python -m kpi_alerts create-alert`` accept it (JSON)."""

    model_config = ConfigDict(extra="forbid")

    organization_id: int = Field(gt=0)
    alert_name: str = Field(min_length=1, max_length=200)
    recipients: list[str]
    cube_query: dict[str, Any]
    graph_id: int | None = None
    dashboard_id: int | None = None
    dashboard_url: str | None = None
    message: str | None = Field(default=None, max_length=2000)
    owners: list[str] = Field(default_factory=list)
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

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> AlertSpec:
        if (self.schedule is None) == (self.threshold is None):
            raise ValueError("give exactly one of 'schedule' or 'threshold'")
        return self

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


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "alert"
        given = error.get("input")
        shown = (
            f" (got {given!r})" if isinstance(given, str | int | float | bool) and given is not None else ""
        )
        parts.append(f"{where}: {error['msg']}{shown}")
    return "Invalid alert: " + "; ".join(parts)
