"""Threshold conditions, and the rule for which number of a Cube result is "the KPI".

Threshold alerts and gating conditions both go through :func:`kpi_value` and
:func:`evaluate_threshold`, so a number means the same thing wherever a condition is written.
All arithmetic is ``Decimal``: a float would make ``0.1 + 0.2 == 0.3`` false and flip alerts.
The rules are documented for users in ``docs/conditions.md``.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import CellValue, Column, KpiData
from kpi_alerts.scheduling.timezones import zone
from kpi_alerts.vocabulary import ADDITIVE_AGGREGATIONS, GRANULARITIES


class ThresholdCondition(StrEnum):
    """The ``kpi_thresholds.condition`` vocabulary."""

    GREATER_THAN = "GREATER_THAN"
    LESS_THAN = "LESS_THAN"
    GREATER_THAN_OR_EQUAL = "GREATER_THAN_OR_EQUAL"
    LESS_THAN_OR_EQUAL = "LESS_THAN_OR_EQUAL"
    EQUAL = "EQUAL"
    NOT_EQUAL = "NOT_EQUAL"
    INCREASED_BY_PERCENT = "INCREASED_BY_PERCENT"
    DECREASED_BY_PERCENT = "DECREASED_BY_PERCENT"
    OUTSIDE_EXPECTED_RANGE = "OUTSIDE_EXPECTED_RANGE"
    ABOVE_EXPECTED_RANGE = "ABOVE_EXPECTED_RANGE"
    BELOW_EXPECTED_RANGE = "BELOW_EXPECTED_RANGE"


_C = ThresholdCondition
PERCENT_CONDITIONS = frozenset({_C.INCREASED_BY_PERCENT, _C.DECREASED_BY_PERCENT})
#: Anomaly conditions (``conditions.anomaly``): the value against a band learned from its own history;
#: their threshold is the band's half-width in MADs or standard deviations.
ANOMALY_CONDITIONS = frozenset({_C.OUTSIDE_EXPECTED_RANGE, _C.ABOVE_EXPECTED_RANGE, _C.BELOW_EXPECTED_RANGE})
#: The widest band an anomaly condition may ask for (wider never fires).
MAX_BAND_WIDTH = Decimal(100)

#: The operator each comparison is written with in gating JSON (the canonical spelling).
OPERATOR_SYMBOLS: Mapping[ThresholdCondition, str] = {
    _C.GREATER_THAN: ">",
    _C.GREATER_THAN_OR_EQUAL: ">=",
    _C.LESS_THAN: "<",
    _C.LESS_THAN_OR_EQUAL: "<=",
    _C.EQUAL: "==",
    _C.NOT_EQUAL: "!=",
}
#: How each comparison is shown to people.
_DISPLAY = {_C.GREATER_THAN_OR_EQUAL: "≥", _C.LESS_THAN_OR_EQUAL: "≤", _C.EQUAL: "=", _C.NOT_EQUAL: "≠"}
_ALIASES: Mapping[str, ThresholdCondition] = {
    **{symbol: c for c, symbol in OPERATOR_SYMBOLS.items()},
    **{symbol: c for c, symbol in _DISPLAY.items()},
    "<>": _C.NOT_EQUAL,
}

#: Enough digits that percent comparisons of any realistic KPI are exact.
_EXACT = Context(prec=80)


def parse_condition(text: object) -> ThresholdCondition:
    """Read a condition name (any case) or operator symbol (``>``, ``>=``, ``!=``, ``≥``...).

    :raises AlertValidationError: naming every valid spelling, so a typo is fixed in one go.
    """
    if isinstance(text, str):
        key = text.strip()
        if key in _ALIASES:
            return _ALIASES[key]
        name = key.upper().replace("-", "_").replace(" ", "_")
        if name in ThresholdCondition.__members__:
            return ThresholdCondition[name]
    valid = ", ".join([*ThresholdCondition, *OPERATOR_SYMBOLS.values()])
    raise AlertValidationError(f"unknown condition {text!r}: use one of {valid}")


#: Thresholds are compared with KPI values: none is 10**15 or more, or needs more than 10 decimals.
MAX_THRESHOLD = Decimal("1e15")
MAX_THRESHOLD_DECIMALS = 10


def validate_threshold(condition: ThresholdCondition, threshold: Decimal) -> Decimal:
    """Refuse thresholds no evaluation could use: NaN/infinite, or a negative percentage.

    :raises AlertValidationError: with the reason.
    """
    if not isinstance(threshold, Decimal) or not threshold.is_finite():
        raise AlertValidationError(f"threshold must be a finite number, not {str(threshold)[:40]!r}")
    if abs(threshold) >= MAX_THRESHOLD:
        raise AlertValidationError("threshold must be between -10**15 and 10**15")
    exponent = threshold.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_THRESHOLD_DECIMALS:
        raise AlertValidationError(f"threshold may have at most {MAX_THRESHOLD_DECIMALS} decimals")
    if condition in PERCENT_CONDITIONS and threshold < 0:
        raise AlertValidationError(f"a percentage threshold must be 0 or more, not {threshold}")
    if condition in ANOMALY_CONDITIONS and not 0 < threshold <= MAX_BAND_WIDTH:
        raise AlertValidationError(
            f"an anomaly condition's threshold is the band's width in MADs or standard deviations: "
            f"above 0 and at most {MAX_BAND_WIDTH}, not {threshold}"
        )
    return threshold


def compare(condition: ThresholdCondition, value: Decimal, threshold: Decimal) -> bool:
    """Apply one of the six comparisons exactly (``Decimal("10") == Decimal("10.00")``)."""
    match condition:
        case _C.GREATER_THAN:
            return value > threshold
        case _C.GREATER_THAN_OR_EQUAL:
            return value >= threshold
        case _C.LESS_THAN:
            return value < threshold
        case _C.LESS_THAN_OR_EQUAL:
            return value <= threshold
        case _C.EQUAL:
            return value == threshold
        case _C.NOT_EQUAL:
            return value != threshold
    raise ValueError(f"{condition} is not a comparison")


def format_number(number: Decimal) -> str:
    """``10000`` → ``10,000``, keeping the decimals as written (``0.50`` stays ``0.50``).

    Extreme exponents stay in scientific notation: ``1E-999999`` must not print a million zeros.
    """
    return f"{number:,f}" if number.is_finite() and abs(number.adjusted()) <= 30 else str(number)


def describe_threshold(condition: ThresholdCondition, threshold: Decimal, measure_title: str) -> str:
    """Human text of a condition, e.g. ``Revenue > 10,000`` or ``Revenue increased by ≥ 20% vs ...``."""
    amount = format_number(threshold)
    if condition in ANOMALY_CONDITIONS:
        side = condition.removesuffix("_EXPECTED_RANGE").lower()
        return f"{measure_title} {side} its expected range (± {amount})"
    if condition in PERCENT_CONDITIONS:
        direction = "increased" if condition is _C.INCREASED_BY_PERCENT else "decreased"
        return f"{measure_title} {direction} by ≥ {amount}% vs previous period"
    return f"{measure_title} {_DISPLAY.get(condition, OPERATOR_SYMBOLS[condition])} {amount}"


#: The side a value recovers to, for the conditions a recovery threshold (hysteresis) applies to:
#: "alert above 100, recover below 90". Equality and percent-change conditions have no such side.
RECOVERY_SIDE: Mapping[ThresholdCondition, ThresholdCondition] = {
    _C.GREATER_THAN: _C.LESS_THAN,
    _C.GREATER_THAN_OR_EQUAL: _C.LESS_THAN,
    _C.LESS_THAN: _C.GREATER_THAN,
    _C.LESS_THAN_OR_EQUAL: _C.GREATER_THAN,
}


def validate_recovery(condition: ThresholdCondition, threshold: Decimal, recovery: Decimal | None) -> None:
    """Refuse a recovery threshold that is not on the OK side of the threshold, or that the condition
    cannot have; None (no hysteresis) is always fine.

    :raises AlertValidationError: with the reason.
    """
    if recovery is None:
        return
    if condition not in RECOVERY_SIDE:
        allowed = ", ".join(RECOVERY_SIDE)
        raise AlertValidationError(f"a recovery threshold needs one of {allowed}, not {condition}")
    try:
        validate_threshold(_C.GREATER_THAN, recovery)
    except AlertValidationError as exc:
        raise AlertValidationError(f"recovery {exc}") from None
    side = RECOVERY_SIDE[condition]
    if compare(side, threshold, recovery):  # e.g. "> 100, recover below 110": it would never hold
        word = "at or below" if side is _C.LESS_THAN else "at or above"
        raise AlertValidationError(
            f"the recovery threshold must be {word} the threshold for {condition}: "
            f"{format_number(recovery)} vs {format_number(threshold)}"
        )


def describe_recovery(condition: ThresholdCondition, recovery: Decimal, measure_title: str) -> str:
    """``Revenue < 90``: what must hold for a breached alert to recover."""
    side = RECOVERY_SIDE[condition]
    return f"{measure_title} {OPERATOR_SYMBOLS[side]} {format_number(recovery)}"


@dataclass(frozen=True)
class KpiReading:
    """The KPI as :func:`kpi_value` reads it; ``value`` None means there is no data.

    :param previous: the period before ``bucket_start`` (time series only), for percent changes.
    :param bucket_start: start of the period ``value`` belongs to, in the data's timezone.
    """

    value: Decimal | None
    previous: Decimal | None = None
    bucket_start: datetime | None = None


@dataclass(frozen=True)
class ThresholdResult:
    """A condition checked against a reading; ``description`` is for e-mails and the ledger."""

    status: Literal["breached", "ok", "no_data"]
    value: Decimal | None
    previous: Decimal | None
    change_percent: Decimal | None
    description: str


def kpi_value(
    data: KpiData,
    measure: str | None = None,
    *,
    now: datetime,
    aggregate: Literal["latest", "total"] = "latest",
) -> KpiReading:
    """Pick the KPI out of a result by the documented rule.

    ``latest`` (the default): with a time dimension, the latest *complete* bucket (its period has
    ended at ``now``) and the bucket one period before it; without one, the single row. Several
    rows for one period are added up for count/sum measures and refused for the others (an
    average of averages would be wrong). ``total``: the sum over every row, as asked.

    :param measure: the measure's key; default the query's first measure.
    :param now: the evaluation instant (aware), normally the slot being processed.
    :raises AlertValidationError: unknown measure, or rows that cannot make one value.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    column = _kpi_column(data, measure)
    if aggregate == "total":
        return KpiReading(_total([_as_decimal(row.get(column.key), column) for row in data.rows]))
    time_column = data.time_dimension
    if time_column is None:
        return KpiReading(_combine([row.get(column.key) for row in data.rows], column))
    tz = zone(data.timezone)
    buckets = _buckets(data, column, time_column)
    starts = sorted(start for start in buckets if start <= now)
    granularity = _granularity(time_column)
    if granularity is None:
        # Bucket ends unknown: the latest bucket is taken to be the one containing ``now``.
        complete = starts[:-1]
        previous_start = complete[-2] if len(complete) > 1 else None
    else:
        complete = [start for start in starts if _shift(start, granularity, 1, tz) <= now]
        previous_start = _shift(complete[-1], granularity, -1, tz) if complete else None
    if not complete:
        return KpiReading(None)
    previous = buckets.get(previous_start) if previous_start is not None else None
    return KpiReading(
        _combine(buckets[complete[-1]], column),
        _combine(previous, column) if previous is not None else None,
        complete[-1].astimezone(tz),
    )


def period_values(data: KpiData, measure: str | None = None) -> dict[datetime, Decimal | None]:
    """Each period's value of a time series, by the period's start (UTC), combined by the same rule
    as :func:`kpi_value`; periods Cube left out (no rows) are absent.

    :raises AlertValidationError: no time dimension, an unknown measure, rows that cannot make one value.
    """
    column = _kpi_column(data, measure)
    if data.time_dimension is None:
        raise AlertValidationError("the query has no time dimension, so it has no periods")
    buckets = _buckets(data, column, data.time_dimension)
    return {start: _combine(cells, column) for start, cells in buckets.items()}


def bucket_granularity(data: KpiData) -> str | None:
    """The granularity Cube bucketed the query's time dimension by, if it names one."""
    return _granularity(data.time_dimension) if data.time_dimension is not None else None


def evaluate_threshold(
    condition: ThresholdCondition,
    threshold: Decimal,
    reading: KpiReading,
    *,
    measure_title: str = "KPI",
    recovery: Decimal | None = None,
    in_breach: bool = False,
) -> ThresholdResult:
    """Check a condition; percent conditions compare against ``reading.previous``.

    Change % = (value - previous) / abs(previous) * 100. From a previous value of 0, a value of 0
    is a 0% change; any other value is an unbounded rise (value > 0) or fall (value < 0), so
    ``change_percent`` is None and only the matching direction is breached.

    :param recovery: the recovery threshold (hysteresis): while ``in_breach``, a value that no longer
        meets the condition is still ``breached`` until it is past this level.
    :param in_breach: the alert stands triggered (its stored state), so the recovery threshold applies.
    """
    validate_threshold(condition, threshold)
    validate_recovery(condition, threshold, recovery)
    rule = describe_threshold(condition, threshold, measure_title)
    value, previous = reading.value, reading.previous
    if value is None or not value.is_finite():
        return ThresholdResult("no_data", value, previous, None, f"no data for {measure_title}")
    if condition not in PERCENT_CONDITIONS:
        met = compare(condition, value, threshold)
        fact = f"{measure_title} is {format_number(value)}"
        if met or recovery is None or not in_breach:
            return _result(met, value, previous, None, fact, rule)
        recovered = describe_recovery(condition, recovery, measure_title)
        if compare(RECOVERY_SIDE[condition], value, recovery):
            text = f"{fact}: {rule} is not met and {recovered} (recovery threshold) is met"
            return ThresholdResult("ok", value, previous, None, text)
        text = f"{fact}: {rule} is not met, but the breach holds until {recovered} (recovery threshold)"
        return ThresholdResult("breached", value, previous, None, text)
    if previous is None or not previous.is_finite():
        text = f"no previous-period value of {measure_title} to compare with"
        return ThresholdResult("no_data", value, previous, None, text)
    sign = 1 if condition is _C.INCREASED_BY_PERCENT else -1
    change: Decimal | None
    if previous == 0:
        change = Decimal(0) if value == 0 else None
        met = (sign * value > 0) if change is None else (change >= threshold)
        shown = "a change from zero, no percentage" if change is None else "0%"
    else:
        # Compared without dividing, so no rounding can decide an alert.
        delta = _EXACT.subtract(value, previous)
        met = _EXACT.multiply(delta, Decimal(100 * sign)) >= _EXACT.multiply(threshold, abs(previous))
        change = delta * 100 / abs(previous)
        rounded = _EXACT.quantize(change, Decimal("0.01")).normalize() + 0  # "+ 0" drops "-0"
        shown = f"{'+' if change > 0 else ''}{format_number(rounded)}%"
    fact = f"{measure_title} went from {format_number(previous)} to {format_number(value)} ({shown})"
    return _result(met, value, previous, change, fact, rule)


def _result(
    met: bool, value: Decimal, previous: Decimal | None, change: Decimal | None, fact: str, rule: str
) -> ThresholdResult:
    verdict = "is met" if met else "is not met"
    return ThresholdResult("breached" if met else "ok", value, previous, change, f"{fact}: {rule} {verdict}")


def _kpi_column(data: KpiData, measure: str | None) -> Column:
    measures = data.measures
    if measure is None:
        if not measures:
            raise AlertValidationError("the query has no measure, so it has no KPI")
        return measures[0]
    for column in measures:
        if column.key == measure:
            return column
    known = ", ".join(c.key for c in measures) or "none"
    raise AlertValidationError(f"measure {measure!r} is not in the query's result (measures: {known})")


def _as_decimal(cell: CellValue, column: Column) -> Decimal | None:
    """A measure cell as a number; NaN and infinities (no real value) count as no data."""
    if isinstance(cell, str):
        try:
            cell = Decimal(cell)
        except InvalidOperation as exc:
            raise AlertValidationError(f"{column.title} holds {cell!r}, not a number") from exc
    if isinstance(cell, Decimal):
        return cell if cell.is_finite() else None
    if cell is None:
        return None
    raise AlertValidationError(f"{column.title} holds {cell!r}, not a number")


def _total(values: list[Decimal | None]) -> Decimal | None:
    present = [v for v in values if v is not None]
    return sum(present, Decimal(0)) if present else None


def _combine(cells: list[CellValue], column: Column) -> Decimal | None:
    """One period's value: its only row, or the total of several rows when totals make sense."""
    values = [_as_decimal(cell, column) for cell in cells]
    if len(values) <= 1:
        return values[0] if values else None
    if column.type not in ADDITIVE_AGGREGATIONS:
        raise AlertValidationError(
            f"the query returns {len(values)} rows for one period and {column.title} ({column.type}) "
            "cannot be added up: remove the extra dimensions or use a count or sum measure"
        )
    return _total(values)


def _buckets(data: KpiData, column: Column, time_column: Column) -> dict[datetime, list[CellValue]]:
    """The measure's cells by period start (UTC); local times without an offset are in the data's zone."""
    tz = zone(data.timezone)
    buckets: dict[datetime, list[CellValue]] = {}
    for row in data.rows:
        start = row.get(time_column.key)
        if start is None:
            continue
        if not isinstance(start, datetime):
            raise AlertValidationError(f"{time_column.title} holds {start!r}, not a time")
        start = start if start.utcoffset() is not None else start.replace(tzinfo=tz)
        buckets.setdefault(start.astimezone(UTC), []).append(row.get(column.key))
    return buckets


def _granularity(column: Column) -> str | None:
    """Cube names a bucketed time dimension ``cube.dimension.granularity``."""
    parts = column.key.split(".")
    return parts[-1] if len(parts) >= 3 and parts[-1] in GRANULARITIES else None


def _shift(start: datetime, granularity: str, periods: int, zone: ZoneInfo) -> datetime:
    """The bucket ``periods`` away: wall-clock days/months in ``zone`` (DST-correct), else elapsed time."""
    if granularity in ("second", "minute", "hour"):
        return start + timedelta(**{f"{granularity}s": periods})
    local = start.astimezone(zone).replace(tzinfo=None)
    if granularity in ("day", "week"):
        shifted = local + timedelta(days=periods * (7 if granularity == "week" else 1))
    else:
        step = {"month": 1, "quarter": 3, "year": 12}[granularity]
        year, month = divmod(local.year * 12 + local.month - 1 + periods * step, 12)
        day = min(local.day, calendar.monthrange(year, month + 1)[1])
        shifted = local.replace(year=year, month=month + 1, day=day)
    return shifted.replace(tzinfo=zone).astimezone(UTC)
