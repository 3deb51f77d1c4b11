"""The report model: what a report says, worked out once from the KPI data and the alert.

CSV, XLSX, PDF and the e-mail (HTML and plain text) render a :class:`ReportModel` and compute nothing
of their own, so they never disagree: the headline and its basis, the period, the change against the
previous period, the columns' labels and units, the cells' text and the chart series are all here.

The headline of a scheduled report is the period's figure: for an additive measure (count, sum) the
total of the rows; for any other (avg, min, max, count distinct, a ratio) Cube's own figure for the
whole range, asked with a second query without the time granularity and the breakdown (an average of
daily averages, or a sum of daily distinct counts, would be wrong). The change is against the previous
range of the same length (:mod:`kpi_alerts.reports.periods`), fetched from Cube the same way.
Threshold messages keep the checks' rule (the latest complete bucket) and say so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from kpi_alerts.conditions.thresholds import kpi_value
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import CellValue, Column, KpiData
from kpi_alerts.reports.chart import ChartBand, chart_from_kpi_data
from kpi_alerts.reports.context import MessageKind, ReportContext, describe_period
from kpi_alerts.reports.formatting import granularity, is_date_only, local_date, to_local
from kpi_alerts.reports.periods import DateRange, query_date_range, resolve_date_range, with_date_range
from kpi_alerts.reports.query_plan import kpi_query, previous_series_query
from kpi_alerts.reports.units import (
    DisplaySettings,
    Unit,
    format_number,
    format_percent_change,
    format_plain,
    format_signed,
    format_value,
    headline_places,
    unit_for,
)
from kpi_alerts.vocabulary import ADDITIVE_AGGREGATIONS

if TYPE_CHECKING:
    from kpi_alerts.conditions.gating_evaluation import GateDecision
    from kpi_alerts.reports.chart import ChartData

GRANULARITY_LABELS = {
    "second": "Second", "minute": "Minute", "hour": "Hour", "day": "Day", "week": "Week",
    "month": "Month", "quarter": "Quarter", "year": "Year",
}  # fmt: skip
#: Up and down are told apart by shape and word, never by colour alone (colour-blind safe).
MARKERS = {"up": "▲", "down": "▼", "flat": "■"}

Fetch = Callable[[Mapping[str, Any]], KpiData]


@dataclass(frozen=True)
class ReportColumn:
    """One column as every renderer shows it. ``unit`` is set for measures only."""

    key: str
    label: str
    kind: str
    unit: Unit | None = None
    date_only: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind == "measure"

    @property
    def header(self) -> str:
        """The label with the raw values' unit, for a CSV: ``Revenue (USD)``, ``Rate (fraction, ...)``."""
        note = self.unit.header_note if self.unit is not None else ""
        return f"{self.label} ({note})" if note else self.label

    @property
    def title(self) -> str:
        """The label as a table shows it: a currency's code after it (cells then carry no symbol)."""
        if self.unit is not None and self.unit.kind == "currency" and self.unit.currency:
            return f"{self.label} ({self.unit.currency})"
        return self.label

    @property
    def excel_format(self) -> str | None:
        if self.kind == "time_dimension":
            return "yyyy-mm-dd" if self.date_only else "yyyy-mm-dd hh:mm"
        return self.unit.excel_format if self.unit is not None else None


@dataclass(frozen=True)
class Headline:
    """The one figure above the report.

    :param text: as the body shows it (``$219,795.42``); ``plain``: number then unit code, rounded
        for a subject (``219,795 USD``).
    :param basis: what the figure is (``total of 2026-11-23 to 2026-11-29``, ``latest complete day:
        2026-11-30``).
    """

    label: str
    value: Decimal | None
    text: str
    plain: str
    basis: str | None


@dataclass(frozen=True)
class Change:
    """The headline against the previous period (or, for threshold messages, the previous bucket)."""

    previous: Decimal
    previous_text: str
    absolute: Decimal
    absolute_text: str
    percent: Decimal | None
    percent_text: str | None
    direction: Literal["up", "down", "flat"]
    against: str
    previous_period: str | None = None
    #: percent measures change in percentage points: a subject says ``+5.3 pp``, not ``+11.4 %``
    points: bool = False

    @property
    def marker(self) -> str:
        return MARKERS[self.direction]

    @property
    def text(self) -> str:
        """``▲ up +8,870.42 USD (+4.2 %) vs previous week``."""
        word = {"up": "up", "down": "down", "flat": "unchanged"}[self.direction]
        pct = f" ({self.percent_text})" if self.percent_text else ""
        return f"{self.marker} {word} {self.absolute_text}{pct} vs {self.against}"

    @property
    def short(self) -> str:
        """For a subject: ``+4.2 % vs previous week`` (the absolute change when there is no percent)."""
        shown = self.absolute_text if self.points or not self.percent_text else self.percent_text
        return f"{shown} vs {self.against}"


@dataclass(frozen=True)
class ReportModel:
    """Everything a rendered report or e-mail says (renderers only lay it out)."""

    kind: MessageKind
    alert_name: str
    organization_id: int
    timezone: str
    locale: str
    report_date: str
    generated_at: str
    period: str
    date_range: DateRange | None
    headline: Headline | None
    change: Change | None
    value_rule: str | None
    gate: str | None
    gate_short: str | None
    condition: str | None
    decision: str | None
    dashboard_url: str | None
    message: str | None
    columns: tuple[ReportColumn, ...]
    rows: tuple[Mapping[str, CellValue], ...]
    chart: ChartData | None = None
    #: What a reader must know about the data itself: no rows, values that are not numbers, its age.
    notes: tuple[str, ...] = ()
    #: A report sent at its freshness deadline: ``Data as of 07:40 (1 h 20 min old)`` (in the subject).
    data_age: str | None = None

    @property
    def subject_figure(self) -> str | None:
        """``219,795 USD (+4.2 % vs previous week)``, or None without a headline."""
        if self.headline is None or self.headline.value is None:
            return None
        change = f" ({self.change.short})" if self.change is not None else ""
        return self.headline.plain + change

    def cell_text(self, value: CellValue, column: ReportColumn) -> str:
        """A cell as a person reads it: units and separators by locale, dates in the report's zone."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, Decimal):
            if not value.is_finite():
                return ""  # NaN / infinity: no value (the report's notes say how many)
            unit = column.unit or Unit("number", 2)
            if unit.kind == "currency":  # the column's title names the currency
                return format_number(value, unit.decimals, self.locale) if value.is_finite() else str(value)
            return format_value(value, unit, self.locale)
        if isinstance(value, datetime):
            local = to_local(value, self.timezone)
            return local.date().isoformat() if column.date_only else local.strftime("%Y-%m-%d %H:%M")
        return str(value)

    def table(self, limit: int | None = None) -> list[list[str]]:
        """The first ``limit`` rows (all by default) as text, in column order."""
        rows = self.rows if limit is None else self.rows[:limit]
        return [[self.cell_text(row.get(c.key), c) for c in self.columns] for row in rows]


def build_report(
    data: KpiData | None,
    ctx: ReportContext,
    *,
    display: DisplaySettings | None = None,
    fetch: Fetch | None = None,
    gate: GateDecision | None = None,
) -> ReportModel:
    """The report model of one message.

    :param data: the alert's query result (None for failure notices).
    :param ctx: what the run knows (kind, slot, the checked value, the condition...).
    :param display: the alert's locale, currency, percent scale and column labels.
    :param fetch: runs a Cube query for the alert's organization in its timezone; the non-additive
        headline and the previous period need it (without it the report makes no comparison).
    :param gate: a gated report's decision, stated in the message with the values that passed it.
    """
    display = display or DisplaySettings()
    builder = _Builder(data, ctx, display, fetch)
    return builder.build(gate)


def data_notes(data: KpiData, columns: Sequence[ReportColumn]) -> tuple[str, ...]:
    """What the report must say about its data: that the period has none, or how many of a measure's
    values Cube sent as NaN or infinity (left empty, never shown as numbers)."""
    if not data.rows:
        return ("No data for this period: the query returned no rows.",)
    notes = []
    for column in columns:
        if column.kind != "measure":
            continue
        bad = sum(1 for r in data.rows if isinstance(v := r.get(column.key), Decimal) and not v.is_finite())
        if bad:
            notes.append(
                f"{bad} of {len(data.rows)} value(s) of {column.label} were not numbers (NaN or infinity) "
                "and are left empty."
            )
    return tuple(notes)


class _Builder:
    def __init__(
        self, data: KpiData | None, ctx: ReportContext, display: DisplaySettings, fetch: Fetch | None
    ):
        self.data, self.ctx, self.display, self.fetch = data, ctx, display, fetch
        query = data.query if data is not None else {}
        self.query: Mapping[str, Any] = query
        self.range = resolve_date_range(query_date_range(query), ctx.timezone, ctx.generated_at)
        self.kpi = self._kpi()

    def _kpi(self) -> Column | None:
        data = self.data
        if data is None:
            return None
        if self.ctx.kpi is not None and self.ctx.kpi.key in {c.key for c in data.columns}:
            return data.column(self.ctx.kpi.key)
        return data.measures[0] if data.measures else None

    def build(self, gate: GateDecision | None) -> ReportModel:
        ctx, data = self.ctx, self.data
        columns = tuple(self._column(c) for c in data.columns) if data is not None else ()
        headline: Headline | None = None
        change: Change | None = None
        rule: str | None = None
        previous_series: KpiData | None = None
        if data is not None and self.kpi is not None and data.rows:
            if ctx.kind == "report":
                headline, change, rule, previous_series = self._report_headline(self.kpi)
            elif ctx.kind != "alert_error":
                headline, change, rule = self._checked_headline(self.kpi)
        return ReportModel(
            kind=ctx.kind,
            alert_name=ctx.alert_name,
            organization_id=ctx.organization_id,
            timezone=ctx.timezone,
            locale=self.display.locale,
            report_date=local_date(ctx.slot, ctx.timezone).isoformat(),
            generated_at=to_local(ctx.generated_at, ctx.timezone).strftime("%Y-%m-%d %H:%M %Z"),
            period=self._period_text(),
            date_range=self.range,
            headline=headline,
            change=change,
            value_rule=rule,
            gate=self._gate_text(gate) if gate is not None else None,
            gate_short=self._gate_short(gate) if gate is not None else None,
            condition=ctx.condition,
            decision=ctx.decision,
            dashboard_url=ctx.dashboard_url,
            message=ctx.message,
            columns=columns,
            rows=data.rows if data is not None else (),
            chart=self._chart(previous_series),
            notes=(data_notes(data, columns) if data is not None and ctx.kind == "report" else ())
            + ((ctx.data_age_note,) if ctx.data_age_note else ()),
            data_age=ctx.data_age,
        )

    # --- labels and units -----------------------------------------------------------------------

    def _column(self, column: Column) -> ReportColumn:
        data = self.data
        assert data is not None
        labels = self.display.column_labels
        label = labels.get(column.key)
        if column.kind == "time_dimension":
            unit = granularity(data, column)
            label = label or labels.get(column.key.rsplit(".", 1)[0] if unit else column.key)
            label = label or GRANULARITY_LABELS.get(unit or "", column.short_title or column.title)
            return ReportColumn(column.key, label, column.kind, None, is_date_only(data, column))
        label = label or column.short_title or column.title
        measure_unit = unit_for(column, data, self.display) if column.kind == "measure" else None
        return ReportColumn(column.key, label, column.kind, measure_unit)

    def _unit(self, column: Column) -> Unit:
        return unit_for(column, self.data, self.display)

    def _label(self, column: Column) -> str:
        return self.display.column_labels.get(column.key) or column.short_title or column.title

    def _period_text(self) -> str:
        """``last 7 days (2026-11-23 to 2026-11-29)``: the query's phrase and, when known, its dates."""
        phrase = self.ctx.period or describe_period(self.query)
        if self.range is None:
            return phrase
        dates = self.range.text()
        return dates if isinstance(query_date_range(self.query), list | tuple) else f"{phrase} ({dates})"

    # --- the headline -----------------------------------------------------------------------------

    def _report_headline(
        self, kpi: Column
    ) -> tuple[Headline | None, Change | None, str | None, KpiData | None]:
        data = self.data
        assert data is not None
        additive = kpi.type in ADDITIVE_AGGREGATIONS
        value = self._current_total(kpi, additive)
        if value is None:
            return None, None, None, None
        where = self.range.text() if self.range is not None else describe_period(self.query)
        if additive:
            basis = f"total of {where}"
            rule = f"The headline is the total of the period ({where})."
        else:
            basis = f"for the whole of {where}"
            rule = (
                f"The headline is Cube's figure for the whole period ({where}), not an average of "
                f"the rows: {kpi.short_title or kpi.title} ({kpi.type}) does not add up."
            )
        headline = self._headline(kpi, value, basis)
        previous, series = self._previous(kpi, additive)
        change = None
        if previous is not None and self.range is not None:
            before = self.range.previous()
            change = self._change(kpi, value, previous, f"previous {self.range.length_text()}", before.text())
        return headline, change, rule, series

    def _current_total(self, kpi: Column, additive: bool) -> Decimal | None:
        data = self.data
        assert data is not None
        values = [v for v in (r.get(kpi.key) for r in data.rows) if isinstance(v, Decimal) and v.is_finite()]
        if additive:
            return sum(values, Decimal(0)) if values else None
        if len(data.rows) == 1 and data.time_dimension is None and not self.query.get("dimensions"):
            return values[0] if values else None  # already the period's figure
        if self.fetch is None:
            return None  # a non-additive figure cannot be made from rows
        return _single_value(self.fetch(self._total_query(kpi, None)), kpi.key)

    def _previous(self, kpi: Column, additive: bool) -> tuple[Decimal | None, KpiData | None]:
        """The previous range's figure (and its series, for the chart's faint line)."""
        if self.fetch is None or self.range is None:
            return None, None
        before = self.range.previous()
        series = None
        if self.data is not None and self.data.time_dimension is not None:
            series = self.fetch(previous_series_query(self.query, kpi.key, self.range))
        if additive and series is not None:
            values = [v for v in (r.get(kpi.key) for r in series.rows) if isinstance(v, Decimal)]
            return (sum(values, Decimal(0)) if values else Decimal(0)), series
        return _single_value(self.fetch(self._total_query(kpi, before)), kpi.key), series

    def _base_query(self, kpi: Column) -> dict[str, Any]:
        return kpi_query(self.query, kpi.key)

    def _total_query(self, kpi: Column, date_range: DateRange | None) -> dict[str, Any]:
        """The KPI for the whole range: no breakdown, no granularity (Cube aggregates it itself)."""
        base = self._base_query(kpi)
        if date_range is not None:
            return with_date_range(base, date_range, granularity=False)
        base["timeDimensions"] = [
            {k: v for k, v in td.items() if k != "granularity"} for td in base.get("timeDimensions") or ()
        ]
        return base

    def _checked_headline(self, kpi: Column) -> tuple[Headline | None, Change | None, str | None]:
        """Threshold messages: the value the check computed, named by its bucket."""
        ctx = self.ctx
        if ctx.kpi_value is None:
            return None, None, None
        note = self._bucket_note(kpi)
        headline = self._headline(kpi, ctx.kpi_value, note)
        rule = (
            f"The value checked is the {note} (threshold alerts read the latest complete period); "
            "the chart and the table show the whole query."
            if note
            else "The value checked is the query's single figure."
        )
        change = None
        if ctx.previous_value is not None:
            unit = self._time_unit()
            change = self._change(
                kpi, ctx.kpi_value, ctx.previous_value, f"previous {unit or 'period'}", None
            )
        return headline, change, rule

    def _time_unit(self) -> str | None:
        data = self.data
        if data is None or data.time_dimension is None:
            return None
        return granularity(data, data.time_dimension)

    def _bucket_note(self, kpi: Column) -> str | None:
        """``latest complete day: 2026-11-30`` when the checked value is that bucket's."""
        data = self.data
        assert data is not None
        slot = (
            self.ctx.slot
            if self.ctx.slot.utcoffset() is not None
            else self.ctx.slot.replace(tzinfo=ZoneInfo("UTC"))
        )
        try:
            reading = kpi_value(data, kpi.key, now=slot)
        except (AlertValidationError, KeyError):
            return None
        if reading.bucket_start is None or reading.value != self.ctx.kpi_value:
            return None
        unit = self._time_unit()
        local = to_local(reading.bucket_start, data.timezone)
        text = {
            "year": f"{local:%Y}",
            "quarter": f"{local:%Y} Q{(local.month - 1) // 3 + 1}",
            "month": f"{local:%Y-%m}",
            "week": f"starting {local:%Y-%m-%d}",
            "day": f"{local:%Y-%m-%d}",
        }.get(unit or "", f"{local:%Y-%m-%d %H:%M}")
        return f"latest complete {unit or 'period'}: {text}"

    def _headline(self, kpi: Column, value: Decimal, basis: str | None) -> Headline:
        unit = self._unit(kpi)
        locale = self.display.locale
        # a report's subject rounds large money to whole units; a checked value is shown as compared
        places = headline_places(value, unit) if self.ctx.kind == "report" else None
        return Headline(
            label=self._label(kpi),
            value=value,
            text=format_value(value, unit, locale),
            plain=format_plain(value, unit, locale, places=places),
            basis=basis,
        )

    def _change(
        self, kpi: Column, value: Decimal, previous: Decimal, against: str, previous_period: str | None
    ) -> Change:
        unit = self._unit(kpi)
        locale = self.display.locale
        absolute = value - previous
        percent = (absolute / abs(previous) * 100) if previous != 0 else None
        shown = percent.quantize(Decimal("0.1")) if percent is not None else None
        direction: Literal["up", "down", "flat"] = (
            "flat"
            if absolute == 0 or (shown == 0 and abs(absolute) < abs(previous) * Decimal("0.0005"))
            else ("up" if absolute > 0 else "down")
        )
        return Change(
            previous=previous,
            previous_text=format_value(previous, unit, locale),
            absolute=absolute,
            absolute_text=format_signed(absolute, unit, locale),
            percent=percent,
            percent_text=format_percent_change(percent, locale) if percent is not None else None,
            direction=direction,
            against=against,
            previous_period=previous_period,
            points=unit.kind == "percent",
        )

    # --- the gate and the chart -------------------------------------------------------------------

    def _gate_text(self, gate: GateDecision) -> str:
        """``Sent because its gate passed: Revenue 219,795.42 USD > 100``."""
        parts = []
        for leaf in gate.values:
            column = self._find(leaf.measure)
            label = self._label(column) if column is not None else leaf.measure
            unit = self._unit(column) if column is not None else Unit("number", 2)
            seen = format_value(leaf.value, unit, self.display.locale)
            limit = format_plain(leaf.threshold, unit, self.display.locale)
            mark = "passed" if leaf.passed else "not met"
            parts.append(f"{label} {seen} {leaf.op} {limit} ({mark})")
        verdict = "passed" if gate.passed else "did not pass"
        return f"Sent because its gate {verdict}: " + "; ".join(parts) if parts else gate.description

    def _gate_short(self, gate: GateDecision) -> str | None:
        """For a subject: ``gate Revenue > 100 passed at 219,795 USD`` (the first leaf's)."""
        if not gate.values:
            return None
        leaf = gate.values[0]
        column = self._find(leaf.measure)
        label = self._label(column) if column is not None else leaf.measure
        unit = self._unit(column) if column is not None else Unit("number", 2)
        locale = self.display.locale
        limit = format_plain(leaf.threshold, unit, locale)
        more = f" (+{len(gate.values) - 1} more)" if len(gate.values) > 1 else ""
        verdict = "passed" if gate.passed else "not passed"
        if leaf.value is None:
            return f"gate {label} {leaf.op} {limit}{more} {verdict}"
        seen = format_plain(leaf.value, unit, locale, places=headline_places(leaf.value, unit))
        return f"gate {label} {leaf.op} {limit}{more} {verdict} at {seen}"

    def _find(self, key: str) -> Column | None:
        if self.data is None:
            return None
        return next((c for c in self.data.columns if c.key == key), None)

    def _chart(self, previous: KpiData | None) -> ChartData | None:
        data, kpi = self.data, self.kpi
        if data is None or kpi is None or len(data.rows) < 2 or self.ctx.kind == "alert_error":
            return None

        threshold = float(self.ctx.threshold_value) if self.ctx.threshold_value is not None else None
        expected, band = self.ctx.expected, None
        if expected is not None:
            value = self.ctx.kpi_value
            shown = float(value) if value is not None and value.is_finite() else None
            band = ChartBand(float(expected.low), float(expected.high), shown)
        chart = chart_from_kpi_data(
            data,
            kpi.key,
            threshold=threshold,
            previous=previous,
            band=band,
            band_at=expected.period_start if expected is not None else None,
        )
        if chart is None:
            return None
        unit = self._unit(kpi)
        value_format = "percent" if unit.kind == "percent" and unit.percent_scale == "fraction" else None
        return dataclasses.replace(
            chart,
            title=self._label(kpi),
            value_label=unit.code,
            value_format=value_format if unit.kind == "percent" else chart.value_format,
            whole_numbers=unit.kind == "count",
        )


def _single_value(result: KpiData, key: str) -> Decimal | None:
    """The one figure of a total query (no rows: no data)."""
    values = [r.get(key) for r in result.rows]
    found = [v for v in values if isinstance(v, Decimal) and v.is_finite()]
    return found[0] if len(found) == 1 else None
