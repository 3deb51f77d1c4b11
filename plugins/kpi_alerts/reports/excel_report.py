"""XLSX export with openpyxl's write-only mode: styled, typed, and flat in memory for 100k rows.

Each column gets one prepared ``WriteOnlyCell`` whose value is swapped per row: the style is
resolved once per column instead of once per cell, which is what keeps this faster than
``DataFrame.to_excel``. Excel has no timezones, so datetimes are written naive in the report's
timezone (the header says which). Text that a spreadsheet would evaluate gets a leading ``'``,
exactly as in the CSV, and is always written as a string cell, never a formula.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from kpi_alerts.kpi_data import CellValue, Column, KpiData
from kpi_alerts.reports.formatting import display_value, is_date_only, neutralise_formula, to_local

NUMBER_FORMATS = {"currency": "#,##0.00", "percent": "0.00%"}
#: Cube's counting types, and unformatted measures whose values are all integers, get grouped digits.
#: Other unformatted numbers stay "General" (``#,##0.##`` would print "500." for integers), which
#: also spares a styled cell per value.
COUNT_TYPES = frozenset({"count", "countDistinct", "countDistinctApprox", "count_distinct"})
COUNT_FORMAT = "#,##0"
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
WIDTH_SAMPLE_ROWS = 200
_SHEET_JUNK = re.compile(r"[\[\]:*?/\\\x00-\x1f\x7f]")
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_MAX_CELL_TEXT = 32_767  # Excel's limit per cell


def clean_sheet_title(text: str) -> str:
    """A valid sheet name: no ``[]:*?/\\``, no edge apostrophes, at most 31 characters."""
    cleaned = " ".join(_SHEET_JUNK.sub(" ", text).split()).strip("'")
    return cleaned[:31].strip().strip("'") or "Report"


def _number_format(data: KpiData, column: Column) -> str | None:
    if column.kind == "time_dimension" or column.type == "time":
        return DATE_FORMAT if is_date_only(data, column) else DATETIME_FORMAT
    if column.format in NUMBER_FORMATS:
        return NUMBER_FORMATS[column.format]
    if column.type in COUNT_TYPES or (column.kind == "measure" and _whole_numbers(data, column)):
        return COUNT_FORMAT
    return None


def _whole_numbers(data: KpiData, column: Column) -> bool:
    """True when an unformatted measure holds integers only (no fractional digits at all).

    Cube's ``/load`` annotation types every aggregate as ``number``; the client adds the aggregation
    from ``/meta`` when it can. Where it could not (or for a calculated ``number`` measure), a count is
    recognised by its values: Postgres returns counts and integer sums without a fractional part,
    while ``sum``/``avg`` over decimals keep theirs.
    """
    if column.format is not None or column.type != "number":
        return False
    seen = False
    for row in data.rows:
        value = row.get(column.key)
        if value is None:
            continue
        if not isinstance(value, Decimal) or not value.is_finite():
            return False
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < 0:
            return False
        seen = True
    return seen


def _excel_value(value: CellValue, tz: str) -> Any:
    if isinstance(value, str):
        text = _ILLEGAL_XML.sub(" ", value)[:_MAX_CELL_TEXT]
        return neutralise_formula(text)
    if isinstance(value, datetime):
        return to_local(value, tz).replace(tzinfo=None)
    if isinstance(value, Decimal) and not value.is_finite():
        return str(value)  # "NaN" as a number would make the workbook unreadable
    return value  # Decimal, bool, None: native cell types


def _widths(data: KpiData) -> list[float]:
    """Column widths from the header and a sample of rows, as a person would size them."""
    sample = data.rows[:WIDTH_SAMPLE_ROWS]
    widths = []
    for c in data.columns:
        longest = max((len(display_value(r.get(c.key), c, data)) for r in sample), default=0)
        widths.append(min(max(len(c.title), longest, 8) + 2.0, 60.0))
    return widths


def render_excel(data: KpiData, path: Path, *, sheet_title: str = "Report") -> Path:
    """Write ``data`` to an ``.xlsx`` at ``path``: bold filled frozen header, typed cells."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=clean_sheet_title(sheet_title))
    for i, width in enumerate(_widths(data), 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"

    bold, fill = Font(bold=True, color="FFFFFF"), PatternFill("solid", fgColor="1F4E79")
    header = []
    for c in data.columns:
        cell = WriteOnlyCell(ws, value=neutralise_formula(_ILLEGAL_XML.sub(" ", c.title)))
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(vertical="center")
        header.append(cell)
    ws.append(header)

    templates: list[tuple[str, Any]] = []
    for c in data.columns:
        fmt = _number_format(data, c)
        template = None
        if fmt is not None:
            template = WriteOnlyCell(ws)
            template.number_format = fmt
        templates.append((c.key, template))

    tz = data.timezone
    for row in data.rows:
        values: list[Any] = []
        for key, template in templates:
            value = _excel_value(row.get(key), tz)
            if template is not None and isinstance(value, (Decimal, datetime)):
                template.value = value  # written immediately by append(): safe to reuse
                values.append(template)
            else:
                values.append(value)
        ws.append(values)
    wb.save(path)
    return path
