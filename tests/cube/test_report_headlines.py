"""A report's headline, change and units against the demo database (issue 14), through a real Cube.

For each kind of measure the headline must equal an independent SQL computation over the same dates
in the same timezone, and the change must equal the SQL of the previous range of the same length:
a sum and a count add up over the days, an average, a distinct count and a ratio do not (Cube's own
figure for the whole range). Then the same report is rendered and its labels and units are read back
from the CSV, the workbook (cell number formats), the PDF text and both parts of the e-mail; a PNG of
the PDF's first page and of the HTML e-mail is kept in ``.artifacts/`` for a person to look at.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kpi_alerts.cube.client import CubeClient
from kpi_alerts.delivery.email_message import Envelope, build_message
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.reports import render_attachment
from kpi_alerts.reports.context import ReportContext, describe_period
from kpi_alerts.reports.model import ReportModel, build_report
from kpi_alerts.reports.units import DisplaySettings

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".artifacts"
ORG = 1
TZ = "America/Los_Angeles"  # days differ from UTC days: a wrong zone shows in every total

#: The independent computation: one SQL aggregate per Cube measure of cube/model/cubes/orders.yml.
SQL_OF = {
    "orders.total_amount": "sum(total_amount)",
    "orders.count": "count(*)::numeric",
    "orders.average_amount": "avg(total_amount)",
    "orders.customers": "count(DISTINCT customer_id)::numeric",
    "orders.completion_rate": "count(*) FILTER (WHERE status = 'completed')::numeric / NULLIF(count(*), 0)",
}
DAILY_DATES_SQL = """
SELECT (now() AT TIME ZONE %(tz)s)::date - 7 AS first_day, (now() AT TIME ZONE %(tz)s)::date - 1 AS last_day
"""


def weekly(*measures: str) -> dict[str, Any]:
    return {
        "measures": list(measures),
        "timeDimensions": [
            {"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 7 days"}
        ],
    }


def sql_figure(conn: psycopg.Connection[Any], measure: str, first: date, last: date) -> Decimal:
    """The measure over local days ``first`` .. ``last`` in ``TZ``, computed by PostgreSQL alone."""
    row = conn.execute(
        f"SELECT {SQL_OF[measure]} FROM public.orders "
        "WHERE organization_id = %(org)s "
        "AND created_at >= (%(first)s::date)::timestamp AT TIME ZONE %(tz)s "
        "AND created_at < (%(last)s::date + 1)::timestamp AT TIME ZONE %(tz)s",
        {"org": ORG, "first": first, "last": last, "tz": TZ},
    ).fetchone()
    assert row is not None and row[0] is not None
    return Decimal(row[0])


def close(a: Decimal, b: Decimal) -> bool:
    """Equal to 12 significant digits (Cube and PostgreSQL print long averages differently)."""
    return abs(a - b) <= abs(b) * Decimal("1e-12") + Decimal("1e-12")


def fetcher(client: CubeClient) -> Callable[[Mapping[str, Any]], KpiData]:
    def fetch(query: Mapping[str, Any]) -> KpiData:
        return client.load(query, security_context={"organization_id": ORG}, timezone=TZ)

    return fetch


def context(query: Mapping[str, Any], **changes: Any) -> ReportContext:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "alert_name": "Weekly revenue",
        "organization_id": ORG,
        "timezone": TZ,
        "slot": now,
        "period": describe_period(query),
        "generated_at": now,
        **changes,
    }
    return ReportContext(**fields)


def weekly_report(
    client: CubeClient, *measures: str, display: DisplaySettings | None = None
) -> tuple[ReportModel, ReportContext, KpiData]:
    query = weekly(*measures)
    fetch = fetcher(client)
    data = fetch(query)
    ctx = context(query)
    return build_report(data, ctx, display=display, fetch=fetch), ctx, data


@pytest.mark.parametrize(
    ("measure", "additive"),
    [
        ("orders.total_amount", True),  # sum
        ("orders.count", True),  # count
        ("orders.average_amount", False),  # avg
        ("orders.customers", False),  # count distinct
        ("orders.completion_rate", False),  # number: a ratio of two counts
    ],
)
def test_headline_and_change_equal_sql_over_the_same_days(
    client: CubeClient, analytics: psycopg.Connection[Any], measure: str, additive: bool
) -> None:
    report, _ctx, data = weekly_report(client, measure)
    dates = analytics.execute(DAILY_DATES_SQL, {"tz": TZ}).fetchone()
    assert dates is not None
    first, last = dates
    assert report.date_range is not None
    assert (report.date_range.start, report.date_range.end) == (first, last)  # Cube's "last 7 days"
    assert report.headline is not None and report.headline.value is not None
    expected = sql_figure(analytics, measure, first, last)
    assert close(report.headline.value, expected), (measure, report.headline.value, expected)

    before_first, before_last = first - timedelta(days=7), last - timedelta(days=7)
    assert report.change is not None and report.change.against == "previous week"
    previous = sql_figure(analytics, measure, before_first, before_last)
    assert close(report.change.previous, previous), (measure, report.change.previous, previous)
    assert close(report.change.absolute, expected - previous)
    if previous:
        assert report.change.percent is not None
        assert close(report.change.percent, (expected - previous) / abs(previous) * 100)
    assert report.change.previous_period == f"{before_first} to {before_last}"
    assert report.change.marker in "▲▼■" and report.change.direction in report.change.text.replace(
        "unchanged", "flat"
    )

    daily = [r[measure] for r in data.rows if isinstance(r[measure], Decimal)]
    if additive:
        assert report.headline.basis == f"total of {first} to {last}"
        assert close(sum(daily, Decimal(0)), expected)
    else:  # Cube's figure for the range: the mean of the daily figures would be another number
        assert report.headline.basis == f"for the whole of {first} to {last}"
        mean_of_days = sum(daily, Decimal(0)) / len(daily)
        assert not close(mean_of_days, expected), "the demo data must tell the two apart"
        assert "not an average of the rows" in (report.value_rule or "")


def test_labels_and_units_read_back_from_every_rendering(
    client: CubeClient, analytics: psycopg.Connection[Any]
) -> None:
    measures = ("orders.total_amount", "orders.count", "orders.completion_rate", "orders.customers")
    report, ctx, _data = weekly_report(client, *measures)
    assert report.headline is not None and report.change is not None
    assert report.date_range is not None
    first, last = report.date_range.start, report.date_range.end
    revenue = sql_figure(analytics, "orders.total_amount", first, last)

    # CSV: labels from Cube's meta (shortTitle, the granularity), units in the header, raw numbers.
    attachment = render_attachment("csv", report)
    with io.StringIO(attachment.content.decode("utf-8-sig"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [
        "Day",
        "Revenue (USD)",
        "Orders",
        "Completion rate (fraction, 0.25 = 25 %)",
        "Customers",
    ]
    body = rows[1:]
    assert len(body) == 7 and all(re.fullmatch(r"\d{4}-\d\d-\d\d", r[0]) for r in body)
    assert sum((Decimal(r[1]) for r in body), Decimal(0)) == revenue  # exact digits, no separators
    assert all(re.fullmatch(r"\d+", r[2]) and re.fullmatch(r"0(\.\d+)?|1(\.0+)?", r[3]) for r in body)

    # XLSX: the same header; real number formats (currency code, whole counts, percent of a fraction).
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(render_attachment("excel", report).content))
    sheet = workbook.active
    assert sheet is not None
    assert [c.value for c in sheet[1]] == rows[0]
    formats = {c.column_letter: c.number_format for c in sheet[2]}
    assert formats == {"A": "yyyy-mm-dd", "B": '#,##0.00 "USD"', "C": "#,##0", "D": "0.0%", "E": "#,##0"}
    assert all(isinstance(c.value, int | float) for row in sheet.iter_rows(min_row=2, min_col=2) for c in row)

    # PDF: the headline with its unit, its basis, the change with a marker and the labels.
    from pypdf import PdfReader

    pdf = render_attachment("pdf", report)
    words = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages).split())
    headline = report.headline.text
    assert re.fullmatch(r"\$\d{1,3}(,\d{3})*\.\d\d", headline) and headline in words
    assert f"total of {first} to {last}" in words
    assert report.change.text in words and "vs previous week" in words
    for label in ("Day", "Revenue (USD)", "Orders", "Completion rate", "Customers"):
        assert label in words, (label, words[:400])
    save_pdf_page(pdf.content, "report-headlines-pdf-page1.png")

    # E-mail: the subject carries the figure and the change; both parts say the same facts.
    message = parse(
        build_message(
            ctx=ctx,
            data=None,
            recipients=["finance@org1.example.com"],
            envelope=Envelope(sender="KPI alerts <alerts@kpi-alerts.local>", max_attachment_bytes=10_000_000),
            attachment=attachment,
            report=report,
        )
    )
    subject = str(message["Subject"])
    assert re.fullmatch(
        r"\[KPI report\] Weekly revenue — \d{1,3}(,\d{3})* USD \([+-±]\d+\.\d % vs previous week\) — "
        r"\d{4}-\d\d-\d\d",
        subject,
    ), subject
    assert f"{round(revenue):,} USD" in subject
    text, html = bodies(message)
    for part in (text, html):
        for needle in (headline, report.change.text, "vs previous week", "Revenue (USD)", "Completion rate"):
            assert needle in part, (needle, part[:600])
        assert f"total of {first} to {last}" in part and TZ in part
    save_email_png(message, "report-headlines-email.png")


def test_an_alerts_locale_and_currency_change_the_text_not_the_numbers(client: CubeClient) -> None:
    display = DisplaySettings(locale="de-DE", currency="EUR")
    report, _ctx, _data = weekly_report(client, "orders.total_amount", display=display)
    assert report.headline is not None and report.headline.value is not None
    assert re.fullmatch(r"\d{1,3}(\.\d{3})*,\d\d\xa0€", report.headline.text), report.headline.text
    assert report.headline.plain.endswith(" EUR")
    with io.StringIO(render_attachment("csv", report).content.decode("utf-8-sig"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert (
        rows[0] == ["Day", "Revenue (EUR)"] and "." in rows[1][1] and "," not in rows[1][1]
    )  # raw stays raw


def test_an_organizations_currency_is_the_default_and_an_alerts_own_wins(client: CubeClient) -> None:
    org_only, _, _ = weekly_report(
        client, "orders.total_amount", display=DisplaySettings(organization_currency="CHF")
    )
    assert org_only.columns[1].header == "Revenue (CHF)"
    both = DisplaySettings(organization_currency="CHF", currency="GBP")
    assert weekly_report(client, "orders.total_amount", display=both)[0].columns[1].header == "Revenue (GBP)"
    meta_only, _, _ = weekly_report(client, "orders.total_amount")
    assert meta_only.columns[1].header == "Revenue (USD)"  # the measure's meta: currency USD


def test_percent_scale_of_a_ratio_can_be_declared(client: CubeClient) -> None:
    fraction, _, _ = weekly_report(client, "orders.completion_rate")
    assert fraction.headline is not None and fraction.headline.value is not None
    assert Decimal(0) <= fraction.headline.value <= 1  # the meta says fraction: 0.52 is 52 %
    assert fraction.headline.text == f"{fraction.headline.value * 100:.1f}%"
    assert fraction.change is not None and fraction.change.absolute_text.endswith(" pp")
    assert "pp vs previous week" in fraction.change.short  # a rate changes in points in a subject
    labelled, _, _ = weekly_report(
        client,
        "orders.completion_rate",
        display=DisplaySettings(
            column_labels={"orders.completion_rate": "Done", "orders.created_at": "Date"}
        ),
    )
    assert [c.label for c in labelled.columns] == ["Date", "Done"]


# --- helpers -----------------------------------------------------------------------------------


def parse(msg: EmailMessage) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(msg.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def bodies(msg: EmailMessage) -> tuple[str, str]:
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def _png_of_pdf(payload: bytes, out: Path) -> Path:
    import pypdfium2 as pdfium

    ARTIFACTS.mkdir(exist_ok=True)
    pdf = pdfium.PdfDocument(payload)
    try:
        pdf[0].render(scale=1.5).to_pil().save(out)
    finally:
        pdf.close()
    assert out.stat().st_size > 10_000  # a real page with text and a chart, not a blank image
    return out


def save_pdf_page(payload: bytes, name: str) -> Path:
    return _png_of_pdf(payload, ARTIFACTS / name)


def save_email_png(message: EmailMessage, name: str) -> Path:
    """The HTML part as a mail client would show it, its inline chart in place: a Chromium screenshot.

    Nothing is fetched: every request the page makes (there should be none) is refused and counted.
    """
    import shutil

    from playwright.sync_api import sync_playwright

    _text, html = bodies(message)
    for part in message.walk():
        cid = part.get("Content-ID")
        if cid and part.get_content_type() == "image/png":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            uri = "data:image/png;base64," + base64.b64encode(payload).decode("ascii")
            html = html.replace(f"cid:{cid.strip('<>')}", uri)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make system-deps` installs Debian's chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 720, "height": 900})
            page.route("**/*", lambda route: (requested.append(route.request.url), route.abort()))
            page.set_content(html, wait_until="load")
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    assert requested == []
    assert out.stat().st_size > 10_000  # a real message with text and a chart, not a blank image
    return out
