"""CPU of one alert's e-mail without the chart: build the MIME message and flatten it for SMTP.

Run from the repo root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_mime [--repeats 300]

The chart renderer is replaced by a fixed PNG of typical size (its cost is ``bench_chart``'s), so the
figures are the message's own: the report model, the templates, headers, the MIME tree, the
attachment's base64 (rendered in memory), recipients, and the bytes ``send_over_smtp`` puts on the wire
(``_envelope``: Bcc stripped, CRLF). Printed: CPU milliseconds per message (``time.process_time``),
median / min / max over the repeats, and the medians of building and of flattening, per attachment
kind and for a threshold notice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from kpi_alerts.delivery import email_message  # noqa: E402
from kpi_alerts.delivery.mailers import _envelope  # noqa: E402
from kpi_alerts.kpi_data import CellValue, Column, KpiData  # noqa: E402
from kpi_alerts.reports.context import ReportContext  # noqa: E402
from kpi_alerts.reports.model import build_report  # noqa: E402

TZ = "America/Los_Angeles"
COLUMNS = (
    Column("orders.created_at.day", "Orders Created at", "time_dimension", "time"),
    Column("orders.revenue", "Revenue", "measure", "number", "currency"),
    Column("orders.count", "Orders", "measure", "count"),
)
RECIPIENTS = ("ops@example.com", "Finance.Team@Example.COM", "ceo@example.org")


class _Client:
    """What ``_envelope`` asks of an ``smtplib.SMTP``: the server's extensions."""

    def has_extn(self, name: str) -> bool:
        return name.lower() in {"smtputf8", "8bitmime"}


def make_data(days: int = 12) -> KpiData:
    start = datetime(2026, 11, 16, tzinfo=ZoneInfo(TZ))
    rows: tuple[dict[str, CellValue], ...] = tuple(
        {
            "orders.created_at.day": start + timedelta(days=i),
            "orders.revenue": Decimal(i * 7919 % 100_000) / 100,
            "orders.count": Decimal(i % 50 + 3),
        }
        for i in range(days)
    )
    return KpiData(
        columns=COLUMNS,
        rows=rows,
        timezone=TZ,
        query={"measures": ["orders.revenue"], "timeDimensions": [{"dimension": "orders.created_at"}]},
    )


def make_context(kind: str) -> ReportContext:
    utc = ZoneInfo("UTC")
    return ReportContext(
        alert_name="Daily revenue — Zürich team",
        organization_id=1,
        timezone=TZ,
        slot=datetime(2026, 11, 30, 17, tzinfo=utc),
        period="last 12 days",
        generated_at=datetime(2026, 11, 30, 17, 5, tzinfo=utc),
        kind=kind,  # type: ignore[arg-type]
        kpi=COLUMNS[1],
        kpi_value=Decimal("1234.5") if kind == "threshold" else None,
        condition="Revenue > 1,000 USD" if kind == "threshold" else None,
        threshold_value=Decimal(1000) if kind == "threshold" else None,
        dashboard_url="https://dash.example.com/d/42",
    )


def one_message(kind: str, attachment: Any, data: KpiData) -> tuple[float, float, int]:
    """CPU seconds of building the message and of flattening it for SMTP, and its size on the wire."""
    c0 = time.process_time()
    ctx = make_context("threshold" if kind == "threshold" else "report")
    msg = email_message.build_message(
        ctx=ctx,
        data=data,
        recipients=list(RECIPIENTS),
        envelope=email_message.Envelope(
            "KPI Alerts <kpi-alerts@example.com>", message_id_domain="example.com"
        ),
        attachment=attachment,
        message_key=f"alert-7@{ctx.slot.isoformat()}",
        report=build_report(data, ctx),
    )
    c1 = time.process_time()
    _, _, payload, _ = _envelope(_Client(), msg)  # type: ignore[arg-type]
    return c1 - c0, time.process_time() - c1, len(payload)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()

    from kpi_alerts.reports import Attachment, render_attachment

    png = os.urandom(30_000)  # a typical inline chart's size; incompressible like a PNG
    email_message.render_chart_png = lambda chart, **_: png
    data = make_data()
    report = build_report(data, make_context("report"))
    attachments: dict[str, Attachment | None] = {"threshold": None}
    for kind in ("csv", "excel"):
        attachments[kind] = render_attachment(kind, report)  # type: ignore[arg-type]
    # PDF rendering is bench_pdf's; a file of a typical size
    attachments["pdf"] = Attachment("report.pdf", "application/pdf", os.urandom(60_000))

    print(
        f"CPU ms per message (chart excluded), {args.repeats} repeats: build = report model + build_message,"
    )
    print("wire = _envelope (Bcc stripped, flattened with CRLF); total median (min-max)")
    print(f"{'case':<10}{'total':>8}{'min':>8}{'max':>8}{'build':>8}{'wire':>8}{'bytes':>9}")
    for kind, attachment in attachments.items():
        for _ in range(5):  # warm-up: imports, template compilation
            one_message(kind, attachment, data)
        totals, builds, wires = [], [], []
        size = 0
        for _ in range(args.repeats):
            build, wire, size = one_message(kind, attachment, data)
            builds.append(build * 1000)
            wires.append(wire * 1000)
            totals.append((build + wire) * 1000)
        print(
            f"{kind:<10}{statistics.median(totals):>8.2f}{min(totals):>8.2f}{max(totals):>8.2f}"
            f"{statistics.median(builds):>8.2f}{statistics.median(wires):>8.2f}{size:>9,}"
        )
    print(f"reproduce: cd {ROOT} && PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_mime")


if __name__ == "__main__":
    main()
