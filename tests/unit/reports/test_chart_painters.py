"""The chart's painters agree: the cairo PNG and the PDF vectors against CairoSVG's rendering of the SVG.

The chart is laid out once (``chart_scene``); ``render_chart_svg`` writes it as SVG and
``render_chart_png`` draws it with cairo. CairoSVG (a test dependency only) rasterises the SVG, and the
two images must be close for every kind of chart — so a change to one painter that the other does not
follow (a lost threshold line, a colour, a dash, a shifted label) fails here. The PDF painter
(``paint_scene_pdf``, reportlab vectors) is rasterised by PDFium, the engine of Chrome's PDF viewer,
and held to the same reference: its shapes strictly, its text loosely (every engine hints glyphs
its own way; ``test_reports`` checks that the chart's labels are the PDF's text). The side-by-side sheet
``.artifacts/chart-painters.png`` (CairoSVG | cairo | difference, one row per chart) is for a human eye.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from kpi_alerts.reports import chart as chart_module
from kpi_alerts.reports.chart import (
    HEIGHT,
    WIDTH,
    ChartBand,
    ChartData,
    chart_scene,
    render_chart_png,
    render_chart_svg,
)
from kpi_alerts.reports.chart_scene import (
    Polyline,
    Scene,
    Text,
    encode_png,
    paint_scene,
    paint_scene_pdf,
    scene_png,
    scene_svg,
)

ARTIFACTS = Path(__file__).resolve().parents[3] / ".artifacts"
WEEK = [f"Nov {i}" for i in range(1, 8)]
REVENUE = [41112.0, 38000.5, 29000.0, 31000.0, 35500.0, 40100.0, 37000.0]
PREVIOUS = [39000.0, 36000.0, 30000.0, 30500.0, 34000.0, 38000.0, 35500.0]

CHARTS = {
    "line": ChartData("Revenue", WEEK, REVENUE, value_label="USD"),
    "threshold-previous": ChartData(
        "Revenue", WEEK, REVENUE, previous_values=PREVIOUS, threshold=35000.0, value_label="USD"
    ),
    "anomaly-band": ChartData(
        "Revenue", WEEK, REVENUE, value_label="USD", band=ChartBand(42000.0, 46500.0, 37000.0, 6)
    ),
    "anomaly-band-across": ChartData(
        "Revenue", WEEK, REVENUE, value_label="USD", band=ChartBand(30000.0, 33000.0, 37000.0, None)
    ),
    "bar": ChartData(
        "Orders by region",
        ["EMEA", "North America", "APAC", "LATAM", "Other"],
        [120.0, 340.0, 75.0, 18.0, 0.0],
        whole_numbers=True,
        kind="bar",
    ),
    "flat": ChartData("Orders", [f"d{i}" for i in range(5)], [4.0] * 5, whole_numbers=True),
    "gaps": ChartData(
        "Signups",
        [f"Mar {i}" for i in range(1, 41)],
        [math.nan if i in (10, 12, 21) else float(i % 7) for i in range(40)],  # a lone point at 11
        whole_numbers=True,
    ),
    "percent": ChartData(
        "Conversion",
        WEEK,
        [0.12, 0.125, 0.13, 0.118, 0.14, 0.135, 0.129],
        value_format="percent",
        threshold=0.125,
    ),
    "long-labels": ChartData(
        "A very long KPI title that goes on and on and on to test the truncation of it all",
        [
            "An extremely long dimension value number one",
            "Another rather long dimension value",
            "Short",
            "x" * 60,
        ],
        [1.5e6, 2.25e6, 3e5, 9.9e5],
        kind="bar",
        value_label="Net revenue in euros",
    ),
    "unicode-series": ChartData(
        "Umsatz Zürich ☃ — größer",
        ["Zürich", "Genève", "Malmö", "Łódź", "São Paulo"],
        [3.0, 4.0, 5.0, 2.0, 6.0],
        previous_values=[2.5, 3.0, 4.5, 2.0, 5.5],
        value_label="€",
        series_label="Zürich ☃",
        other_series=(("Genève", [2.0, 3.5, 4.0, 1.0, 5.0]), ("Malmö ümlaut", [1.0, 1.5, 2.0, 2.5, 3.0])),
    ),
    "negative-markup": ChartData(
        "Profit <b>&amp;", WEEK, [-1200.0, 300.0, 800.0, -50.0, 1500.0, 900.0, -300.0], threshold=0.0
    ),
    "hourly-many-points": ChartData(
        "Hourly",
        [f"Nov {1 + h // 24} {h % 24}:00" for h in range(48)],
        [100 + 30 * math.sin(i / 4) for i in range(48)],
        previous_values=[90 + 25 * math.sin(i / 4 + 1) for i in range(48)],
    ),
}


def decode(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def cairosvg_png(chart: ChartData, scale: int = 1) -> Image.Image:
    import cairosvg

    svg = render_chart_svg(chart).encode()
    return decode(cairosvg.svg2png(bytestring=svg, output_width=WIDTH * scale, output_height=HEIGHT * scale))


def unmatched_ink(a: Image.Image, b: Image.Image) -> Image.Image:
    """Ink of ``a`` (per channel) with no ink as strong within a pixel of it in ``b``: what ``b`` lacks.
    A text run placed half a pixel apart (the two renderers anchor text on slightly different widths)
    leaves almost nothing; a missing line, dash, dot, colour or label leaves a trail of strong pixels."""
    ink_a, ink_b = ImageChops.invert(a), ImageChops.invert(b).filter(ImageFilter.MaxFilter(3))
    return ImageChops.subtract(ink_a, ink_b).convert("L")


def strong_pixels(image: Image.Image, level: int = 80) -> int:
    return sum(image.point(lambda v: 255 if v > level else 0).histogram()[255:])


def closeness(a: Image.Image, b: Image.Image) -> tuple[float, int]:
    """(mean absolute difference per channel, strong pixels either image has and the other lacks)."""
    mean = sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3
    return mean, strong_pixels(unmatched_ink(a, b)) + strong_pixels(unmatched_ink(b, a))


@pytest.fixture(scope="module")
def renders() -> dict[str, tuple[Image.Image, Image.Image]]:
    return {name: (cairosvg_png(chart), decode(render_chart_png(chart))) for name, chart in CHARTS.items()}


@pytest.fixture(scope="module", autouse=True)
def side_by_side(renders: dict[str, tuple[Image.Image, Image.Image]]) -> None:
    """``.artifacts/chart-painters.png``: CairoSVG | cairo | the difference (white where equal)."""
    sheet = Image.new("RGB", (3 * WIDTH, HEIGHT * len(renders)), "white")
    for row, (reference, ours) in enumerate(renders.values()):
        sheet.paste(reference, (0, row * HEIGHT))
        sheet.paste(ours, (WIDTH, row * HEIGHT))
        sheet.paste(ImageChops.invert(ImageChops.difference(reference, ours)), (2 * WIDTH, row * HEIGHT))
    ARTIFACTS.mkdir(exist_ok=True)
    sheet.save(ARTIFACTS / "chart-painters.png")


class TestTheTwoPaintersAgree:
    @pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in CHARTS])
    def test_cairo_png_matches_cairosvg_of_the_svg(
        self, name: str, renders: dict[str, tuple[Image.Image, Image.Image]]
    ) -> None:
        reference, ours = renders[name]
        assert ours.size == reference.size == (WIDTH, HEIGHT)
        mean, unmatched = closeness(reference, ours)
        assert mean < 2.0, f"{name}: mean difference {mean:.2f}"
        assert unmatched <= 12, f"{name}: {unmatched} pixels drawn by one painter only"

    def test_print_scale_matches_too(self) -> None:
        chart = CHARTS["threshold-previous"]
        ours = decode(render_chart_png(chart, scale=2))
        assert ours.size == (2 * WIDTH, 2 * HEIGHT)
        mean, unmatched = closeness(cairosvg_png(chart, scale=2), ours)
        assert mean < 2.0 and unmatched <= 40

    @pytest.mark.parametrize(
        "drop",
        [
            pytest.param(lambda item: isinstance(item, Polyline) and bool(item.dash), id="threshold line"),
            pytest.param(
                lambda item: isinstance(item, Text) and item.runs[0].text.startswith("threshold"),
                id="threshold label",
            ),
            pytest.param(
                lambda item: isinstance(item, Polyline) and item.stroke == chart_module.PREVIOUS_COLOR,
                id="previous line",
            ),
        ],
    )
    def test_the_comparison_catches_a_painter_that_loses_an_element(self, drop: object) -> None:
        """The yardstick itself: one element fewer in the cairo image is far outside the tolerance."""
        chart = CHARTS["threshold-previous"]
        scene = chart_scene(chart)
        fewer = type(scene)(
            scene.width, scene.height, scene.text_color, tuple(i for i in scene.items if not drop(i))
        )  # type: ignore[operator]
        assert len(fewer.items) < len(scene.items)
        _, unmatched = closeness(cairosvg_png(chart), decode(scene_png(fewer)))
        assert unmatched > 12


def pdf_painted(scene: Scene, scale: int = 1) -> Image.Image:
    """The scene drawn as vectors on a page of its size (points = pixels), rasterised by PDFium."""
    import pypdfium2
    from reportlab.pdfgen.canvas import Canvas

    from kpi_alerts.reports import pdf_report

    pdf_report._register_fonts()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(scene.width, scene.height))
    paint_scene_pdf(scene, canvas, 1.0, (pdf_report.FONT, pdf_report.FONT_BOLD))
    canvas.showPage()
    canvas.save()
    document = pypdfium2.PdfDocument(out.getvalue())
    try:
        return document[0].render(scale=scale).to_pil().convert("RGB")
    finally:
        document.close()


def shapes_only(scene: Scene, drop: Callable[[object], bool] = lambda item: False) -> Scene:
    """The scene without its text: glyphs are rasterised differently by every engine (hinting), shapes
    are not, so the shapes are compared strictly and the text by its presence and a loose whole-image
    bound."""
    kept = tuple(i for i in scene.items if not isinstance(i, Text) and not drop(i))
    return Scene(scene.width, scene.height, scene.text_color, kept)


def cairosvg_scene(scene: Scene) -> Image.Image:
    import cairosvg

    return decode(cairosvg.svg2png(bytestring=scene_svg(scene).encode()))


class TestThePdfVectors:
    @pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in CHARTS])
    def test_pdf_shapes_match_cairosvg_of_the_svg(self, name: str) -> None:
        shapes = shapes_only(chart_scene(CHARTS[name]))
        mean, unmatched = closeness(cairosvg_scene(shapes), pdf_painted(shapes))
        assert mean < 1.0, f"{name}: mean difference {mean:.2f}"
        assert unmatched <= 12, f"{name}: {unmatched} pixels drawn by one painter only"

    @pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in CHARTS])
    def test_the_whole_pdf_chart_is_close_to_cairosvg(
        self, name: str, renders: dict[str, tuple[Image.Image, Image.Image]]
    ) -> None:
        reference, _ = renders[name]
        ours = pdf_painted(chart_scene(CHARTS[name]))
        assert ours.size == reference.size == (WIDTH, HEIGHT)
        mean, _ = closeness(reference, ours)
        assert mean < 3.5, f"{name}: mean difference {mean:.2f}"  # text included (measured: 0.3-3.3)

    @pytest.mark.parametrize(
        "drop",
        [
            pytest.param(lambda item: isinstance(item, Polyline) and bool(item.dash), id="threshold line"),
            pytest.param(
                lambda item: isinstance(item, Polyline) and item.stroke == chart_module.PREVIOUS_COLOR,
                id="previous line",
            ),
        ],
    )
    def test_the_comparison_catches_a_lost_element(self, drop: Callable[[object], bool]) -> None:
        scene = chart_scene(CHARTS["threshold-previous"])
        _, unmatched = closeness(cairosvg_scene(shapes_only(scene)), pdf_painted(shapes_only(scene, drop)))
        assert unmatched > 12


class TestThePng:
    def test_our_encoder_writes_the_pixels_cairo_would(self) -> None:
        for chart in (CHARTS["threshold-previous"], CHARTS["unicode-series"]):
            surface = paint_scene(chart_scene(chart), 2)
            theirs = io.BytesIO()
            surface.write_to_png(theirs)
            assert decode(encode_png(surface)).tobytes() == decode(theirs.getvalue()).tobytes()

    def test_png_is_truecolour_and_small(self) -> None:
        png = render_chart_png(CHARTS["threshold-previous"])
        image = Image.open(io.BytesIO(png))
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and image.mode == "RGB" and image.size == (WIDTH, HEIGHT)
        assert len(png) < 40_000

    def test_subscribers_of_one_graph_share_one_image(self) -> None:
        chart = CHARTS["line"]
        twin = ChartData("Revenue", list(WEEK), list(REVENUE), value_label="USD")  # equal, not the same lists
        assert render_chart_png(chart) is render_chart_png(twin)
        assert render_chart_png(chart, scale=2) is not render_chart_png(chart)
        changed = ChartData("Revenue", list(WEEK), [*REVENUE[:-1], 30000.0], value_label="USD")
        assert render_chart_png(changed) != render_chart_png(chart)

    def test_user_text_is_drawn_as_plain_text(self) -> None:
        """Markup in a title or label is drawn as the characters it is (cairo has no markup)."""
        chart = ChartData("<b>&amp;</b>", ["<i>x</i>", "y"], [1.0, 2.0], kind="bar")
        texts = [run.text for item in chart_scene(chart).items if isinstance(item, Text) for run in item.runs]
        assert "<b>&amp;</b>" in texts and "<i>x</i>" in texts
        assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in render_chart_svg(chart)  # and escaped in the SVG


class TestTheLayout:
    def test_title_and_unit_end_before_the_legend(self) -> None:
        chart = CHARTS["unicode-series"]
        items = chart_scene(chart).items
        title = next(i for i in items if isinstance(i, Text) and i.size == 11)
        legend_left = min(i.x for i in items if isinstance(i, Text) and i.size == 9)
        width = sum(len(run.text) for run in title.runs) * chart_module.BOLD_11_CHAR
        assert title.x + width <= legend_left

    def test_a_long_title_is_shortened_and_keeps_its_unit(self) -> None:
        title = next(
            i for i in chart_scene(CHARTS["long-labels"]).items if isinstance(i, Text) and i.size == 11
        )
        assert title.runs[0].text.endswith("…") and title.runs[1].text.startswith(" · Net revenue")

    def test_a_lone_point_between_gaps_is_a_dot(self) -> None:
        svg = render_chart_svg(CHARTS["gaps"])
        assert svg.count("<circle") == 1 and svg.count("<polyline") == 3
