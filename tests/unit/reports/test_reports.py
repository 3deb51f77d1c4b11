"""Report attachments rendered for real (csv, openpyxl, reportlab) and read back."""

from __future__ import annotations

import csv
import http.server
import io
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import CellValue, Column, KpiData
from kpi_alerts.reports import render_attachment, render_csv, render_excel, render_pdf
from kpi_alerts.reports.chart import (
    ChartData,
    axis_range,
    chart_from_kpi_data,
    kpi_chart_png,
    kpi_chart_svg,
    nice_ticks,
    render_chart_png,
    render_chart_svg,
)
from kpi_alerts.reports.context import ReportContext
from kpi_alerts.reports.excel_report import clean_sheet_title
from kpi_alerts.reports.model import Change, ReportModel, build_report

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / ".artifacts"
UTC = ZoneInfo("UTC")
LONDON = ZoneInfo("Europe/London")

DAY = Column("orders.created_at.day", "Order Date", "time_dimension", "time")
HOUR = Column("orders.created_at.hour", "Order Hour", "time_dimension", "time")
REGION = Column("orders.region", "Region", "dimension", "string")
REVENUE = Column("orders.revenue", "Revenue", "measure", "sum", "currency")
SHARE = Column("orders.share", "Share", "measure", "number", "percent")
COUNT = Column("orders.count", "Orders", "measure", "count")
INJECTIONS = ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR")


def daily_revenue(days: int = 14) -> KpiData:
    """14 days of revenue in Europe/London across the DST change of 2026-03-29."""
    start = datetime(2026, 3, 20, tzinfo=LONDON)
    rows: tuple[dict[str, CellValue], ...] = tuple(
        {DAY.key: start + timedelta(days=i), REVENUE.key: Decimal(1000 + 37 * i) + Decimal("0.45")}
        for i in range(days)
    )
    return KpiData(columns=(DAY, REVENUE), rows=rows, timezone="Europe/London")


def by_region() -> KpiData:
    """No time dimension; text a spreadsheet would evaluate; a negative number; unicode."""
    regions = ("Zürich ☃", *INJECTIONS, "plain")
    revenue = [Decimal("-1234.5") if i == 2 else Decimal(i * 100) for i in range(len(regions))]
    pairs = enumerate(zip(regions, revenue, strict=True))
    rows: tuple[dict[str, CellValue], ...] = tuple(
        {REGION.key: r, REVENUE.key: v, COUNT.key: Decimal(i)} for i, (r, v) in pairs
    )
    return KpiData(columns=(REGION, REVENUE, COUNT), rows=rows, timezone="Europe/London")


def big(n: int = 1000) -> KpiData:
    start = datetime(2026, 1, 1, tzinfo=LONDON)
    rows: tuple[dict[str, CellValue], ...] = tuple(
        {
            HOUR.key: start + timedelta(hours=i),
            REGION.key: ("EU", "US", "APAC")[i % 3],
            REVENUE.key: Decimal(i * 7 % 997) + Decimal("0.5"),
            SHARE.key: Decimal(i % 100) / 100,
        }
        for i in range(n)
    )
    return KpiData(columns=(HOUR, REGION, REVENUE, SHARE), rows=rows, timezone="Europe/London")


def empty() -> KpiData:
    return KpiData(columns=(DAY, REVENUE), rows=(), timezone="Europe/London")


def context(**changes: object) -> ReportContext:
    base = ReportContext(
        alert_name="Revenue (daily)",
        organization_id=42,
        timezone="Europe/London",
        slot=datetime(2026, 4, 2, 8, 0, tzinfo=UTC),
        period="last 14 days",
        generated_at=datetime(2026, 4, 2, 8, 1, 30, tzinfo=UTC),
        kpi=REVENUE,
        kpi_value=Decimal("12345.678"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def model(data: KpiData, ctx: ReportContext | None = None) -> ReportModel:
    """The report model the renderers draw (no Cube here: no comparison with a previous period)."""
    return build_report(data, ctx or context())


def read_csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


# --------------------------------------------------------------------------- attachment / naming


def test_render_attachment_names_types_and_sizes() -> None:
    ctx = context(
        alert_name='Ärger: Q1 / "Revenue"\r\nX-Evil: 1', slot=datetime(2026, 4, 2, 23, 30, tzinfo=UTC)
    )
    report = build_report(daily_revenue(), ctx)
    got = {kind: render_attachment(kind, report) for kind in ("csv", "excel", "pdf")}
    assert got["csv"].filename == "arger-q1-revenue-x-evil-1-2026-04-03.csv"  # 23:30 UTC is 00:30 BST
    assert got["csv"].mime_type == "text/csv"
    assert got["csv"].content.startswith(b"\xef\xbb\xbf") and got["csv"].size == len(got["csv"].content)
    assert got["excel"].filename.endswith("-2026-04-03.xlsx")
    assert got["excel"].mime_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert got["excel"].content.startswith(b"PK\x03\x04")
    assert got["pdf"].content.startswith(b"%PDF-") and got["pdf"].content.rstrip().endswith(b"%%EOF")
    la = context(timezone="America/Los_Angeles", slot=datetime(2026, 4, 3, 2, 0, tzinfo=UTC))
    assert (
        render_attachment("csv", build_report(daily_revenue(), la)).filename == "revenue-daily-2026-04-02.csv"
    )


def test_an_attachment_in_memory_is_the_file_a_path_gets(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    report = build_report(daily_revenue(), context())
    assert render_attachment("csv", report).content == render_csv(report, tmp_path / "r.csv").read_bytes()
    rows = [
        list(r) for r in load_workbook(io.BytesIO(render_attachment("excel", report).content)).active.values
    ]
    expected = [list(r) for r in load_workbook(render_excel(report, tmp_path / "r.xlsx")).active.values]
    assert rows == expected and len(rows) == len(report.rows) + 1


def test_unknown_kind_is_a_validation_error() -> None:
    with pytest.raises(AlertValidationError, match="'png'"):
        render_attachment("png", build_report(daily_revenue(), context()))  # type: ignore[arg-type]


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys, kpi_alerts.reports, kpi_alerts.delivery.email_message, kpi_alerts.delivery.recipients;"
        "print(sorted(m for m in ('pandas','openpyxl','reportlab','weasyprint','matplotlib','jinja2','email_validator')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "plugins")},
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- CSV


def test_csv_reads_back_exactly_with_pandas(tmp_path: Path) -> None:
    import pandas as pd

    path = render_csv(model(daily_revenue()), tmp_path / "r.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel detects UTF-8
    df = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(df.columns) == ["Day", "Revenue"]  # the time column is named by its granularity
    assert df["Day"].tolist()[:2] == ["2026-03-20", "2026-03-21"]
    assert df["Day"].tolist()[-1] == "2026-04-02"  # after the DST change, still a plain date
    assert df["Revenue"].tolist()[:2] == ["1000.45", "1037.45"]
    assert [Decimal(v) for v in df["Revenue"]] == [r[REVENUE.key] for r in daily_revenue().rows]


def test_csv_sub_day_times_are_iso_with_the_local_offset(tmp_path: Path) -> None:
    rows: tuple[dict[str, CellValue], ...] = (
        {HOUR.key: datetime(2026, 3, 28, 23, tzinfo=UTC), REVENUE.key: Decimal("1")},  # GMT
        {HOUR.key: datetime(2026, 3, 29, 9, tzinfo=UTC), REVENUE.key: Decimal("2")},  # BST
    )
    path = render_csv(model(KpiData((HOUR, REVENUE), rows, "Europe/London")), tmp_path / "h.csv")
    body = read_csv_rows(path)
    assert body[1:] == [["2026-03-28T23:00:00+00:00", "1"], ["2026-03-29T10:00:00+01:00", "2"]]


def test_csv_neutralises_formulas_but_not_numbers(tmp_path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(
        render_csv(model(by_region()), tmp_path / "r.csv"),
        encoding="utf-8-sig",
        dtype=str,
        keep_default_na=False,
    )
    assert list(df.columns) == ["Region", "Revenue", "Orders"]
    assert df["Region"].tolist() == ["Zürich ☃", *("'" + s for s in INJECTIONS), "plain"]
    assert df["Revenue"].tolist()[2] == "-1234.5"  # a real negative number stays a number
    assert df["Revenue"].tolist()[1] == "100"


def test_odd_numbers_are_written_plainly(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    values = (Decimal("1E+3"), Decimal("-0.0000001"), Decimal("1234.5600"), Decimal("NaN"), None, True)
    rows: tuple[dict[str, CellValue], ...] = tuple({REVENUE.key: v} for v in values)
    data = KpiData((REVENUE,), rows, "UTC")
    got = [r[0] if r else "" for r in read_csv_rows(render_csv(model(data), tmp_path / "n.csv"))[1:]]
    assert got == ["1000", "-0.0000001", "1234.5600", "NaN", "", "true"]
    ws = load_workbook(render_excel(model(data), tmp_path / "n.xlsx")).active
    assert [c.value for (c,) in ws.iter_rows(min_row=2)] == [1000, -1e-07, 1234.56, "NaN", None, True]


def test_csv_of_empty_data_is_the_header_only(tmp_path: Path) -> None:
    assert read_csv_rows(render_csv(model(empty()), tmp_path / "e.csv")) == [["Day", "Revenue"]]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30))
def test_csv_round_trips_any_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("h") / "t.csv"
    render_csv(model(KpiData((REGION,), ({REGION.key: text},), "UTC")), path)
    (cell,) = read_csv_rows(path)[1]
    expected = "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
    assert cell == expected.replace("\r\n", "\n").replace("\r", "\n") or cell == expected


# --------------------------------------------------------------------------- Excel


def test_excel_reads_back_typed_and_styled(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = render_excel(
        model(big(50), context(alert_name="Revenue: EU/US [daily]? *with* a long name")), tmp_path / "r.xlsx"
    )
    wb = load_workbook(path)
    ws = wb.active
    assert ws.title == "Revenue EU US daily with a long"[:31]
    assert ws.freeze_panes == "A2"
    header = [c for c in ws[1]]
    assert [c.value for c in header] == ["Hour", "Region", "Revenue", "Share (fraction, 0.25 = 25 %)"]
    assert all(c.font.bold for c in header) and header[0].fill.fgColor.rgb.endswith("1F4E79")
    first = ws[2]
    assert first[0].value == datetime(2026, 1, 1, 0, 0) and first[0].is_date
    assert first[0].number_format == "yyyy-mm-dd hh:mm"
    assert first[2].value == 0.5 and first[2].number_format == "#,##0.00"
    assert ws.cell(row=3, column=4).number_format == "0.0%" and ws.cell(row=3, column=4).value == 0.01
    assert ws.column_dimensions["A"].width >= len("2026-01-01 00:00")
    assert ws.max_row == 51


def test_excel_dates_are_naive_local_datetimes_with_date_format(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    ws = load_workbook(render_excel(model(daily_revenue()), tmp_path / "d.xlsx")).active
    dates = [row[0] for row in ws.iter_rows(min_row=2)]
    assert dates[0].value == datetime(2026, 3, 20) and dates[-1].value == datetime(2026, 4, 2)
    assert {c.number_format for c in dates} == {"yyyy-mm-dd"}
    assert ws.title == "Revenue (daily)"  # the alert's name


def test_excel_injection_strings_are_text_not_formulas(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    ws = load_workbook(render_excel(model(by_region()), tmp_path / "i.xlsx")).active
    cells = [row[0] for row in ws.iter_rows(min_row=2)]
    assert all(c.data_type == "s" for c in cells)
    # XML turns a raw CR into LF on reading; what matters is the leading quote and the string type
    assert [c.value.replace("\n", "\r") for c in cells[1:7]] == ["'" + s for s in INJECTIONS]
    assert ws.cell(row=4, column=2).value == -1234.5 and ws.cell(row=4, column=2).data_type == "n"
    assert ws.cell(row=4, column=3).number_format == "#,##0"  # a count: whole numbers, grouped
    assert cells[0].value == "Zürich ☃"


def test_excel_of_empty_data_has_the_header(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    ws = load_workbook(render_excel(model(empty()), tmp_path / "e.xlsx")).active
    assert [c.value for c in ws[1]] == ["Day", "Revenue"] and ws.max_row == 1


def test_sheet_titles_are_valid() -> None:
    assert clean_sheet_title("'a[b]c:d*e?f/g\\h'") == "a b c d e f g h"
    assert clean_sheet_title("") == clean_sheet_title("''") == "Report"
    assert len(clean_sheet_title("x" * 80)) == 31


# --------------------------------------------------------------------------- charts


def test_charts() -> None:
    svg = kpi_chart_svg(daily_revenue(), REVENUE.key)
    assert svg is not None and svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert kpi_chart_svg(daily_revenue(), REVENUE.key) == svg  # deterministic
    assert kpi_chart_svg(by_region(), REVENUE.key) is not None  # bars over the dimension
    assert kpi_chart_svg(daily_revenue(1), REVENUE.key) is None
    assert kpi_chart_svg(empty(), REVENUE.key) is None
    png = kpi_chart_png(daily_revenue(), REVENUE.key)
    assert png is not None and png.startswith(b"\x89PNG") and len(png) < 100_000
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "chart-daily-revenue.png").write_bytes(png)


def _tick_labels(svg: str) -> list[str]:
    return re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="end">([^<]*)</text>', svg)


class TestChartReadability:
    def test_counts_get_whole_number_ticks(self) -> None:
        chart = ChartData("Orders", ["a", "b", "c"], [0.0, 1.0, 3.0], whole_numbers=True)
        assert _tick_labels(render_chart_svg(chart)) == ["0", "1", "2", "3"]

    def test_a_flat_series_sits_on_a_zero_based_axis(self) -> None:
        chart = ChartData("Orders", [f"d{i}" for i in range(5)], [4.0] * 5, whole_numbers=True)
        labels = _tick_labels(render_chart_svg(chart))
        assert labels[0] == "0" and all("." not in t for t in labels)  # not 3.80 .. 4.20
        assert float(labels[-1]) >= 4

    def test_a_small_change_on_a_large_value_is_framed_not_flattened(self) -> None:
        low, high = axis_range([1020.0, 1040.0, 1060.0])
        assert 980 <= low < 1020 and 1060 < high <= 1100

    def test_the_threshold_is_a_dashed_line_with_its_value(self) -> None:
        chart = ChartData("Revenue", ["a", "b"], [10.0, 50.0], threshold=35000.0)
        svg = render_chart_svg(chart)
        assert 'stroke-dasharray="6 4"' in svg and "threshold 35,000" in svg
        assert "35,000" in _tick_labels(svg) or float(_tick_labels(svg)[-1].replace(",", "")) >= 35000

    def test_the_previous_period_is_a_faint_line(self) -> None:
        chart = ChartData("Revenue", ["a", "b", "c"], [3.0, 4.0, 5.0], previous_values=[2.0, 2.5, 3.0])
        svg = render_chart_svg(chart)
        assert svg.count("<polyline") == 2 and "previous period" in svg

    def test_user_text_is_escaped(self) -> None:
        chart = ChartData("<b>&", ["<script>", "x"], [1.0, 2.0], kind="bar")
        svg = render_chart_svg(chart)
        assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;&amp;" in svg

    def test_a_threshold_alert_chart_from_kpi_data(self) -> None:
        chart = chart_from_kpi_data(daily_revenue(), REVENUE.key, threshold=1200.0)
        assert chart is not None and chart.threshold == 1200.0 and len(chart.values) == 14
        assert chart.x_labels[0] == "Mar 20" and not chart.whole_numbers  # currency keeps its cents

    def test_png_is_small_and_sharp(self) -> None:
        chart = ChartData("Revenue", ["a", "b", "c"], [3.0, 4.0, 5.0], threshold=4.5)
        png = render_chart_png(chart)
        assert png.startswith(b"\x89PNG") and len(png) < 60_000

    @given(
        st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=40),
        st.booleans(),
    )
    @settings(max_examples=200, deadline=None)
    def test_ticks_cover_the_data_in_round_steps(self, values: list[float], whole: bool) -> None:
        if whole:
            values = [float(round(v)) for v in values]
        low, high = axis_range(values, whole_numbers=whole)
        ticks = nice_ticks(low, high, whole_numbers=whole)
        tolerance = 1e-9 * (ticks[-1] - ticks[0])  # a value within a billionth of a tick is on it
        assert ticks[0] <= min(values) + tolerance and ticks[-1] >= max(values) - tolerance
        assert 2 <= len(ticks) <= 6
        if whole:
            assert all(float(t).is_integer() for t in ticks)


# --------------------------------------------------------------------------- PDF


def pdf_text(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(path).pages]


@pytest.fixture(scope="module")
def small_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "small.pdf"
    return render_pdf(build_report(daily_revenue(), context(condition="Revenue > 10,000")), path)


@pytest.fixture(scope="module")
def big_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "big.pdf"
    render_pdf(build_report(big(1000), context(alert_name="Hourly revenue by region", kpi=REVENUE)), path)
    return path


def test_pdf_shows_the_report(small_pdf: Path) -> None:
    text = "\n".join(pdf_text(small_pdf))
    for expected in (
        "Revenue (daily)",
        "17,373.30",  # the total of the rows (a sum measure)
        "total of",  # its basis
        "last 14 days",
        "Times in Europe/London",
        "Page 1 of 1",
        "Organization 42",
        "Report date 2026-04-02",
        "Condition: Revenue > 10,000",
        "The headline is the total of the period",
        "2026-03-29",
        "1,481.45",
        "Generated 2026-04-02 09:01",
    ):
        assert expected in text, expected
    from pypdf import PdfReader

    meta = PdfReader(small_pdf).metadata
    assert meta is not None and meta.title == "Revenue (daily)"


def test_pdf_draws_the_chart_as_vectors(small_pdf: Path) -> None:
    """No image: the chart's lines are paths and its labels text (sharp when zoomed, selectable)."""
    from pypdf import PdfReader

    pages = PdfReader(small_pdf).pages
    assert [image for page in pages for image in page.images] == []
    chart = build_report(daily_revenue(), context()).chart
    assert chart is not None
    from kpi_alerts.reports.chart import chart_scene
    from kpi_alerts.reports.chart_scene import Text

    labels = [i.runs[0].text for i in chart_scene(chart).items if isinstance(i, Text) and len(i.runs) == 1]
    text = pdf_text(small_pdf)[0]
    assert len(labels) > 5 and [label for label in labels if label not in text] == []  # ticks, as text


@pytest.mark.parametrize(
    ("kind", "wording"),
    [
        pytest.param("threshold_triggered", "Alert condition met: Revenue > 10,000", id="triggered"),
        pytest.param(
            "threshold_recovered", "Back to normal: Revenue > 10,000 no longer holds", id="recovered"
        ),
        pytest.param("threshold_no_data", "No data to evaluate: Revenue > 10,000", id="no-data"),
    ],
)
def test_pdf_states_the_condition_by_kind(tmp_path: Path, kind: str, wording: str) -> None:
    ctx = context(kind=kind, condition="Revenue > 10,000", threshold_value=Decimal(10000))
    path = render_pdf(build_report(daily_revenue(), ctx), tmp_path / "t.pdf")
    assert wording in " ".join(" ".join(pdf_text(path)).split())


def test_pdf_shows_the_change_and_the_previous_period(tmp_path: Path) -> None:
    change = Change(
        previous=Decimal(100),
        previous_text="$100.00",
        absolute=Decimal(-5),
        absolute_text="-5.00 USD",
        percent=Decimal(-5),
        percent_text="-5.0 %",
        direction="down",
        against="previous 14 days",
        previous_period="2026-03-06 to 2026-03-19",
    )
    report = replace(build_report(daily_revenue(), context()), change=change)
    path = render_pdf(report, tmp_path / "c.pdf")
    text = " ".join(" ".join(pdf_text(path)).split())
    assert "▼ down -5.00 USD (-5.0 %) vs previous 14 days" in text  # marker and word, not colour alone
    assert "Previous 14 days (2026-03-06 to 2026-03-19): $100.00" in text


def test_pdf_long_table_repeats_header_and_saves_a_preview(big_pdf: Path) -> None:
    import pypdfium2

    pages = pdf_text(big_pdf)
    assert len(pages) > 10
    assert "Hour" in pages[1] and "Region" in pages[1]  # the header row repeated on page 2
    assert pages[1].count("Hourly revenue by region") == 1  # the page header, from page 2 on
    assert "Hourly revenue by region" in pages[0]
    assert f"Page 2 of {len(pages)}" in pages[1] and "Generated 2026-04-02 09:01" in pages[1]
    assert "2026-01-01 00:00" in pages[0] and "2026-02-11 15:00" in pages[-1]  # first and last row
    ARTIFACTS.mkdir(exist_ok=True)
    doc = pypdfium2.PdfDocument(big_pdf)
    try:
        for i in (0, 1):
            doc[i].render(scale=1.2).to_pil().save(ARTIFACTS / f"report-page-{i + 1}.png")
        bitmap = doc[1].render(scale=1).to_pil().convert("RGB")
        first = doc[0].render(scale=1).to_pil().convert("RGB")
    finally:
        doc.close()
    assert (ARTIFACTS / "report-page-1.png").stat().st_size > 10_000
    # the header row is drawn white on the brand blue, and the rows alternate white and a faint grey
    colours = {colour for _, colour in bitmap.getcolors(maxcolors=1 << 16) or []}
    assert (0x1F, 0x4E, 0x79) in colours and (0xF9, 0xFA, 0xFB) in colours
    # the chart as a viewer draws it: mostly white (a wrongly decoded image shows as a black box)
    top = first.crop((0, first.height // 4, first.width, first.height // 2))
    whites = sum(n for n, colour in top.getcolors(maxcolors=1 << 16) or [] if colour == (255, 255, 255))
    assert whites > top.width * top.height * 0.5


def test_pdf_of_2000_rows_is_every_row_on_many_pages(tmp_path: Path) -> None:
    report = build_report(big(2000), context())
    path = render_pdf(report, tmp_path / "l.pdf")
    pages = pdf_text(path)
    assert len(pages) > 35 and all(f"of {len(pages)}" in page for page in pages)
    assert "2026-03-25 07:00" in pages[-1]  # the 2,000th row
    assert "Showing the first" not in "".join(pages)


def test_pdf_aligns_numbers_right(tmp_path: Path) -> None:
    from pypdf import PdfReader

    path = render_pdf(build_report(by_region(), context()), tmp_path / "a.pdf")
    spots: dict[str, float] = {}

    def visit(text: str, cm: object, tm: list[float], font: object, size: object) -> None:
        if text.strip():
            spots[text.strip()] = tm[4]  # the last: the table is drawn after the chart's own labels

    PdfReader(path).pages[0].extract_text(visitor_text=visit)
    # "0.00" and "-1,234.50" end at the same x; "Zürich ☃" and "plain" start at the same x
    assert spots["Zürich ☃"] == pytest.approx(spots["plain"])
    assert spots["-1,234.50"] < spots["0.00"]


def test_pdf_numbers_are_formatted_by_reportlabs_c_accelerator() -> None:
    """rl-accel (requirements.txt): every coordinate of the chart and the table goes through fp_str; the
    pure-Python fallback made a report's PDF ~45 % dearer (8.7 ms instead of 6.0)."""
    from reportlab.lib import rl_accel

    assert type(rl_accel.fp_str).__name__ == "builtin_function_or_method"


def test_pdf_of_empty_data(tmp_path: Path) -> None:
    path = render_pdf(build_report(empty(), context(kpi_value=None)), tmp_path / "e.pdf")
    text = "\n".join(pdf_text(path))
    assert "No data for this period." in text and "Page 1 of 1" in text


def test_pdf_caps_rows_and_says_so(tmp_path: Path) -> None:
    path = render_pdf(build_report(big(30), context()), tmp_path / "c.pdf", max_rows=10)
    text = "\n".join(pdf_text(path))
    assert "Showing the first 10 of 30 rows. The CSV and Excel exports contain every row." in text
    assert "2026-01-01 09:00" in text and "2026-01-01 10:00" not in text


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.hits
    finally:
        server.shutdown()
        server.server_close()


def hostile(base: str) -> tuple[str, ...]:
    """reportlab's Paragraph mini-markup, as an attacker would type it into a name or a dimension."""
    return (
        "<b>bold</b>",
        f'<img src="{base}/x.png"/>',
        "R&D &amp; &nbsp; <br/>",
        '<font color="red" size="40">big</font>',
        f'<a href="{base}/link">click</a>',
        f"<link href='{base}/l2'>l2</link>",
        "<para>p</para>",
    )


def test_pdf_shows_markup_as_literal_text_and_never_calls_out(
    tmp_path: Path, http_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reportlab.lib import utils

    base, hits = http_server
    strings = hostile(base)
    name = "".join(strings[:3])
    dim = KpiData(
        (REGION, REVENUE),
        tuple({REGION.key: s * (1 + i % 2 * 3), REVENUE.key: Decimal(i)} for i, s in enumerate(strings)),
        "Europe/London",
    )
    opened: list[object] = []  # everything reportlab opens (a filename, a URL, or our bytes)
    real_open = utils.open_for_read
    monkeypatch.setattr(
        utils, "open_for_read", lambda name, *a, **k: opened.append(name) or real_open(name, *a, **k)
    )
    report = build_report(dim, context(alert_name=name, condition="<b>x</b> & y"))
    path = render_pdf(report, tmp_path / "x.pdf")
    squeeze = "".join("".join(pdf_text(path)).split())  # long values wrap
    for s in (*strings, "<b>x</b>&y"):
        assert "".join(s.split()) in squeeze, s  # shown as typed, in a cell or in the title
    assert squeeze.count("<b>bold</b>") == 3  # in the title, in its cell and as the chart's x label
    assert hits == []
    assert all(not isinstance(o, str) for o in opened), opened  # never a filename or a URL
    raw = path.read_bytes()
    for reference in (b"/URI", b"/Launch", b"/GoToR", b"/JavaScript", b"/Annots", b"/EmbeddedFile"):
        assert reference not in raw, reference
