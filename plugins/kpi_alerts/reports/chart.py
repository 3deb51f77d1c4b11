"""A small, clean chart of the KPI: SVG for the PDF report, PNG for the e-mail body and for print.

The chart is laid out once, from a :class:`ChartData` (what to draw, already reduced to labels and
numbers), into a scene (:func:`chart_scene`: rectangles, polylines, dots and text runs in the 600x240
space — every position decided here, one rule in one place). Two painters in
:mod:`kpi_alerts.reports.chart_scene` translate the scene: :func:`render_chart_svg` writes SVG (text
stays text), :func:`render_chart_png` draws it with cairo and writes the PNG (~1.7 ms of CPU at e-mail
size; CairoSVG parsing the same SVG took ~8.5 ms, matplotlib ~55-230 ms — ``bench/bench_chart.py``
measures the candidates side by side). The chart tests compare the PNG with CairoSVG's rendering of the
SVG, pixel by pixel, so the painters cannot drift apart.

What makes it read well: whole-number ticks for counts, an axis that includes zero unless the series
varies only a little around a large value (then it frames the data), a flat series drawn inside a
zero-based axis rather than magnified into noise, the threshold as a dashed line labelled with its value,
the previous period as a faint line behind the current one, an anomaly condition's expected range as a
shaded band at the checked period with the checked value marked on it, a title that ends before the legend. User
text is plain text for cairo and escaped in the SVG; nothing is fetched.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from kpi_alerts.kpi_data import CellValue, KpiData
from kpi_alerts.reports.chart_scene import (
    Circle,
    Item,
    Polyline,
    Rect,
    Run,
    Scene,
    Text,
    scene_png,
    scene_svg,
)
from kpi_alerts.reports.formatting import is_date_only, single_line, to_local

#: Beyond this many bars or series the chart stops being readable; the table has everything.
MAX_BARS = 20
MAX_SERIES = 6
MAX_X_LABELS = 8
COLORS = ("#2563eb", "#f97316", "#16a34a", "#7c3aed", "#0891b2", "#a16207")
THRESHOLD_COLOR = "#dc2626"
#: The expected range of an anomaly condition: a light green fill, a colour no other element uses.
BAND_COLOR = "#bbf7d0"
BAND_EDGE_COLOR = "#16a34a"
PREVIOUS_COLOR = "#9ca3af"
TEXT_COLOR = "#374151"
GRID_COLOR = "#e5e7eb"

#: Pixel geometry of the e-mail image (the PDF scales the same drawing to the page width).
WIDTH, HEIGHT = 600, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 30, 34
#: Rasterised at its displayed size (2 doubles the pixels for print and dense screens, at ~4x the cost).
PNG_SCALE = 1


@dataclass(frozen=True)
class ChartBand:
    """An anomaly condition's expected range, drawn as a shaded band, and the value it was checked with.

    :param index: the checked period's position among the chart's points: the band is drawn over that
        period's slot and the value marked there; None (the period is not on the chart) draws the band
        across the chart and the value as a dashed line.
    :param value: the checked value, marked red when outside the band; None draws the band alone.
    """

    low: float
    high: float
    value: float | None = None
    index: int | None = None


@dataclass(frozen=True)
class ChartData:
    """What a chart shows, reduced to labels and numbers (``NaN`` in a series is a gap).

    :param title: shown at the top left (the KPI's label).
    :param x_labels: one per point (dates, or a dimension's values for bars).
    :param values: the KPI, one per label.
    :param previous_values: the previous period, aligned with ``values``, drawn as a faint line.
    :param threshold: a threshold alert's threshold, drawn as a dashed line labelled with its value.
    :param whole_numbers: counts: ticks are whole numbers.
    :param value_label: the unit or measure name shown after the title (e.g. ``USD``).
    :param kind: ``line`` over time, ``bar`` over a dimension.
    :param value_format: Cube's format of the measure (``percent`` ticks read ``12%``).
    :param series_label: the legend name of ``values`` when ``other_series`` are drawn too.
    :param other_series: further lines (one per value of a breakdown), named, aligned with ``values``.
    :param band: an anomaly condition's expected range for the checked period, and the checked value.
    """

    title: str
    x_labels: list[str]
    values: list[float]
    previous_values: list[float] | None = None
    threshold: float | None = None
    whole_numbers: bool = False
    value_label: str = ""
    kind: Literal["line", "bar"] = "line"
    value_format: str | None = None
    series_label: str = ""
    other_series: tuple[tuple[str, list[float]], ...] = ()
    band: ChartBand | None = None


# --- the axis -------------------------------------------------------------------------------------


def nice_ticks(low: float, high: float, *, whole_numbers: bool = False, target: int = 5) -> list[float]:
    """Round ticks covering [low, high]: the smallest step of 1, 2, 2.5 or 5 x 10^n that needs at most
    ``target`` intervals. With ``whole_numbers`` (counts) the step is a whole number. Needs low < high."""
    rough = (high - low) / target
    magnitude = 10 ** math.floor(math.log10(rough))
    for step in (m * magnitude * 10**k for k in range(4) for m in (1, 2, 2.5, 5)):
        if whole_numbers and (step < 1 or not float(step).is_integer()):
            continue
        first = math.floor(low / step + 1e-9)
        last = math.ceil(high / step - 1e-9)
        if last - first <= target:
            return [_clean(i * step) for i in range(first, last + 1)]
    raise ValueError(f"no round step for {low}..{high}")  # pragma: no cover - 10x the rough step fits


def _clean(value: float) -> float:
    """``i * step`` without float noise (0.30000000000000004 -> 0.3) and without ``-0``."""
    return float(f"{value:.12g}") + 0.0


def axis_range(values: Sequence[float], *, whole_numbers: bool = False) -> tuple[float, float]:
    """The data range the y axis must show.

    Zero is included (an honest scale for KPIs), unless the series varies by less than a fifth of its
    size — 1,020 to 1,060 — where a zero-based axis would flatten the change into a line; then the axis
    frames the data with a margin. A flat series sits inside a zero-based axis with headroom (4 on
    0 to 5, not on 3.80 to 4.20); all zeros get 0 to 1.
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if max(abs(low), abs(high)) < 1e-12:  # zeros, or values too tiny to step through (5e-324)
        return 0.0, 1.0
    if low == high:
        if low == 0:
            return 0.0, 1.0
        return (0.0, low * 1.25) if low > 0 else (low * 1.25, 0.0)
    span = high - low
    magnitude = max(abs(low), abs(high))
    if (low > 0 or high < 0) and span < 0.2 * magnitude:
        pad = max(span * 0.5, 1.0 if whole_numbers else 0.0)
        return low - pad, high + pad
    return min(low, 0.0), max(high, 0.0)


def tick_text(value: float, step: float, value_format: str | None = None) -> str:
    """``1,200`` / ``1.5M`` / ``0.25`` / ``12%``: as many decimals as the step needs, no ``.00`` on counts."""
    if value_format == "percent":  # Cube's percent measures hold fractions (see formatting.format_number)
        value, step = value * 100, step * 100
        return f"{value:,.{_decimals(step)}f}%"
    for size, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(value) >= size or (value != 0 and step >= size):
            return f"{value / size:,.{_decimals(step / size)}f}{suffix}"
    return f"{value:,.{_decimals(step)}f}"


def _decimals(step: float) -> int:
    if step <= 0 or (step >= 1 and float(step).is_integer()):
        return 0
    for places in range(1, 7):
        if abs(round(step, places) - step) < 1e-9 * max(1.0, step):
            return places
    return 6


# --- layout: the one description of the drawing -------------------------------------------------------


def _at(value: float) -> float:
    """Positions in a tenth of a pixel: what the SVG writes is exactly what cairo draws."""
    return round(value, 1) + 0.0


def chart_scene(chart: ChartData) -> Scene:
    """Where everything goes: the chart laid out once, for both painters (SVG and PNG)."""
    series = [v for v in (chart.values, chart.previous_values, *(s for _, s in chart.other_series)) if v]
    extent = [x for values in series for x in values]
    if chart.threshold is not None and math.isfinite(chart.threshold):
        extent.append(chart.threshold)
    band = _drawable_band(chart)
    if band is not None:
        extent += [v for v in (band.low, band.high, band.value) if v is not None and math.isfinite(v)]
    if chart.kind == "bar":
        extent.append(0.0)  # bars start at zero, always
    low, high = axis_range(extent, whole_numbers=chart.whole_numbers)
    ticks = nice_ticks(low, high, whole_numbers=chart.whole_numbers)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    y_low, y_high = ticks[0], ticks[-1]
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    n = max(len(chart.x_labels), len(chart.values), 1)
    slot = (right - left) / n

    def x_at(i: int) -> float:
        return left + slot * (i + 0.5)

    def y_at(v: float) -> float:
        return bottom - (v - y_low) / (y_high - y_low) * (bottom - top)

    items: list[Item] = [Rect(0, 0, WIDTH, HEIGHT, "#ffffff")]
    legend, legend_left = _legend(chart, right)
    items.append(_title(chart, left, legend_left - 10))
    if band is not None:  # under the grid and the data: the lines stay visible through it
        items += _band_shape(band, x_at(band.index) if band.index is not None else None, slot, y_at)
    for tick in ticks:
        y = _at(y_at(tick))
        items.append(Polyline(((left, y), (right, y)), GRID_COLOR))
        label = tick_text(tick, step, chart.value_format)
        items.append(Text(left - 6, _at(y_at(tick) + 3.5), (Run(label),), TEXT_COLOR, anchor="end"))
    items.append(Polyline(((left, bottom), (right, bottom)), "#9ca3af"))
    every = max(1, math.ceil(len(chart.x_labels) / MAX_X_LABELS))
    max_chars = max(4, int(slot * every / 6.2))
    for i, label in enumerate(chart.x_labels):
        if i % every == 0:
            text = _shorten(single_line(label), max_chars)
            items.append(Text(_at(x_at(i)), bottom + 15, (Run(text),), TEXT_COLOR, anchor="middle"))

    if chart.kind == "bar":
        width = max(2.0, slot * 0.7)
        zero = y_at(max(y_low, 0.0))
        for i, v in enumerate(chart.values):
            if math.isfinite(v):
                y = y_at(v)
                items.append(
                    Rect(
                        _at(x_at(i) - width / 2), _at(min(y, zero)), _at(width), _at(abs(zero - y)), COLORS[0]
                    )
                )
    else:
        if chart.previous_values:
            items += _line(chart.previous_values, x_at, y_at, PREVIOUS_COLOR, dots=False)
        for k, (_, values) in enumerate(chart.other_series, start=1):
            items += _line(values, x_at, y_at, COLORS[k % len(COLORS)], dots=n <= 31)
        items += _line(chart.values, x_at, y_at, COLORS[0], dots=n <= 31)

    if chart.threshold is not None and math.isfinite(chart.threshold):
        y = _at(y_at(chart.threshold))
        label = f"threshold {tick_text(chart.threshold, _precision_step(chart), chart.value_format)}"
        items.append(Polyline(((left, y), (right, y)), THRESHOLD_COLOR, width=1.2, dash=(6, 4)))
        label_y = y - 4 if y - 4 > top + 8 else y + 12
        items.append(Text(right, _at(label_y), (Run(label),), THRESHOLD_COLOR, anchor="end"))
    if band is not None and band.value is not None and math.isfinite(band.value):
        items += _band_value(chart, band, x_at(band.index) if band.index is not None else None, y_at)
    items += legend
    return Scene(WIDTH, HEIGHT, TEXT_COLOR, tuple(items))


def _drawable_band(chart: ChartData) -> ChartBand | None:
    """The band when it can be drawn: finite bounds (low <= high) on a line chart; an index off the
    chart's points draws it across the chart."""
    band = chart.band
    if band is None or chart.kind != "line" or not (math.isfinite(band.low) and math.isfinite(band.high)):
        return None
    low, high = min(band.low, band.high), max(band.low, band.high)
    n = max(len(chart.x_labels), len(chart.values), 1)
    index = band.index if band.index is not None and 0 <= band.index < n else None
    return ChartBand(low, high, band.value, index)


#: The band is at least this tall (a flat history's band is one value) and this wide (hourly charts).
MIN_BAND_HEIGHT, MIN_BAND_WIDTH = 2.0, 12.0


def _band_shape(band: ChartBand, x: float | None, slot: float, y_at: Any) -> list[Item]:
    """The shaded expected range: over the checked period's slot, or across the plot area."""
    left, right = float(MARGIN_LEFT), float(WIDTH - MARGIN_RIGHT)
    if x is None:
        x0, x1 = left, right
    else:
        half = max(slot, MIN_BAND_WIDTH) / 2
        x0, x1 = max(left, x - half), min(right, x + half)
    y_top, y_bottom = y_at(band.high), y_at(band.low)
    if y_bottom - y_top < MIN_BAND_HEIGHT:
        middle = (y_top + y_bottom) / 2
        y_top, y_bottom = middle - MIN_BAND_HEIGHT / 2, middle + MIN_BAND_HEIGHT / 2
    top, bottom = _at(y_top), _at(y_bottom)
    edges = [Polyline(((_at(x0), y), (_at(x1), y)), BAND_EDGE_COLOR, width=0.8) for y in (top, bottom)]
    return [Rect(_at(x0), top, _at(x1) - _at(x0), _at(bottom - top), BAND_COLOR), *edges]


def _band_value(chart: ChartData, band: ChartBand, x: float | None, y_at: Any) -> list[Item]:
    """The checked value: a dot (red outside the band) on the checked period with its figure beside it,
    or a dashed line labelled with it when the period is not on the chart."""
    assert band.value is not None
    outside = not band.low <= band.value <= band.high
    color = THRESHOLD_COLOR if outside else BAND_EDGE_COLOR
    y = y_at(band.value)
    label = tick_text(band.value, _value_step(band.value), chart.value_format)
    left, right, top = MARGIN_LEFT, WIDTH - MARGIN_RIGHT, MARGIN_TOP
    if x is None:
        line = Polyline(((left, _at(y)), (right, _at(y))), color, width=1.2, dash=(6, 4))
        label_y = y - 4 if y - 4 > top + 8 else y + 12
        return [line, Text(right, _at(label_y), (Run(f"value {label}"),), color, anchor="end")]
    anchor: Literal["start", "end"] = "end" if x > (left + right) / 2 else "start"
    text_x = x - 8 if anchor == "end" else x + 8
    return [
        Circle(_at(x), _at(y), 4.5, color),
        Circle(_at(x), _at(y), 2.0, "#ffffff"),
        Text(_at(text_x), _at(y + 3.5), (Run(label, bold=True),), color, anchor=anchor),
    ]


def _value_step(value: float) -> float:
    """The checked value is labelled to two decimals at most (4,200.5 → 4,200.5; 2,710 → 2,710)."""
    if float(value).is_integer():
        return 1.0
    return 0.1 if round(value, 1) == round(value, 2) else 0.01


def render_chart_svg(chart: ChartData) -> str:
    """The chart as a standalone SVG document (text stays text: selectable in the PDF)."""
    return scene_svg(chart_scene(chart))


def render_chart_png(chart: ChartData, *, scale: int = PNG_SCALE) -> bytes:
    """The chart as a PNG: 600x240 times ``scale`` (1 for the e-mail, 2 for print), drawn by cairo."""
    return _rasterise(_ChartKey(_chart_key(chart), chart), scale)


@dataclass(frozen=True)
class _ChartKey:
    """A chart as a cache key: its fields as tuples (hashed and compared), the chart itself carried along."""

    key: tuple[Any, ...]
    chart: ChartData = field(compare=False, hash=False)


def _chart_key(chart: ChartData) -> tuple[Any, ...]:
    """Every field of the chart, lists as tuples: equal keys draw the same picture (cheap: no layout).
    Exact, never loose: a NaN equals only itself (the ``math.nan`` that ``chart_from_kpi_data`` puts in
    gaps), so two charts with distinct NaN objects miss the cache and are drawn twice, never confused."""
    previous = None if chart.previous_values is None else tuple(chart.previous_values)
    others = tuple((name, tuple(values)) for name, values in chart.other_series)
    return (
        chart.title,
        tuple(chart.x_labels),
        tuple(chart.values),
        previous,
        chart.threshold,
        chart.whole_numbers,
        chart.value_label,
        chart.kind,
        chart.value_format,
        chart.series_label,
        others,
        chart.band,
    )


@functools.lru_cache(maxsize=64)
def _rasterise(key: _ChartKey, scale: int) -> bytes:
    """Subscribers of one graph get the same chart: it is drawn once per scale (the chart is the key)."""
    return scene_png(chart_scene(key.chart), scale)


def _line(values: Sequence[float], x_at: Any, y_at: Any, color: str, *, dots: bool) -> list[Item]:
    """A polyline per run of finite values (a NaN is a gap), with a dot on each point when few (and on a
    lone point between gaps always)."""
    out: list[Item] = []
    run: list[tuple[float, float]] = []
    width = 1.4 if color == PREVIOUS_COLOR else 2.0

    def flush() -> None:
        if len(run) > 1:
            out.append(Polyline(tuple(run), color, width=width, rounded=True))
        elif run and not dots:  # a point between two gaps is still shown
            out.append(Circle(*run[0], width, color))
        run.clear()

    for i, v in enumerate(values):
        if not math.isfinite(v):
            flush()
            continue
        x, y = _at(x_at(i)), _at(y_at(v))
        run.append((x, y))
        if dots:
            out.append(Circle(x, y, 2.6, color))
    flush()
    return out


#: Estimated advance per character (DejaVu Sans runs ~0.55-0.65 em): lays out text that must not collide.
BOLD_11_CHAR, NORMAL_11_CHAR, NORMAL_9_CHAR = 7.2, 6.6, 6.2


def _title(chart: ChartData, left: float, right: float) -> Text:
    """The title, then `` · unit`` in grey, both shortened to end before ``right`` (the legend)."""
    room = right - left
    unit = single_line(chart.value_label)
    unit_room = (
        NORMAL_11_CHAR * (min(len(unit), 20) + 3) if unit else 0.0
    )  # a long title leaves the unit room
    title = _shorten(single_line(chart.title), min(70, max(8, int((room - unit_room) / BOLD_11_CHAR))))
    runs = [Run(title)]
    unit_chars = min(40, int((room - BOLD_11_CHAR * len(title)) / NORMAL_11_CHAR) - 3)
    if unit and unit_chars >= 3:
        runs.append(Run(f" · {_shorten(unit, unit_chars)}", bold=False, color="#6b7280"))
    return Text(left, 16, tuple(runs), TEXT_COLOR, size=11, bold=True)


def _legend(chart: ChartData, right: float) -> tuple[list[Item], float]:
    """The legend's entries right-aligned on the title line, and where its left edge is."""
    entries: list[tuple[str, str]] = []
    if chart.other_series:
        entries.append((chart.series_label or chart.title, COLORS[0]))
        entries += [
            (name, COLORS[k % len(COLORS)]) for k, (name, _) in enumerate(chart.other_series, start=1)
        ]
    if chart.previous_values:
        entries.append(("previous period", PREVIOUS_COLOR))
    if _drawable_band(chart) is not None:
        entries.append(("expected range", BAND_COLOR))
    out: list[Item] = []
    x = right
    for name, color in reversed(entries):
        text = _shorten(single_line(name), 18)
        x -= NORMAL_9_CHAR * len(text) + 4
        out.append(Text(_at(x), 16, (Run(text),), TEXT_COLOR, size=9))
        x -= 12
        out.append(Rect(_at(x), 9, 9, 9, color, radius=1))
        x -= 8
    return out, x + 8


def _precision_step(chart: ChartData) -> float:
    """The threshold is labelled exactly as given (35000 → 35,000; 0.125 → 0.125)."""
    assert chart.threshold is not None
    text = f"{abs(chart.threshold):.6f}".rstrip("0")
    places = len(text.partition(".")[2])
    return 10.0**-places if places else 1.0


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


# --- from a Cube result ------------------------------------------------------------------------------


def chart_from_kpi_data(
    data: KpiData,
    measure_key: str,
    *,
    threshold: float | None = None,
    previous: KpiData | None = None,
    band: ChartBand | None = None,
    band_at: datetime | None = None,
) -> ChartData | None:
    """What to draw for ``measure_key``: a line over the time dimension (one per value of a breakdown,
    the largest first), bars over the first dimension, or None when there is nothing worth drawing.

    :param band: an anomaly condition's expected range and checked value, drawn over the period that
        starts at ``band_at`` (across the chart when that period is not one of its points).
    """
    column = data.column(measure_key)
    time_col = data.time_dimension
    dim = next((c for c in data.columns if c.kind == "dimension"), None)
    title = column.short_title or column.title
    whole = column.type == "count" or (
        bool(data.rows)
        and all(
            isinstance(v, Decimal) and v == v.to_integral_value()
            for v in (r.get(measure_key) for r in data.rows)
            if v is not None
        )
        and column.format not in ("currency", "percent")
    )
    common: dict[str, Any] = {"title": title, "whole_numbers": whole, "value_format": column.format}
    if threshold is not None:
        common["threshold"] = float(threshold)
    if time_col is None:
        if dim is None or len(data.rows) < 2:
            return None
        labels, values = [], []
        for row in data.rows[:MAX_BARS]:
            y = row.get(measure_key)
            if isinstance(y, Decimal) and y.is_finite():
                labels.append(single_line(_dimension_text(row.get(dim.key))))
                values.append(float(y))
        if len(values) < 2:
            return None
        return ChartData(x_labels=labels, values=values, kind="bar", **common)

    groups: dict[str, dict[datetime, float]] = {}
    for row in data.rows:
        x, y = row.get(time_col.key), row.get(measure_key)
        if isinstance(x, datetime) and isinstance(y, Decimal) and y.is_finite():
            name = single_line(_dimension_text(row.get(dim.key))) if dim is not None else ""
            groups.setdefault(name, {})[x] = float(y)
    ranked = sorted(groups.items(), key=lambda kv: -sum(abs(v) for v in kv[1].values()))[:MAX_SERIES]
    times = sorted({t for _, points in ranked for t in points})
    if len(times) < 2:
        return None
    date_only = is_date_only(data, time_col)
    labels = [_time_label(to_local(t, data.timezone), date_only) for t in times]
    lines = [(name, [points.get(t, math.nan) for t in times]) for name, points in ranked]
    (series_label, values), others = lines[0], tuple(lines[1:])
    previous_values = _previous_values(previous, measure_key, len(times)) if previous is not None else None
    if band is not None:
        index = next((i for i, t in enumerate(times) if band_at is not None and t == band_at), None)
        common["band"] = ChartBand(band.low, band.high, band.value, index)
    return ChartData(
        x_labels=labels,
        values=values,
        previous_values=previous_values,
        series_label=series_label,
        other_series=others,
        **common,
    )


def _dimension_text(value: CellValue) -> str:
    """A breakdown's value as a bar or line name (dimension cells are text, numbers or booleans)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _time_label(moment: datetime, date_only: bool) -> str:
    return moment.strftime("%b %d" if date_only else "%b %d %H:%M").replace(" 0", " ")


def _previous_values(previous: KpiData, measure_key: str, length: int) -> list[float] | None:
    """The previous period's series, aligned by position (day 1 with day 1), as long as the current."""
    time_col = previous.time_dimension
    if time_col is None:
        return None
    points = sorted(
        (row[time_col.key], float(y))
        for row in previous.rows
        if isinstance(row.get(time_col.key), datetime)
        and isinstance(y := row.get(measure_key), Decimal)
        and y.is_finite()
    )
    values = [v for _, v in points][:length]
    return values if len(values) >= 2 else None


# --- the entry points the renderers use ----------------------------------------------------------


def kpi_chart_svg(data: KpiData, measure_key: str, *, threshold: float | None = None) -> str | None:
    """The KPI over the period as SVG text for the PDF, or None when there is nothing worth drawing."""
    chart = chart_from_kpi_data(data, measure_key, threshold=threshold)
    return None if chart is None else render_chart_svg(chart)


def kpi_chart_png(data: KpiData, measure_key: str, *, threshold: float | None = None) -> bytes | None:
    """The same chart as a PNG for an inline e-mail image (a few tens of KB)."""
    chart = chart_from_kpi_data(data, measure_key, threshold=threshold)
    return None if chart is None else render_chart_png(chart)
