"""An anomaly condition's expected range on the chart: the scene's shapes, the painters, the report model.

The band is a shaded rectangle between the band's low and high over the checked period's slot (across
the plot area when that period is not on the chart), and the checked value is marked on it — red when
outside. Positions are checked against the chart's own axis, computed here from its ticks.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from PIL import Image

from kpi_alerts.kpi_data import Column, KpiData
from kpi_alerts.reports.chart import (
    BAND_COLOR,
    BAND_EDGE_COLOR,
    HEIGHT,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    THRESHOLD_COLOR,
    WIDTH,
    ChartBand,
    ChartData,
    chart_from_kpi_data,
    chart_scene,
    render_chart_png,
    render_chart_svg,
)
from kpi_alerts.reports.chart_scene import Circle, Polyline, Rect, Scene, Text
from kpi_alerts.reports.context import ExpectedRange, ReportContext
from kpi_alerts.reports.model import build_report

DAYS = [f"Nov {d}" for d in range(24, 31)]
VALUES = [900.0, 900.0, 900.0, 900.0, 900.0, 900.0, 2710.0]
BAND = ChartBand(3903.4, 4547.8, 2710.0, 6)


def chart(band: ChartBand | None = BAND, **kw: object) -> ChartData:
    return ChartData("Revenue", DAYS, VALUES, value_label="USD", band=band, **kw)  # type: ignore[arg-type]


def band_rects(scene: Scene) -> list[Rect]:
    """The band itself (the legend's swatch is the rounded 9x9 rectangle on the title line)."""
    return [i for i in scene.items if isinstance(i, Rect) and i.fill == BAND_COLOR and not i.radius]


def y_axis(scene: Scene) -> tuple[float, float]:
    """The axis' lowest and highest tick values, read back from the tick labels."""
    ticks = [
        float(i.runs[0].text.replace(",", ""))
        for i in scene.items
        if isinstance(i, Text) and i.anchor == "end" and i.x == MARGIN_LEFT - 6
    ]
    return min(ticks), max(ticks)


def y_of(scene: Scene, value: float) -> float:
    low, high = y_axis(scene)
    bottom, top = HEIGHT - MARGIN_BOTTOM, MARGIN_TOP
    return bottom - (value - low) / (high - low) * (bottom - top)


def test_band_over_the_checked_period_between_low_and_high() -> None:
    scene = chart_scene(chart())
    (rect,) = band_rects(scene)
    slot = (WIDTH - MARGIN_RIGHT - MARGIN_LEFT) / len(DAYS)
    x_checked = MARGIN_LEFT + slot * 6.5
    assert rect.x <= x_checked <= rect.x + rect.width
    assert rect.width == round(slot, 1) or abs(rect.width - slot) <= 0.2
    assert abs(rect.y - y_of(scene, BAND.high)) <= 0.2
    assert abs(rect.y + rect.height - y_of(scene, BAND.low)) <= 0.2
    # the band is part of the axis: its high is below the top tick
    assert y_axis(scene)[1] >= BAND.high
    # its edges, and the legend names it
    edges = [i for i in scene.items if isinstance(i, Polyline) and i.stroke == BAND_EDGE_COLOR]
    assert len(edges) == 2
    assert any(isinstance(i, Text) and i.runs[0].text == "expected range" for i in scene.items)


def test_value_outside_the_band_is_marked_red_with_its_figure() -> None:
    scene = chart_scene(chart())
    marks = [i for i in scene.items if isinstance(i, Circle) and i.fill == THRESHOLD_COLOR]
    (mark,) = marks
    assert abs(mark.cy - y_of(scene, 2710.0)) <= 0.2
    labels = [i for i in scene.items if isinstance(i, Text) and i.color == THRESHOLD_COLOR]
    assert [t.runs[0].text for t in labels] == ["2,710"]
    assert labels[0].anchor == "end"  # the checked period is the last one: the figure sits on its left


def test_value_inside_the_band_is_marked_in_the_band_colour() -> None:
    scene = chart_scene(chart(ChartBand(2500.0, 3000.0, 2710.0, 6)))
    assert not [i for i in scene.items if isinstance(i, Circle) and i.fill == THRESHOLD_COLOR]
    assert [i for i in scene.items if isinstance(i, Circle) and i.fill == BAND_EDGE_COLOR]


def test_period_not_on_the_chart_draws_the_band_across_and_the_value_as_a_line() -> None:
    scene = chart_scene(chart(ChartBand(3903.4, 4547.8, 2710.0, None)))
    (rect,) = band_rects(scene)
    assert (rect.x, rect.x + rect.width) == (MARGIN_LEFT, WIDTH - MARGIN_RIGHT)
    (line,) = [i for i in scene.items if isinstance(i, Polyline) and i.stroke == THRESHOLD_COLOR]
    assert line.dash and abs(line.points[0][1] - y_of(scene, 2710.0)) <= 0.2
    assert any(isinstance(i, Text) and i.runs[0].text == "value 2,710" for i in scene.items)
    # an index past the points is "not on the chart" too
    assert band_rects(chart_scene(chart(ChartBand(3903.4, 4547.8, 2710.0, 40)))) == [rect]


def test_a_flat_history_band_is_still_visible() -> None:
    (rect,) = band_rects(chart_scene(chart(ChartBand(4000.0, 4000.0, 2710.0, 6))))
    assert rect.height >= 2.0


def test_no_band_on_bar_charts_or_without_one() -> None:
    bars = ChartData("Orders", ["a", "b", "c"], [1.0, 2.0, 3.0], kind="bar", band=BAND)
    assert not band_rects(chart_scene(bars))
    assert not band_rects(chart_scene(chart(None)))


def test_painters_draw_the_band_colour() -> None:
    assert f'fill="{BAND_COLOR}"' in render_chart_svg(chart())
    image = Image.open(io.BytesIO(render_chart_png(chart()))).convert("RGB")
    (rect,) = band_rects(chart_scene(chart()))
    inside = (int(rect.x + rect.width / 2), int(rect.y + rect.height / 2))
    # a pixel halfway through the band, away from the value's figure and the grid, is the band's colour
    assert image.getpixel(inside) == tuple(int(BAND_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    # the cached PNG depends on the band: the same chart without it is another picture
    assert render_chart_png(chart()) != render_chart_png(chart(None))


DAY = Column("orders.created_at.day", "Orders Created", "time_dimension", "time", short_title="Created")
REVENUE = Column("orders.total_amount", "Orders Revenue", "measure", "sum", "currency", "Revenue", "USD")
START = datetime(2026, 11, 24, tzinfo=UTC)


def series() -> KpiData:
    rows = tuple(
        {DAY.key: START + timedelta(days=i), REVENUE.key: Decimal(str(v))} for i, v in enumerate(VALUES)
    )
    return KpiData(columns=(DAY, REVENUE), rows=rows, timezone="UTC")


def test_chart_from_kpi_data_finds_the_checked_period() -> None:
    data = series()
    band = ChartBand(3903.4, 4547.8, 2710.0)
    found = chart_from_kpi_data(data, REVENUE.key, band=band, band_at=START + timedelta(days=6))
    assert found is not None and found.band == ChartBand(3903.4, 4547.8, 2710.0, 6)
    missing = chart_from_kpi_data(data, REVENUE.key, band=band, band_at=START + timedelta(days=60))
    assert missing is not None and missing.band == ChartBand(3903.4, 4547.8, 2710.0, None)


def test_a_threshold_notice_with_an_expected_range_charts_it() -> None:
    ctx = ReportContext(
        alert_name="Revenue anomaly",
        organization_id=1,
        timezone="UTC",
        slot=datetime(2026, 12, 1, 1, tzinfo=UTC),
        period="last 7 days",
        generated_at=datetime(2026, 12, 1, 1, 5, tzinfo=UTC),
        kind="threshold_triggered",
        kpi=REVENUE,
        kpi_value=Decimal("2710"),
        condition="Revenue outside its expected range (± 3)",
        expected=ExpectedRange(Decimal("3903.4"), Decimal("4547.8"), START + timedelta(days=6)),
    )
    report = build_report(series(), ctx)
    assert report.chart is not None
    assert report.chart.band == ChartBand(3903.4, 4547.8, 2710.0, 6)
    assert band_rects(chart_scene(report.chart))
