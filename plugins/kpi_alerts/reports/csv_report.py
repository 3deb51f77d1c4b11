"""CSV export: exact values, spreadsheet-safe, streamed row by row.

Decisions (documented for recipients and other code):

* **UTF-8 with a BOM** (``utf-8-sig``): Excel, the program most recipients open a CSV with, only
  detects UTF-8 when the BOM is there; without it "Zürich" shows as "ZÃ¼rich". pandas, Python's
  ``csv`` with ``encoding="utf-8-sig"``, LibreOffice and Google Sheets all read it transparently.
* **Dates**: a time dimension with granularity ``day`` or coarser is written as a date
  (``2026-03-14``); finer ones and other datetimes as ISO 8601 with the UTC offset of the report's
  timezone (``2026-03-14T09:00:00+00:00``), so every value is unambiguous without a side note.
* **Numbers** are the Decimal's exact digits in positional notation (``format(d, "f")``: never
  ``1E+3``): no rounding, no thousands separators, ``.`` as decimal point.
* **Formula injection**: text starting with ``= + - @``, tab or CR gets a leading ``'`` (OWASP);
  numbers are never touched, so ``-12.5`` stays a number.
* **Headers** are the report model's labels with the raw values' unit: ``Revenue (USD)``,
  ``Completion rate (fraction, 0.25 = 25 %)``: the numbers themselves stay unformatted.
* RFC 4180 quoting and CRLF line ends (the ``csv`` module's defaults).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from kpi_alerts.kpi_data import CellValue
from kpi_alerts.reports.formatting import Destination, neutralise_formula, to_local
from kpi_alerts.reports.model import ReportColumn, ReportModel

CSV_ENCODING = "utf-8-sig"


def _cell_writer(report: ReportModel, column: ReportColumn) -> Callable[[CellValue], str]:
    date_only = column.date_only
    tz = report.timezone

    def cell(value: CellValue) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Decimal):
            return format(value, "f") if value.is_finite() else str(value)
        if isinstance(value, datetime):
            local = to_local(value, tz)
            return local.date().isoformat() if date_only else local.isoformat()
        return neutralise_formula(str(value))

    return cell


def render_csv(report: ReportModel, dest: Destination) -> Destination:
    """Write the report's rows to ``dest`` (a path or a binary stream; headers: labels with units)."""
    writers = [(c.key, _cell_writer(report, c)) for c in report.columns]
    with _text_stream(dest) as fh:
        out = csv.writer(fh)
        out.writerow([neutralise_formula(c.header) for c in report.columns])
        out.writerows([cell(row.get(key)) for key, cell in writers] for row in report.rows)
    return dest


@contextmanager
def _text_stream(dest: Destination) -> Iterator[TextIO]:
    """``dest`` as text in :data:`CSV_ENCODING`; a binary stream is left open for its owner."""
    if isinstance(dest, Path):
        with dest.open("w", encoding=CSV_ENCODING, newline="") as fh:
            yield fh
        return
    wrapper = io.TextIOWrapper(dest, encoding=CSV_ENCODING, newline="")
    try:
        yield wrapper
    finally:
        wrapper.flush()
        wrapper.detach()
