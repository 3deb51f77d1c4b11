"""Anomaly conditions: the KPI's latest complete period against a band learned from its own history.

The history is the same seasonal position over the last N weeks — the same weekday for a daily KPI,
the same weekday and hour for an hourly one — read from Cube with the alert's own query. The band is
median ± k·MAD (scaled by 1.4826, so it estimates a standard deviation) or mean ± k·standard deviation,
k being the alert's ``threshold_value``. Fewer usable weeks than the alert's minimum is "not enough
history", never a guess. pandas does the statistics; the comparison itself is exact (``Decimal``).
The rules are documented for users in ``docs/conditions.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from kpi_alerts.conditions.thresholds import (
    ANOMALY_CONDITIONS,
    ThresholdCondition,
    ThresholdResult,
    format_number,
)
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.timezones import zone

#: Periods with a weekly season: a day is compared with the same weekday, an hour with the same hour
#: of the same weekday.
SEASONAL_GRANULARITIES = ("day", "hour")
#: 1 / Φ⁻¹(3/4): makes the MAD of normally distributed values estimate their standard deviation.
MAD_SCALE = 1.4826
MAX_HISTORY_WEEKS = 52


class AnomalyMethod(StrEnum):
    """How the band is learned from the history."""

    MEDIAN_MAD = "median_mad"  # robust: one past spike barely moves it
    MEAN_STD = "mean_std"  # the textbook band: mean ± k standard deviations


@dataclass(frozen=True)
class Band:
    """The expected range and what it was learned from.

    :param spread: the MAD (scaled) or the standard deviation; ``width`` of them on each side.
    :param samples: the past periods that had data.
    """

    low: Decimal
    high: Decimal
    center: Decimal
    spread: Decimal
    width: Decimal
    samples: int
    method: AnomalyMethod


def validate_history(weeks: int, min_history: int) -> None:
    """:raises AlertValidationError: a history too short to learn from, or a minimum above it."""
    if not 2 <= min_history <= weeks <= MAX_HISTORY_WEEKS:
        raise AlertValidationError(
            f"an anomaly condition needs 2 <= min_history <= history_weeks <= {MAX_HISTORY_WEEKS}, "
            f"not min_history {min_history} and history_weeks {weeks}"
        )


def seasonal_granularity(query: Mapping[str, Any]) -> str:
    """The granularity of the query's time dimension, which anomaly conditions need to be hour or day.

    :raises AlertValidationError: naming what is missing.
    """
    for td in query.get("timeDimensions") or ():
        if isinstance(td, Mapping) and td.get("granularity") in SEASONAL_GRANULARITIES:
            return str(td["granularity"])
    raise AlertValidationError(
        "an anomaly condition needs a query with a time dimension by day or hour "
        "(its history is the same weekday, or weekday and hour, of past weeks)"
    )


def history_starts(period_start: datetime, weeks: int) -> list[datetime]:
    """The same seasonal position in each of the ``weeks`` weeks before ``period_start`` (aware, in the
    data's timezone): wall-clock weeks, so a daily or hourly KPI keeps its local time across DST."""
    tz = period_start.tzinfo
    local = period_start.replace(tzinfo=None)
    return [(local - timedelta(weeks=k)).replace(tzinfo=tz) for k in range(1, weeks + 1)]


def history_query(
    query: Mapping[str, Any], *, measure: str, period_start: datetime, weeks: int
) -> dict[str, Any]:
    """The alert's query narrowed to ``measure`` over the ``weeks`` weeks before the checked period
    (Cube reads the range in the query's timezone; the time dimension keeps its granularity)."""
    granularity = seasonal_granularity(query)
    first = history_starts(period_start, weeks)[-1].replace(tzinfo=None)
    last = period_start.replace(tzinfo=None) - timedelta(milliseconds=1)
    dimension = next(
        td
        for td in query["timeDimensions"]
        if isinstance(td, Mapping) and td.get("granularity") == granularity
    )
    date_range = [t.isoformat(timespec="milliseconds") for t in (first, last)]
    time_dimensions = [{**dimension, "dateRange": date_range}]
    narrowed = {k: v for k, v in query.items() if k not in ("measures", "timeDimensions", "order", "limit")}
    return {**narrowed, "measures": [measure], "timeDimensions": time_dimensions}


def seasonal_history(
    values: Mapping[datetime, Decimal | None], period_start: datetime, weeks: int
) -> list[Decimal]:
    """The history's values at the checked period's seasonal position, most recent first; weeks without
    data (Cube leaves empty periods out) are left out, not read as 0."""
    wanted = history_starts(period_start, weeks)
    found = {start.astimezone(period_start.tzinfo): v for start, v in values.items()}
    return [v for start in wanted if (v := found.get(start)) is not None and v.is_finite()]


def expected_band(history: Sequence[Decimal], width: Decimal, method: AnomalyMethod) -> Band:
    """Learn the band from the history with pandas (at least two values)."""
    import pandas as pd

    if len(history) < 2:
        raise ValueError("a band needs at least two past values")
    series = pd.Series([float(v) for v in history], dtype="float64")
    if method is AnomalyMethod.MEDIAN_MAD:
        center = float(series.median())
        spread = float((series - center).abs().median()) * MAD_SCALE
    else:
        center = float(series.mean())
        spread = float(series.std(ddof=1))
    c, s = _decimal(center), _decimal(spread)
    return Band(c - width * s, c + width * s, c, s, width, len(history), method)


def season_label(period_start: datetime, granularity: str) -> str:
    """``a Monday`` or ``a Monday at 09:00``: the seasonal position people read in the e-mail."""
    day = period_start.strftime("%A")
    return f"a {day}" if granularity == "day" else f"a {day} at {period_start.strftime('%H:%M')}"


def evaluate_anomaly(
    condition: ThresholdCondition,
    value: Decimal | None,
    band: Band | None,
    *,
    samples: int,
    min_history: int,
    season: str,
    measure_title: str = "KPI",
    show: Callable[[Decimal], str] = format_number,
) -> ThresholdResult:
    """Compare the value with the band: outside it (or on the chosen side) is a breach.

    :param band: None when the history had fewer than ``min_history`` values (``samples``).
    :param show: writes a value with its unit (``4,600 USD``); plain numbers by default.
    """
    if condition not in ANOMALY_CONDITIONS:
        raise ValueError(f"{condition} is not an anomaly condition")
    if value is None or not value.is_finite():
        return ThresholdResult("no_data", value, None, None, f"no data for {measure_title}")
    if band is None or samples < min_history:
        text = (
            f"not enough history for {measure_title}: {samples} past value(s) for {season}, "
            f"{min_history} needed"
        )
        return ThresholdResult("no_data", value, None, None, text)
    above, below = value > band.high, value < band.low
    met = {
        ThresholdCondition.ABOVE_EXPECTED_RANGE: above,
        ThresholdCondition.BELOW_EXPECTED_RANGE: below,
    }.get(condition, above or below)
    where = "above the expected range" if above else "below the expected range" if below else "as expected"
    basis = (
        f"median of {band.samples} past weeks ± {format_number(band.width)} MAD"
        if band.method is AnomalyMethod.MEDIAN_MAD
        else f"mean of {band.samples} past weeks ± {format_number(band.width)} standard deviations"
    )
    low, high = show(band.low), show(band.high)
    if (above and high == show(value)) or (below and low == show(value)):
        # the unit's rounding would hide why the value is outside ("expected 1-2, got 2"): say the band exactly
        low, high = (format_number(limit.quantize(Decimal("0.01"))) for limit in (band.low, band.high))
    unit = high.rpartition(" ")[2] if " " in high else ""
    if unit and low.endswith(f" {unit}"):  # the unit once: "3,900-4,600 USD"
        low = low.removesuffix(f" {unit}")
    text = f"expected {low}\N{EN DASH}{high} for {season}, got {show(value)} ({where}; {basis})"
    return ThresholdResult("breached" if met else "ok", value, None, None, text)


def _decimal(number: float) -> Decimal:
    """A float statistic as an exact decimal, rounded to 6 places (no binary noise in the band)."""
    return Decimal(repr(number)).quantize(Decimal("0.000001"))


def local_start(period_start: datetime, timezone: str) -> datetime:
    """A period's start in the data's timezone (the seasonal position is local)."""
    return period_start.astimezone(zone(timezone))
