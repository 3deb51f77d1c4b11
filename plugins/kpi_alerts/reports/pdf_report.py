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
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import DataHandler, Request, url2pathname

from kpi_alerts.kpi_data import KpiData
from kpi_alerts.reports.chart import kpi_chart_svg
from kpi_alerts.reports.context import ReportContext
from kpi_alerts.reports.formatting import (
    display_value,
    format_number,
    kpi_headline,
    local_date,
    template_env,
    templates_dir,
    to_local,
)

#: A PDF table longer than this is cut, and says so: 100k rows would be ~2,500 pages that take
#: minutes to lay out; the CSV / Excel exports carry every row.
MAX_PDF_ROWS = 2_000


class FetchRefused(ValueError):
    """A resource outside ``data:`` and the templates folder was requested."""


def local_url_fetcher(root: Path, *, on_fetch: Callable[[str], None] | None = None) -> Any:
    """A WeasyPrint URL fetcher limited to ``data:`` URIs and files under ``root``.

    ``on_fetch`` sees every URL asked for (tests use it to prove nothing else was requested).
    """
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


def _template_context(data: KpiData, ctx: ReportContext, max_rows: int) -> dict[str, Any]:
    label, value, note = kpi_headline(ctx, data)
    measure = ctx.kpi or (data.measures[0] if data.measures else None)
    keys = {c.key for c in data.columns}
    chart = (
        kpi_chart_svg(data, measure.key) if measure and measure.key in keys and len(data.rows) > 1 else None
    )
    numeric = [c.kind == "measure" for c in data.columns]
    shown = data.rows[:max_rows]
    rows = [[display_value(r.get(c.key), c, data) for c in data.columns] for r in shown]
    generated = to_local(ctx.generated_at, ctx.timezone)
    return {
        "title": ctx.alert_name,
        "kind": ctx.kind,
        "organization_id": ctx.organization_id,
        "period": ctx.period,
        "timezone": ctx.timezone,
        "report_date": local_date(ctx.slot, ctx.timezone).isoformat(),
        "kpi_label": label,
        "kpi_value": value,
        "kpi_note": note,
        "previous_value": None if ctx.previous_value is None else _fmt(ctx.previous_value, ctx),
        "condition": ctx.condition,
        "chart_uri": None
        if chart is None
        else "data:image/svg+xml;base64," + base64.b64encode(chart.encode()).decode("ascii"),
        "columns": [{"title": c.title, "numeric": n} for c, n in zip(data.columns, numeric, strict=True)],
        "numeric": numeric,
        "rows": rows,
        "shown": len(shown),
        "total": len(data.rows),
        "generated_at": generated.strftime("%Y-%m-%d %H:%M %Z"),
    }


def _fmt(value: Decimal, ctx: ReportContext) -> str:
    return format_number(value, ctx.kpi.format if ctx.kpi else None)


def render_pdf_html(data: KpiData, ctx: ReportContext, *, max_rows: int = MAX_PDF_ROWS) -> str:
    """The report as HTML (what WeasyPrint lays out); separate so it can be inspected and tested."""
    return template_env().get_template("report.html").render(**_template_context(data, ctx, max_rows))


def render_pdf(
    data: KpiData,
    ctx: ReportContext,
    path: Path,
    *,
    max_rows: int = MAX_PDF_ROWS,
    on_fetch: Callable[[str], None] | None = None,
) -> Path:
    """Write the PDF report to ``path``: headline, chart, table (header repeated), page numbers."""
    from weasyprint import HTML

    root = templates_dir()
    html = HTML(
        string=render_pdf_html(data, ctx, max_rows=max_rows),
        base_url=root.as_uri() + "/",
        url_fetcher=local_url_fetcher(root, on_fetch=on_fetch),
    )
    html.write_pdf(path, uncompressed_pdf=False)
    return path
