"""Issue 6, end to end: reports people can open, through the real DAG and a real SMTP server.

Each test creates scheduled alerts, runs the real ``kpi_alerts`` DAG with ``dag.test()`` at a fixed
logical time (real Airflow metadata DB, real Postgres, real Cube.js), then parses what the real
SMTP server (aiosmtpd) received and reads every attachment back with the tools a recipient's
software would use: pandas for the CSV, openpyxl for the workbook, pypdf/pypdfium2 for the PDF.
Expected values come from plain SQL over the analytics ``orders`` table, not from Cube.
"""

from __future__ import annotations

import http.server
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from markupsafe import escape

from devstack.mail import MailCatcher, read_message
from kpi_alerts.ledger.alert_store import create_alert
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.services]

#: 09:05 in Los Angeles, 17:05 in London and UTC, 06:05 on 2026-12-08 in Auckland.
LOGICAL_TIME = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)
CREATED_AT = LOGICAL_TIME - timedelta(minutes=4)
START, END = "2026-11-01", "2026-11-14"
PERIOD = f"{START} to {END}"
MEASURES = ["orders.total_amount", "orders.count"]
DAILY = {
    "measures": MEASURES,
    "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day", "dateRange": [START, END]}],
}
DAILY_BY_CATEGORY = {**DAILY, "dimensions": ["orders.category"]}
BY_CATEGORY = {
    "measures": MEASURES,
    "dimensions": ["orders.category"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": [START, END]}],
}
CSV_MIME = "text/csv"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PDF_MIME = "application/pdf"
ARTIFACTS = REPO_ROOT / ".artifacts"
#: A throw-away tenant for rows inserted into the shared analytics table (removed afterwards).
EVIL_ORG = 9001
FORMULAS = ("=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1:A2)")

Totals = dict[tuple[str, ...], tuple[Decimal, int]]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def services(
    db: psycopg.Connection[Any], mailbox: MailCatcher, airflow_connections: dict[str, str]
) -> MailCatcher:
    """An empty alerts DB, an empty mailbox, connections set and ``production`` (sends over SMTP)."""
    assert mailbox.messages() == []
    return mailbox


class _Tripwire(http.server.ThreadingHTTPServer):
    """An HTTP server that records every connection made to it (a request that left the renderer)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:
                self.hits.append(handler.path)
                handler.send_response(200)
                handler.send_header("Content-Type", "image/png")
                handler.end_headers()

            def log_message(handler, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.hits.append(f"connection from {client_address}")
        return True

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def tripwire() -> Iterator[_Tripwire]:
    server = _Tripwire()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def evil_orders(pg: Any, cube_server: Any, tripwire: _Tripwire) -> Iterator[list[str]]:
    """Orders of a throw-away organization whose categories a spreadsheet or a browser would run."""
    categories = [*FORMULAS, f'<img src="http://127.0.0.1:{tripwire.port}/category.png">', "books"]
    rows = [
        (
            EVIL_ORG * 1_000_000 + i,
            EVIL_ORG,
            datetime(2026, 11, 2 + i, 12, 30, tzinfo=UTC),
            "completed",
            category,
            Decimal(100 + 10 * i) + Decimal("0.25"),
        )
        for i, category in enumerate(categories)
    ]
    with psycopg.connect(pg.url("analytics"), autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (EVIL_ORG,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO orders (id, organization_id, created_at, status, category, total_amount) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
    try:
        yield categories
    finally:
        with psycopg.connect(pg.url("analytics"), autocommit=True) as conn:
            conn.execute("DELETE FROM orders WHERE organization_id = %s", (EVIL_ORG,))


# --- helpers -------------------------------------------------------------------------------------


def scheduled(
    org: int,
    name: str,
    recipients: list[str],
    *,
    tz: str,
    at: tuple[int, int],
    attachment: str,
    query: dict[str, Any],
) -> dict[str, Any]:
    return {
        "organization_id": org,
        "alert_name": name,
        "recipients": recipients,
        "cube_query": query,
        "schedule": {
            "frequency_interval": "day",
            "schedule_hour": at[0],
            "schedule_minute": at[1],
            "timezone": tz,
            "attachment_type": attachment,
        },
    }


def run_dag(kpi_dag: Any) -> Any:
    dag_run = kpi_dag.test(logical_date=LOGICAL_TIME)
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", states
    return dag_run


def ledger(db: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = db.execute(
        "SELECT r.*, ka.alert_name FROM cron_job_results r JOIN kpi_alerts ka ON ka.cron_job_id = r.cron_job_id"
    ).fetchall()
    return {r["recipients"][0]: r for r in rows}


def by_recipient(messages: list[EmailMessage]) -> dict[str, EmailMessage]:
    out = {str(m["X-Envelope-To"] or m["To"]).split(",")[0].strip(): m for m in messages}
    assert len(out) == len(messages), [m["To"] for m in messages]
    return out


def structure(part: EmailMessage, depth: int = 0) -> list[str]:
    out = ["  " * depth + part.get_content_type()]
    for sub in part.iter_parts() if part.is_multipart() else ():
        out += structure(sub, depth + 1)  # type: ignore[arg-type]
    return out


def bodies(msg: EmailMessage) -> tuple[str, str]:
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def flat(text: str) -> str:
    """Text without any whitespace: PDF extraction breaks lines wherever the layout wrapped them."""
    return "".join(text.split())


def check_message(
    msg: EmailMessage,
    *,
    name: str,
    day: str,
    recipients: list[str],
    mime: str | None,
    filename: str | None,
    compared: bool = True,
) -> tuple[str, str, bytes | None]:
    """The common contract of a report e-mail; returns (text body, html body, attachment bytes)."""
    body = ["multipart/alternative", "  text/plain", "  multipart/related", "    text/html", "    image/png"]
    if mime is None:
        assert structure(msg) == body
    else:
        assert structure(msg) == ["multipart/mixed", *("  " + line for line in body), f"  {mime}"]
    # The subject carries the period's figure and its change (issue 14): "... — 12,345 USD (+4.2 % vs
    # previous 14 days) — 2026-12-07".
    subject = str(msg["Subject"])
    assert subject.startswith(f"[KPI report] {name[:90]}") and subject.endswith(f" — {day}"), subject
    figure = r" — [\d,.]+ USD \([+-±][\d,.]+ % vs previous 14 days\) — " if compared else r" — [\d,.]+ USD — "
    assert re.search(figure, subject), subject
    shown = [a.addr_spec for a in msg["To"].addresses]
    if len(recipients) > 1:  # private by default: nobody sees the other recipients (Bcc)
        assert str(msg["To"]) == "undisclosed-recipients:;" and shown == []
        delivered = msg["X-Envelope-To"] or msg["Bcc"]  # what the SMTP server got, or the dry run's Bcc
        assert [a.strip() for a in str(delivered).split(",")] == recipients
    else:
        assert shown == recipients
    if msg["X-Envelope-To"] is not None:  # delivered over SMTP: the Bcc header never travels
        assert msg["X-Envelope-To"] == ", ".join(recipients) and msg["Bcc"] is None
    text, html = bodies(msg)
    (chart,) = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    cid = str(chart["Content-ID"]).strip("<>")
    assert cid and chart.get_content_disposition() == "inline"
    png = chart.get_payload(decode=True)
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG\r\n\x1a\n")
    # The only image the HTML shows is the inline chart: nothing is loaded from anywhere else.
    assert re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html) == [f"cid:{cid}"]
    attachments = list(msg.iter_attachments())
    if mime is None:
        assert attachments == []
        return text, html, None
    (attachment,) = attachments
    assert attachment.get_content_type() == mime
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == filename
    for part in (text, html):
        assert "The full report is attached: " in part and str(filename) in part
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload
    return text, html, payload


def analytics_totals(pg: Any, org: int, tz: str, *, by_day: bool = True, by_category: bool = False) -> Totals:
    """(day?, category?) -> (revenue, order count) straight from SQL, days in the alert's timezone."""
    keys = (["to_char((created_at AT TIME ZONE %(tz)s)::date, 'YYYY-MM-DD')"] if by_day else []) + (
        ["category"] if by_category else []
    )
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    with psycopg.connect(pg.url("analytics")) as conn:
        rows = conn.execute(
            f"SELECT {', '.join([*keys, 'sum(total_amount)', 'count(*)'])} FROM orders "
            "WHERE organization_id = %(org)s "
            "AND (created_at AT TIME ZONE %(tz)s)::date BETWEEN %(start)s AND %(end)s" + group,
            {"tz": tz, "org": org, "start": date.fromisoformat(START), "end": date.fromisoformat(END)},
        ).fetchall()
    return {tuple(r[:-2]): (Decimal(r[-2]), int(r[-1])) for r in rows}


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def read_csv(payload: bytes) -> pd.DataFrame:
    assert payload.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM, so Excel reads it as UTF-8
    return pd.read_csv(io.BytesIO(payload), encoding="utf-8-sig", dtype=str, keep_default_na=False)


def column_named(columns: Any, word: str) -> str:
    (found,) = [c for c in columns if word.lower() in str(c).lower()]
    return str(found)


def pdf_text(payload: bytes) -> tuple[str, int]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(payload))
    return "\n".join(page.extract_text() or "" for page in reader.pages), len(reader.pages)


def save_first_page(payload: bytes, name: str) -> Path:
    """The PDF's first page as a PNG test artefact (``.artifacts/`` at the repo root, gitignored)."""
    import pypdfium2 as pdfium

    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    pdf = pdfium.PdfDocument(payload)
    try:
        pdf[0].render(scale=1.5).to_pil().save(out)
    finally:
        pdf.close()
    assert out.stat().st_size > 10_000  # a real page with text and a chart, not a blank image
    return out


# --- tests ---------------------------------------------------------------------------------------


def test_csv_excel_and_pdf_reports_arrive_readable(
    kpi_dag: Any, db: psycopg.Connection[Any], services: MailCatcher, pg: Any
) -> None:
    csv_to = ["cfo@org1.example.com", "ops@org1.example.com"]
    xlsx_to = ["sales@org2.example.com"]
    pdf_to = ["board@org2.example.com", "cfo@org2.example.com"]
    alerts = [
        scheduled(
            1,
            "Org 1 daily revenue",
            csv_to,
            tz="America/Los_Angeles",
            at=(9, 5),
            attachment="csv",
            query=DAILY,
        ),
        scheduled(
            2,
            "Org 2 revenue by category",
            xlsx_to,
            tz="Europe/London",
            at=(17, 5),
            attachment="excel",
            query=DAILY_BY_CATEGORY,
        ),
        scheduled(
            2, "Org 2 daily revenue", pdf_to, tz="Pacific/Auckland", at=(6, 5), attachment="pdf", query=DAILY
        ),
    ]
    for spec in alerts:
        create_alert(db, spec, now=CREATED_AT)

    dag_run = run_dag(kpi_dag)

    messages = by_recipient(services.messages())
    assert set(messages) == {csv_to[0], xlsx_to[0], pdf_to[0]}
    rows = ledger(db)

    # CSV, organization 1, Los Angeles days.
    csv_name = "org-1-daily-revenue-2026-12-07.csv"
    text, html, payload = check_message(
        messages[csv_to[0]],
        name="Org 1 daily revenue",
        day="2026-12-07",
        recipients=csv_to,
        mime=CSV_MIME,
        filename=csv_name,
    )
    assert payload is not None
    frame = read_csv(payload)
    assert not [c for c in frame.columns if str(c).startswith("orders.")]  # titles, not member keys
    day_col, revenue_col, count_col = (
        frame.columns[0],
        column_named(frame.columns, "revenue"),
        column_named(frame.columns, "orders"),
    )
    got = {(r[day_col],): (Decimal(r[revenue_col]), int(r[count_col])) for _, r in frame.iterrows()}
    expected = analytics_totals(pg, 1, "America/Los_Angeles")
    assert len(expected) == 14 and got == expected
    total = sum((v[0] for v in expected.values()), Decimal(0))
    for body in (text, html):  # the headline is the period's total; the period and zone are said
        assert money(total) in body and PERIOD in body and "America/Los_Angeles" in body
        assert f"total of {PERIOD}" in body and "vs previous 14 days" in body
    assert f"Revenue: ${money(total)} (total of {PERIOD})" in text
    assert column_named(frame.columns, "revenue") == "Revenue (USD)" and day_col == "Day"
    assert rows[csv_to[0]]["attachment"] == csv_name
    assert rows[csv_to[0]]["attachment_bytes"] == len(payload)

    # Excel, organization 2, London days by category.
    import openpyxl

    xlsx_name = "org-2-revenue-by-category-2026-12-07.xlsx"
    text, html, payload = check_message(
        messages[xlsx_to[0]],
        name="Org 2 revenue by category",
        day="2026-12-07",
        recipients=xlsx_to,
        mime=XLSX_MIME,
        filename=xlsx_name,
    )
    assert payload is not None
    workbook = openpyxl.load_workbook(io.BytesIO(payload))
    assert workbook.sheetnames == ["Org 2 revenue by category"]
    sheet = workbook.active
    assert sheet is not None and sheet.freeze_panes == "A2"
    header = [c.value for c in sheet[1]]
    assert all(isinstance(h, str) and not h.startswith("orders.") for h in header), header
    assert all(c.font.bold for c in sheet[1])
    day_i, cat_i = 0, 1
    revenue_i, count_i = (
        header.index(column_named(header, "revenue")),
        header.index(column_named(header, "orders")),
    )
    cells: Totals = {}
    for row in sheet.iter_rows(min_row=2):
        day_cell, category, revenue, count = row[day_i], row[cat_i], row[revenue_i], row[count_i]
        assert isinstance(day_cell.value, datetime) and day_cell.number_format == "yyyy-mm-dd"
        assert day_cell.value.time() == datetime.min.time()  # local midnight, naive: Excel has no zones
        assert revenue.data_type == "n" and revenue.number_format == '#,##0.00 "USD"'
        assert count.data_type == "n" and count.number_format == "#,##0"
        key = (day_cell.value.date().isoformat(), str(category.value))
        cells[key] = (Decimal(str(revenue.value)).quantize(Decimal("0.01")), int(count.value))
    expected = analytics_totals(pg, 2, "Europe/London", by_category=True)
    assert len(expected) > 14 and cells == expected
    assert rows[xlsx_to[0]]["attachment"] == xlsx_name
    # Three categories a day: the headline is the period's total over them (revenue is a sum measure).
    period_total = sum((v[0] for v in expected.values()), Decimal(0))
    assert f"Revenue: ${money(period_total)} (total of {PERIOD})" in text
    assert money(period_total) in html and f"total of {PERIOD}" in html

    # PDF, organization 2, Auckland days: the slot is already 2026-12-08 there.
    pdf_name = "org-2-daily-revenue-2026-12-08.pdf"
    text, html, payload = check_message(
        messages[pdf_to[0]],
        name="Org 2 daily revenue",
        day="2026-12-08",
        recipients=pdf_to,
        mime=PDF_MIME,
        filename=pdf_name,
    )
    assert payload is not None and payload.startswith(b"%PDF-")
    content, pages = pdf_text(payload)
    expected = analytics_totals(pg, 2, "Pacific/Auckland")
    kpi = money(sum((v[0] for v in expected.values()), Decimal(0)))
    words = " ".join(content.split())
    for needle in ("Org 2 daily revenue", PERIOD, "Pacific/Auckland", "Organization 2", "2026-12-08"):
        assert needle in words, (needle, words[:600])
    assert flat(f"Revenue ${kpi} total of {PERIOD}") in flat(content), words[:600]
    assert "vs previous 14 days" in words
    assert pages == 1 and "Page 1 of 1" in words
    for day, (revenue, _count) in expected.items():  # every day of the table, with its SQL total
        assert f"{day[0]} {money(revenue)}" in words
    save_first_page(payload, "reports-delivered-pdf-page1.png")
    assert kpi in text and kpi in html

    for row in rows.values():
        assert row["status"] == "sent" and row["delivery"] == "smtp" and row["dag_run_id"] == dag_run.run_id
        assert row["message_id"] == str(messages[row["recipients"][0]]["Message-ID"])


def test_user_text_is_neutralised_everywhere_and_nothing_calls_out(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    services: MailCatcher,
    pg: Any,
    tripwire: _Tripwire,
    evil_orders: list[str],
) -> None:
    url = f"http://127.0.0.1:{tripwire.port}"
    name = f'=HYPERLINK("{url}/x")<script>alert(1)</script><img src="{url}/img.png">'
    kinds = {
        "csv": "csv@org9001.example.com",
        "excel": "xlsx@org9001.example.com",
        "pdf": "pdf@org9001.example.com",
    }
    # Cube caches results for a while: a no-op filter unique to this run makes it read today's rows.
    fresh = {"member": "orders.status", "operator": "notEquals", "values": [f"run-{tripwire.port}"]}
    query = {**BY_CATEGORY, "filters": [fresh]}
    for kind, recipient in kinds.items():
        spec = scheduled(EVIL_ORG, name, [recipient], tz="UTC", at=(17, 5), attachment=kind, query=query)
        create_alert(db, spec, now=CREATED_AT)

    run_dag(kpi_dag)

    messages = by_recipient(services.messages())
    assert set(messages) == set(kinds.values())
    expected = analytics_totals(pg, EVIL_ORG, "UTC", by_day=False, by_category=True)
    assert {k[0] for k in expected} == set(evil_orders)
    escaped_name = str(escape(name))
    payloads: dict[str, bytes] = {}
    for kind, recipient in kinds.items():
        msg = messages[recipient]
        ext = {"csv": "csv", "excel": "xlsx", "pdf": "pdf"}[kind]
        (attachment,) = list(msg.iter_attachments())
        filename = attachment.get_filename()
        assert filename is not None and re.fullmatch(
            rf"hyperlink-http-127-0-0-1-[a-z0-9-]+-2026-12-07\.{ext}", filename
        )
        mime = {"csv": CSV_MIME, "excel": XLSX_MIME, "pdf": PDF_MIME}[kind]
        text, html, payload = check_message(  # the throw-away tenant has no orders the period before
            msg,
            name=name,
            day="2026-12-07",
            recipients=[recipient],
            mime=mime,
            filename=filename,
            compared=False,
        )
        assert payload is not None
        payloads[kind] = payload
        # HTML: the name and every category are text, never markup.
        assert "<script" not in html.lower() and escaped_name in html, html[:2000]
        for category in evil_orders:
            assert str(escape(category)) in html, (str(escape(category)), html[html.find("<tbody") :])
        assert not re.search(r"<(img|a|iframe|link|object)\b[^>]*127\.0\.0\.1", html)
        assert name in text  # plain text shows it as it is: nothing there can run
        total = sum((v[0] for v in expected.values()), Decimal(0))  # no time dimension: every category
        assert f"Revenue: ${money(total)} (total of {PERIOD})\r\n" in text and money(total) in html
        assert str(msg["Subject"]).startswith("[KPI report] =HYPERLINK(")  # a header is plain text too

    # CSV: formula-looking text gets a leading quote; numbers stay exact numbers.
    frame = read_csv(payloads["csv"])
    category_col, revenue_col = frame.columns[0], column_named(frame.columns, "revenue")
    got = {r[category_col]: Decimal(r[revenue_col]) for _, r in frame.iterrows()}
    for category in evil_orders:
        shown = "'" + category if category.startswith(("=", "+", "-", "@")) else category
        assert got[shown] == expected[(category,)][0]
    assert not [v for v in frame.to_numpy().ravel() if str(v).startswith(("=", "+", "@"))]

    # XLSX: no formula anywhere (in the XML itself), formula-looking text stored as quoted strings.
    import openpyxl

    with zipfile.ZipFile(io.BytesIO(payloads["excel"])) as archive:
        sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/")]
        assert sheets and not [n for n in sheets if b"<f>" in archive.read(n) or b"<f " in archive.read(n)]
    workbook = openpyxl.load_workbook(io.BytesIO(payloads["excel"]))
    sheet = workbook.active
    assert sheet is not None
    (title,) = workbook.sheetnames
    assert len(title) <= 31 and not set(title) & set("[]:*?/\\")
    cells = [c for row in sheet.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    values = {str(c.value) for c in cells if c.data_type == "s"}
    for category in FORMULAS:
        assert "'" + category in values and category not in values

    # PDF: the name and the categories are printed as text (escaped HTML), nothing was fetched.
    content, pages = pdf_text(payloads["pdf"])
    assert pages >= 1
    for needle in (name, *evil_orders):
        assert flat(needle) in flat(content), (needle, content[:800])
    save_first_page(payloads["pdf"], "reports-delivered-injection-page1.png")

    assert tripwire.hits == []  # not one request reached the URLs in the name or the data
    for row in ledger(db).values():
        assert row["status"] == "sent" and row["delivery"] == "smtp"


def test_attachment_over_the_size_limit_is_left_out_and_said(
    kpi_dag: Any, db: psycopg.Connection[Any], services: MailCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_MAX_ATTACHMENT_MB", "0.001")  # 1,048 bytes
    big, small = "big@org1.example.com", "small@org2.example.com"
    create_alert(
        db,
        scheduled(
            1, "Big workbook", [big], tz="UTC", at=(17, 5), attachment="excel", query=DAILY_BY_CATEGORY
        ),
        now=CREATED_AT,
    )
    create_alert(
        db,
        scheduled(2, "Small csv", [small], tz="UTC", at=(17, 5), attachment="csv", query=DAILY),
        now=CREATED_AT,
    )

    run_dag(kpi_dag)

    messages = by_recipient(services.messages())
    text, html, payload = check_message(
        messages[big], name="Big workbook", day="2026-12-07", recipients=[big], mime=None, filename=None
    )
    rows = ledger(db)
    size = rows[big]["attachment_bytes"]
    assert rows[big]["status"] == "sent" and rows[big]["attachment"] is None and size > 1048
    for body in (text, html):
        assert "is not attached" in body and "above the 1 KB limit" in body
        assert f"The report was {round(size / 1024, 1):g} KB" in body  # never "0.1 MB, above the 0.1 MB"
        assert "big-workbook-2026-12-07.xlsx" not in body
    # Below the limit, in the same run, the attachment still goes out.
    _, _, payload = check_message(
        messages[small],
        name="Small csv",
        day="2026-12-07",
        recipients=[small],
        mime=CSV_MIME,
        filename="small-csv-2026-12-07.csv",
    )
    assert payload is not None and len(payload) <= 1048
    assert rows[small]["attachment"] == "small-csv-2026-12-07.csv"
    assert rows[small]["attachment_bytes"] == len(payload)


def test_dry_run_writes_the_same_message_to_the_outbox(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    services: MailCatcher,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox"
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_ENVIRONMENT", "development")
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_OUTBOX_DIR", str(outbox))
    recipients = ["cfo@org2.example.com", "ops@org2.example.com"]
    create_alert(
        db,
        scheduled(2, "Dry run workbook", recipients, tz="UTC", at=(17, 5), attachment="excel", query=DAILY),
        now=CREATED_AT,
    )

    run_dag(kpi_dag)

    assert services.messages() == []  # nothing reached the SMTP server
    (eml,) = sorted(outbox.glob("*.eml"))
    msg = read_message(eml)
    _, _, payload = check_message(
        msg,
        name="Dry run workbook",
        day="2026-12-07",
        recipients=recipients,
        mime=XLSX_MIME,
        filename="dry-run-workbook-2026-12-07.xlsx",
    )
    assert payload is not None and payload.startswith(b"PK")
    (row,) = ledger(db).values()
    assert row["status"] == "sent" and row["delivery"] == "outbox"
    assert row["attachment"] == "dry-run-workbook-2026-12-07.xlsx" and row["attachment_bytes"] == len(payload)
    assert row["message_id"] == str(msg["Message-ID"])
    assert str(eml) in str(row["details"])
