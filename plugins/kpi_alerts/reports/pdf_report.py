"""PDF report: Jinja2 HTML (``include/templates/report.html``) laid out by WeasyPrint, offline.

The HTML carries user text (alert names, dimension values), so autoescaping is on and the URL
fetcher serves nothing but ``data:`` URIs and files inside the templates folder: a report can never
make the worker call an internal HTTP service or read a file from elsewhere on disk (SSRF / LFI).
Fonts come from the system (DejaVu); the stylesheet declares no web fonts.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kpi_alerts.reports.chart import render_chart_svg
from kpi_alerts.reports.formatting import template_env, templates_dir
from kpi_alerts.reports.model import ReportModel

#: A PDF table longer than this is cut, and says so: 100k rows would be ~2,500 pages that take
#: minutes to lay out; the CSV / Excel exports carry every row.
MAX_PDF_ROWS = 2_000


class FetchRefused(ValueError):
    """A resource outside ``data:`` and the templates folder was requested."""


def local_url_fetcher(root: Path, *, on_fetch: Callable[[str], None] | None = None) -> Any:
    """A WeasyPrint URL fetcher limited to ``data:`` URIs and files under ``root``.

    ``on_fetch`` sees every URL asked for (tests use it to prove nothing else was requested).
    """
    from urllib.request import DataHandler, Request, url2pathname

    from weasyprint.urls import URLFetcher, URLFetcherResponse

    base = root.resolve()

    class LocalOnlyFetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            if on_fetch is not None:
                on_fetch(url)
            scheme = urlsplit(url).scheme.lower()
            if scheme == "data":
                response = DataHandler().data_open(Request(url))
                ctype = response.headers.get("Content-Type", "application/octet-stream")
                return URLFetcherResponse(url, response.read(), {"Content-Type": ctype})
            if scheme == "file":
                path = Path(url2pathname(urlsplit(url).path)).resolve()
                if path.is_relative_to(base) and path.is_file():
                    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": ctype})
            raise FetchRefused(f"refused to fetch {url[:200]!r}: reports use local resources only")

    return LocalOnlyFetcher(allowed_protocols=("data", "file"), timeout=1)


def _template_context(report: ReportModel, max_rows: int) -> dict[str, Any]:
    chart = render_chart_svg(report.chart) if report.chart is not None else None
    return {
        "report": report,
        "title": report.alert_name,
        "chart_uri": None
        if chart is None
        else "data:image/svg+xml;base64," + base64.b64encode(chart.encode()).decode("ascii"),
        "rows": report.table(max_rows),
        "shown": min(max_rows, len(report.rows)),
        "total": len(report.rows),
    }


def render_pdf_html(report: ReportModel, *, max_rows: int = MAX_PDF_ROWS) -> str:
    """The report as HTML (what WeasyPrint lays out); separate so it can be inspected and tested."""
    return template_env().get_template("report.html").render(**_template_context(report, max_rows))


def render_pdf(
    report: ReportModel,
    path: Path,
    *,
    max_rows: int = MAX_PDF_ROWS,
    on_fetch: Callable[[str], None] | None = None,
) -> Path:
    """Write the PDF report to ``path``: headline, chart, table (header repeated), page numbers."""
    from weasyprint import HTML

    root = templates_dir()
    html = HTML(
        string=render_pdf_html(report, max_rows=max_rows),
        base_url=root.as_uri() + "/",
        url_fetcher=local_url_fetcher(root, on_fetch=on_fetch),
    )
    html.write_pdf(path, uncompressed_pdf=False)
    return path
