"""XLSX export with openpyxl's write-only mode: styled, typed, and flat in memory for 100k rows.

Each column gets one prepared ``WriteOnlyCell`` whose value is swapped per row: the style is
resolved once per column instead of once per cell, which is what keeps this faster than
``DataFrame.to_excel``; openpyxl serialises through lxml (a dependency for that: ~25 % less CPU,
``bench/bench_xlsx.py``). Excel has no timezones, so datetimes are written naive in the report's
timezone (the header says which). Text that a spreadsheet would evaluate gets a leading ``'``,
exactly as in the CSV, and is always written as a string cell, never a formula.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from kpi_alerts.kpi_data import CellValue
from kpi_alerts.reports.formatting import Destination, neutralise_formula, to_local
from kpi_alerts.reports.model import ReportModel

WIDTH_SAMPLE_ROWS = 200
_SHEET_JUNK = re.compile(r"[\[\]:*?/\\\x00-\x1f\x7f]")
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_MAX_CELL_TEXT = 32_767  # Excel's limit per cell


def clean_sheet_title(text: str) -> str:
    """A valid sheet name: no ``[]:*?/\\``, no edge apostrophes, at most 31 characters."""
    cleaned = " ".join(_SHEET_JUNK.sub(" ", text).split()).strip("'")
    return cleaned[:31].strip().strip("'") or "Report"


def _excel_value(value: CellValue, tz: str) -> Any:
    if isinstance(value, str):
        text = _ILLEGAL_XML.sub(" ", value)[:_MAX_CELL_TEXT]
        return neutralise_formula(text)
    if isinstance(value, datetime):
        return to_local(value, tz).replace(tzinfo=None)
    if isinstance(value, Decimal) and not value.is_finite():
        return str(value)  # "NaN" as a number would make the workbook unreadable
    return value  # Decimal, bool, None: native cell types


def _widths(report: ReportModel) -> list[float]:
    """Column widths from the header and a sample of rows (as the model writes them)."""
    sample = report.table(WIDTH_SAMPLE_ROWS)
    widths = []
    for i, c in enumerate(report.columns):
        longest = max((len(r[i]) for r in sample), default=0)
        widths.append(min(max(len(c.header), longest, 8) + 2.0, 60.0))
    return widths


def render_excel(report: ReportModel, dest: Destination) -> Destination:
    """Write the report's rows as an ``.xlsx`` to ``dest`` (a path or a binary stream): bold filled
    frozen header, typed cells with the model's number formats (currency code, percent scale, whole
    counts)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=clean_sheet_title(report.alert_name))
    for i, width in enumerate(_widths(report), 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"

    bold, fill = Font(bold=True, color="FFFFFF"), PatternFill("solid", fgColor="1F4E79")
    header = []
    for c in report.columns:
        cell = WriteOnlyCell(ws, value=neutralise_formula(_ILLEGAL_XML.sub(" ", c.header)))
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(vertical="center")
        header.append(cell)
    ws.append(header)

    templates: list[tuple[str, Any]] = []
    for c in report.columns:
        fmt = c.excel_format
        template = None
        if fmt is not None:
            template = WriteOnlyCell(ws)
            template.number_format = fmt
        templates.append((c.key, template))

    tz = report.timezone
    for row in report.rows:
        values: list[Any] = []
        for key, template in templates:
            value = _excel_value(row.get(key), tz)
            if template is not None and isinstance(value, (Decimal, datetime)):
                template.value = value  # written immediately by append(): safe to reuse
                values.append(template)
            else:
                values.append(value)
        ws.append(values)
    wb.save(dest)
    return dest
