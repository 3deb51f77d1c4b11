"""Benchmark of the report PDF: the same report rendered by four engines, side by side.

Run from the repo root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_pdf              # 12 and 2,000 rows
    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_pdf --quick      # fewer repeats, 12 and 200 rows

The engines, each drawing the same content (title, meta line, headline, chart, the table with its
header repeated, page numbers) in DejaVu Sans:

- ``weasyprint`` — the previous renderer, the baseline: Jinja HTML + CSS (``bench/pdf_weasyprint/``,
  the template the product used) laid out by WeasyPrint, the chart embedded as SVG;
- ``weasyprint tuned`` — the same with a PNG chart, the stylesheet parsed once, no flex layout;
- ``reportlab`` — what the product uses: :func:`kpi_alerts.reports.pdf_report.render_pdf`;
- ``fpdf2`` — fpdf2 with its table helper and the DejaVu TTF.

Figures are **CPU** milliseconds of the render (``time.process_time``, one process, after one warm-up
render so fonts, templates and the rasterised chart are cached as in a worker), median / min / max over
the repeats, and the file's size. CPU rather than wall time: on a shared 2-core machine wall time
measures the neighbours. The chart PNG is rasterised once and cached by ``render_chart_png`` in every
variant that embeds a PNG (the e-mail needs it anyway), so the figures compare the PDF layout itself.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from kpi_alerts.kpi_data import CellValue, Column, KpiData  # noqa: E402
from kpi_alerts.reports.chart import render_chart_png, render_chart_svg  # noqa: E402
from kpi_alerts.reports.context import ReportContext  # noqa: E402
from kpi_alerts.reports.model import ReportModel, build_report  # noqa: E402
from kpi_alerts.reports.pdf_report import MAX_PDF_ROWS, render_pdf  # noqa: E402

TZ = "America/Los_Angeles"
WEASY_DIR = Path(__file__).resolve().parent / "pdf_weasyprint"
DAY = Column("orders.created_at.day", "Order Date", "time_dimension", "time")
REGION = Column("orders.region", "Region", "dimension", "string")
REVENUE = Column("orders.revenue", "Revenue", "measure", "sum", "currency")
COUNT = Column("orders.count", "Orders", "measure", "count")


def make_report(rows: int) -> ReportModel:
    """A daily revenue report by region: the headline (a total), a chart, ``rows`` table rows."""
    start = datetime(2026, 11, 1, tzinfo=ZoneInfo(TZ))
    regions = ("EU", "US", "APAC", "LATAM", "Zürich", "Île-de-France")
    data: tuple[dict[str, CellValue], ...] = tuple(
        {
            DAY.key: start + timedelta(days=i // len(regions)),
            REGION.key: regions[i % len(regions)],
            REVENUE.key: Decimal(i * 7919 % 100_000) / 100,
            COUNT.key: Decimal(i % 500),
        }
        for i in range(rows)
    )
    utc = ZoneInfo("UTC")
    ctx = ReportContext(
        alert_name="Daily revenue by region",
        organization_id=1,
        timezone=TZ,
        slot=datetime(2026, 12, 2, 17, tzinfo=utc),
        period="last 7 days",
        generated_at=datetime(2026, 12, 2, 17, 1, tzinfo=utc),
        kpi=REVENUE,
        kpi_value=None,
    )
    report = build_report(KpiData(columns=(DAY, REGION, REVENUE, COUNT), rows=data, timezone=TZ), ctx)
    assert report.headline is not None and report.chart is not None
    return report


# --------------------------------------------------------------------------- the engines


@functools.cache
def _weasy_env() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(WEASY_DIR), autoescape=True, trim_blocks=True)


@functools.cache
def _weasy_fetcher() -> Any:
    """data: URIs and the template's folder only, as the product's WeasyPrint renderer had it."""
    import mimetypes
    from urllib.parse import urlsplit
    from urllib.request import DataHandler, Request, url2pathname

    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class LocalOnlyFetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            scheme = urlsplit(url).scheme.lower()
            if scheme == "data":
                response = DataHandler().data_open(Request(url))
                ctype = response.headers.get("Content-Type", "application/octet-stream")
                return URLFetcherResponse(url, response.read(), {"Content-Type": ctype})
            path = Path(url2pathname(urlsplit(url).path)).resolve()
            if scheme == "file" and path.is_relative_to(WEASY_DIR) and path.is_file():
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": ctype})
            raise ValueError(f"refused {url[:80]!r}")

    return LocalOnlyFetcher(allowed_protocols=("data", "file"), timeout=1)


def _weasy_html(report: ReportModel, chart_uri: str, *, link_css: bool = True) -> str:
    html: str = (
        _weasy_env()
        .get_template("report.html")
        .render(
            report=report,
            title=report.alert_name,
            chart_uri=chart_uri,
            rows=report.table(MAX_PDF_ROWS),
            shown=min(MAX_PDF_ROWS, len(report.rows)),
            total=len(report.rows),
        )
    )
    return html if link_css else html.replace('<link rel="stylesheet" href="report.css">', "")


def weasyprint_current(report: ReportModel, path: Path) -> None:
    from weasyprint import HTML

    assert report.chart is not None
    uri = "data:image/svg+xml;base64," + base64.b64encode(render_chart_svg(report.chart).encode()).decode()
    HTML(
        string=_weasy_html(report, uri), base_url=WEASY_DIR.as_uri() + "/", url_fetcher=_weasy_fetcher()
    ).write_pdf(path)


@functools.cache
def _tuned_css() -> Any:
    from weasyprint import CSS

    css = (
        (WEASY_DIR / "report.css").read_text().replace("display: flex; align-items: flex-end; gap: 10mm;", "")
    )
    return CSS(string=css, url_fetcher=_weasy_fetcher())


def weasyprint_tuned(report: ReportModel, path: Path) -> None:
    from weasyprint import HTML

    assert report.chart is not None
    uri = "data:image/png;base64," + base64.b64encode(render_chart_png(report.chart, scale=2)).decode()
    html = _weasy_html(report, uri, link_css=False)
    HTML(string=html, base_url=WEASY_DIR.as_uri() + "/", url_fetcher=_weasy_fetcher()).write_pdf(
        path, stylesheets=[_tuned_css()]
    )


def reportlab_product(report: ReportModel, path: Path) -> None:
    render_pdf(report, path)


def fpdf2(report: ReportModel, path: Path) -> None:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    from kpi_alerts.reports.pdf_report import _font_file

    assert report.chart is not None and report.headline is not None
    pdf = FPDF(format="A4")
    pdf.set_margins(14, 18, 14)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_font("DejaVu", "", str(_font_file("DejaVuSans")))
    pdf.add_font("DejaVu", "B", str(_font_file("DejaVuSans-Bold")))
    generated = f"Generated {report.generated_at}"

    def footer() -> None:
        pdf.set_y(-15)
        pdf.set_font("DejaVu", "", 8)
        pdf.cell(0, 5, generated)
        pdf.cell(0, 5, f"Page {pdf.page_no()} of {{nb}}", align="R")

    pdf.footer = footer
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 18)
    pdf.multi_cell(0, 8, report.alert_name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    meta = (
        f"Organization {report.organization_id} · Period: {report.period} · Report date {report.report_date}"
        f" · Times in {report.timezone}"
    )
    pdf.multi_cell(0, 4.5, f"{meta}\n{generated}", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 5, report.headline.label, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 22)
    pdf.cell(0, 10, report.headline.text, new_x="LMARGIN", new_y="NEXT")
    pdf.image(io.BytesIO(render_chart_png(report.chart, scale=2)), w=182)
    pdf.set_font("DejaVu", "", 8)
    numeric = ["RIGHT" if c.numeric else "LEFT" for c in report.columns]
    with pdf.table(
        text_align=tuple(numeric),
        headings_style=FontFace(emphasis="BOLD", fill_color=(31, 78, 121), color=255),
    ) as table:
        table.row([c.title for c in report.columns])
        for row in report.table(MAX_PDF_ROWS):
            table.row(row)
    pdf.output(str(path))


ENGINES: dict[str, Callable[[ReportModel, Path], None]] = {
    "weasyprint": weasyprint_current,
    "weasyprint tuned": weasyprint_tuned,
    "reportlab": reportlab_product,
    "fpdf2": fpdf2,
}
BASELINE = "weasyprint"


def measure(
    engine: Callable[[ReportModel, Path], None], report: ReportModel, repeats: int
) -> dict[str, float]:
    path = Path(tempfile.mkdtemp()) / "report.pdf"
    engine(report, path)  # warm-up: imports, fonts, templates, the cached chart
    times = []
    for _ in range(repeats):
        started = time.process_time()
        engine(report, path)
        times.append((time.process_time() - started) * 1000)
    from pypdf import PdfReader

    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "bytes": path.stat().st_size,
        "pages": len(PdfReader(path).pages),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="12 and 200 rows, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the 12-row case (default 15)")
    args = parser.parse_args(argv)
    typical = args.repeats or (5 if args.quick else 15)
    cases = [(12, typical), (200 if args.quick else MAX_PDF_ROWS, max(typical // 5, 2))]
    command = "PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_pdf" + (" --quick" if args.quick else "")
    print("Report PDF, CPU ms per render (process_time, warm process), median / min / max over the repeats")
    for rows, repeats in cases:
        report = make_report(rows)
        print(f"\n{rows:,} rows, {repeats} repeats")
        print(f"{'engine':<18}{'median':>9}{'min':>9}{'max':>9}{'vs baseline':>13}{'size':>10}{'pages':>7}")
        results = {name: measure(engine, report, repeats) for name, engine in ENGINES.items()}
        base = results[BASELINE]["median"]
        for name, r in results.items():
            ratio = "baseline" if name == BASELINE else f"{base / r['median']:.1f}x faster"
            print(
                f"{name:<18}{r['median']:>9.1f}{r['min']:>9.1f}{r['max']:>9.1f}{ratio:>13}"
                f"{r['bytes'] / 1024:>8.0f} KB{r['pages']:>7.0f}"
            )
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
