"""A small, clean chart of the KPI: SVG for the PDF report, PNG for the e-mail body.

matplotlib is imported lazily and only through its object API (``Figure``), never ``pyplot``: no
global figure state, safe in threads, and the Agg backend needs no display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kpi_alerts.kpi_data import KpiData
from kpi_alerts.reports.formatting import display_value, format_number, single_line, to_local

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Beyond this many bars or series the chart stops being readable; the table has everything.
MAX_BARS = 20
MAX_SERIES = 6
_COLORS = ("#2563eb", "#f97316", "#16a34a", "#dc2626", "#7c3aed", "#0891b2")


def _series(data: KpiData, measure_key: str) -> tuple[str, list[tuple[Any, float]]] | None:
    """What to draw: ('line', points) over time, ('bar', points) over the first dimension, or None."""
    time_col = data.time_dimension
    points: list[tuple[Any, float]] = []
    if time_col is not None:
        for row in data.rows:
            x, y = row.get(time_col.key), row.get(measure_key)
            if isinstance(x, datetime) and isinstance(y, Decimal) and y.is_finite():
                points.append((x, float(y)))
        return ("line", points) if len(points) >= 2 else None
    dim = next((c for c in data.columns if c.kind == "dimension"), None)
    if dim is None or len(data.rows) < 2:
        return None
    for row in data.rows[:MAX_BARS]:
        y = row.get(measure_key)
        if isinstance(y, Decimal) and y.is_finite():
            points.append((single_line(display_value(row.get(dim.key), dim, data)), float(y)))
    return ("bar", points) if len(points) >= 2 else None


def _groups(data: KpiData, measure_key: str, points: list[tuple[Any, float]]) -> dict[str, list[Any]]:
    """Split a time series by the first dimension (one line per value, the largest first)."""
    dim = next((c for c in data.columns if c.kind == "dimension"), None)
    time_col = data.time_dimension
    if dim is None or time_col is None:
        return {"": points}
    groups: dict[str, list[Any]] = {}
    for row in data.rows:
        x, y = row.get(time_col.key), row.get(measure_key)
        if isinstance(x, datetime) and isinstance(y, Decimal) and y.is_finite():
            label = single_line(display_value(row.get(dim.key), dim, data))
            groups.setdefault(label, []).append((x, float(y)))
    ranked = sorted(groups.items(), key=lambda kv: -sum(abs(v) for _, v in kv[1]))
    return dict(ranked[:MAX_SERIES])


def _figure(data: KpiData, measure_key: str, size: tuple[float, float]) -> Figure | None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    found = _series(data, measure_key)
    if found is None:
        return None
    kind, points = found
    column = data.column(measure_key)
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if kind == "line":
        groups = _groups(data, measure_key, points)
        for i, (label, pts) in enumerate(groups.items()):
            pts.sort(key=lambda p: p[0])
            xs: Any = [to_local(x, data.timezone).replace(tzinfo=None) for x, _ in pts]
            ys = [y for _, y in pts]
            ax.plot(
                xs,
                ys,
                color=_COLORS[i % len(_COLORS)],
                linewidth=1.8,
                label=label or None,
                marker="o" if len(xs) <= 31 else None,
                markersize=3,
            )
        if len(groups) > 1:
            ax.legend(fontsize=7, frameon=False)
        fig.autofmt_xdate(rotation=30, ha="right")
    else:
        labels = [str(x)[:18] for x, _ in points]
        ax.bar(range(len(points)), [y for _, y in points], color=_COLORS[0])
        ax.set_xticks(range(len(points)), labels, rotation=30 if len(points) > 4 else 0, ha="right")
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda v, _pos: format_number(Decimal(str(float(v))), column.format))
    )
    ax.set_ylabel(column.short_title or column.title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def _render(data: KpiData, measure_key: str, size: tuple[float, float], fmt: str, dpi: int) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(
        {
            "font.family": "DejaVu Sans",
            "svg.fonttype": "none",  # text stays text: smaller SVG, selectable in the PDF
            "svg.hashsalt": "kpi-alerts",  # stable ids: identical input, identical output
        }
    ):
        fig = _figure(data, measure_key, size)
        if fig is None:
            return None
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else {})
    return buf.getvalue()


def kpi_chart_svg(data: KpiData, measure_key: str, *, size: Sequence[float] = (9.0, 3.2)) -> str | None:
    """The KPI over the period as SVG text, or None when there is nothing worth drawing."""
    out = _render(data, measure_key, (float(size[0]), float(size[1])), "svg", 100)
    return None if out is None else out.decode("utf-8")


def kpi_chart_png(data: KpiData, measure_key: str, *, size: Sequence[float] = (6.0, 2.4)) -> bytes | None:
    """The same chart as a small PNG (about 600x240 px, a few tens of KB) for an inline e-mail image."""
    return _render(data, measure_key, (float(size[0]), float(size[1])), "png", 100)
