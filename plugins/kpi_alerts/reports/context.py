"""What a report or an e-mail says about the alert around the data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from kpi_alerts.kpi_data import Column


@dataclass(frozen=True)
class ExpectedRange:
    """An anomaly condition's band for the checked period, drawn on the notice's chart.

    :param period_start: start of the checked period (aware): the band is drawn over that point.
    """

    low: Decimal
    high: Decimal
    period_start: datetime


MessageKind = Literal[
    "report", "threshold_triggered", "threshold_recovered", "threshold_no_data", "alert_error"
]


@dataclass(frozen=True)
class ReportContext:
    """Everything a renderer needs besides the rows.

    :param alert_name: user text: escape it wherever it is rendered.
    :param slot: the scheduled instant this report is for (aware, UTC).
    :param period: human label of the query's date range, e.g. ``last 7 days``.
    :param kpi: the measure that is the KPI (the alert's first measure), if any.
    :param kpi_value: its value as the checks computed it, if any.
    :param condition: human text of the threshold or gate, e.g. ``Revenue > 10,000``; for
        ``alert_error`` notices, the reason the alert failed.
    :param threshold_value: a threshold alert's level (drawn on its chart); None for percent-change
        conditions and reports.
    :param decision: why a threshold notice went out, with its numbers (the check's outcome, a recovery
        threshold, a pending period), e.g. ``Orders is 0: Orders > 2 is not met and Orders < 1 ...``.
    :param expected: an anomaly condition's expected range (drawn on the chart as a band), if any.
    :param dashboard_url: link back to the graph's dashboard, when configured.
    :param message: the alert author's note for recipients (user text: escape it).
    :param data_age: a report sent at its freshness deadline with older data: ``Data as of 07:40 (1 h 20 min
        old)`` (in the subject); :param data_age_note: the sentence saying why (a note of the report).
    """

    alert_name: str
    organization_id: int
    timezone: str
    slot: datetime
    period: str
    generated_at: datetime
    kind: MessageKind = "report"
    kpi: Column | None = None
    kpi_value: Decimal | None = None
    previous_value: Decimal | None = None
    condition: str | None = None
    threshold_value: Decimal | None = None
    decision: str | None = None
    expected: ExpectedRange | None = None
    dashboard_url: str | None = None
    message: str | None = None
    data_age: str | None = None
    data_age_note: str | None = None


def describe_period(query: Mapping[str, Any]) -> str:
    """The query's date range as people read it: ``last 7 days``, ``2026-11-01 to 2026-11-07``."""
    time_dimensions = query.get("timeDimensions") if isinstance(query, Mapping) else None
    for td in time_dimensions if isinstance(time_dimensions, list) else ():
        date_range = td.get("dateRange") if isinstance(td, Mapping) else None
        if isinstance(date_range, str):
            return date_range[:100]
        if isinstance(date_range, list | tuple) and len(date_range) == 2:
            return f"{date_range[0]} to {date_range[1]}"[:100]
    return "all time"
