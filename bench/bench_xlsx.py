"""XLSX writers side by side: CPU per workbook and file size, for a typical and a 100k-row report.

Run from the repo root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_xlsx [--repeats 30]

Candidates, each writing the same workbook (the report model's cells, number formats, the bold
filled frozen header, column widths, formula-safe text):

- ``openpyxl-wo``: :func:`kpi_alerts.reports.excel_report.render_excel` as shipped (write-only mode);
- ``openpyxl``: openpyxl's normal (in-memory) workbook, per-cell styles — the usual way to use it;
- ``xlsxwriter``: XlsxWriter (``constant_memory``), one format object per column, only if installed
  (it is not a dependency; ``pip install xlsxwriter==3.2.9`` to include it).

openpyxl serialises through lxml when it is importable (a pinned dependency for that reason);
``OPENPYXL_LXML=False`` in the environment measures it without.

Printed per case: CPU milliseconds (``time.process_time``) median / min / max over the repeats
(fewer for 100k rows), and the file size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from bench.bench_reports import make_context, make_data  # noqa: E402
from kpi_alerts.reports.excel_report import (  # noqa: E402
    _excel_value,
    _widths,
    clean_sheet_title,
    render_excel,
)
from kpi_alerts.reports.formatting import neutralise_formula  # noqa: E402
from kpi_alerts.reports.model import ReportModel, build_report  # noqa: E402


def openpyxl_normal(report: ReportModel, path: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = clean_sheet_title(report.alert_name)
    for i, width in enumerate(_widths(report), 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    for i, c in enumerate(report.columns, 1):
        cell = ws.cell(row=1, column=i, value=neutralise_formula(c.header))
        cell.font, cell.fill = Font(bold=True, color="FFFFFF"), PatternFill("solid", fgColor="1F4E79")
        cell.alignment = Alignment(vertical="center")
    ws.freeze_panes = "A2"
    tz = report.timezone
    for r, row in enumerate(report.rows, 2):
        for i, c in enumerate(report.columns, 1):
            value = _excel_value(row.get(c.key), tz)
            cell = ws.cell(row=r, column=i, value=value)
            if c.excel_format and isinstance(value, (Decimal, datetime)):
                cell.number_format = c.excel_format
    wb.save(path)
    return path


def xlsxwriter_constant(report: ReportModel, path: Path) -> Path:
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False})
    ws = wb.add_worksheet(clean_sheet_title(report.alert_name))
    header = wb.add_format(
        {"bold": True, "font_color": "#FFFFFF", "bg_color": "#1F4E79", "valign": "vcenter"}
    )
    formats = [
        wb.add_format({"num_format": c.excel_format}) if c.excel_format else None for c in report.columns
    ]
    for i, width in enumerate(_widths(report)):
        ws.set_column(i, i, width)
    ws.freeze_panes(1, 0)
    for i, c in enumerate(report.columns):
        ws.write_string(0, i, neutralise_formula(c.header), header)
    tz = report.timezone
    keys = [c.key for c in report.columns]
    for r, row in enumerate(report.rows, 1):
        for i, key in enumerate(keys):
            value = _excel_value(row.get(key), tz)
            if value is None:
                continue
            if isinstance(value, str):
                ws.write_string(r, i, value)
            elif isinstance(value, bool):
                ws.write_boolean(r, i, value)
            elif isinstance(value, datetime):
                ws.write_datetime(r, i, value, formats[i])
            else:
                ws.write_number(r, i, float(value), formats[i])
    wb.close()
    return path


def candidates() -> dict[str, Callable[[ReportModel, Path], Path]]:
    found: dict[str, Callable[[ReportModel, Path], Path]] = {
        "openpyxl-wo": render_excel,
        "openpyxl": openpyxl_normal,
    }
    try:
        import xlsxwriter  # noqa: F401
    except ImportError:
        pass
    else:
        found["xlsxwriter"] = xlsxwriter_constant
    return found


def measure(render: Callable[[ReportModel, Path], Path], report: ReportModel, repeats: int) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="bench-xlsx-")) / "out.xlsx"
    render(report, out)  # warm-up: imports
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        render(report, out)
        times.append((time.process_time() - c0) * 1000)
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "bytes": out.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=30, help="per case at 12 rows (3 at 100k rows)")
    parser.add_argument("--big", type=int, default=100_000, help="rows of the large report")
    args = parser.parse_args()
    from openpyxl.xml import LXML

    print(f"openpyxl through lxml: {LXML}")
    print(f"{'writer':<13}{'rows':>9}{'CPU ms median':>15}{'min':>10}{'max':>10}{'file KB':>10}")
    for rows, repeats in ((12, args.repeats), (args.big, 3)):
        report = build_report(make_data(rows), make_context())
        for name, render in candidates().items():
            r = measure(render, report, repeats)
            print(
                f"{name:<13}{rows:>9,}{r['median']:>15.1f}{r['min']:>10.1f}{r['max']:>10.1f}"
                f"{r['bytes'] / 1024:>10.1f}",
                flush=True,
            )
    print(f"reproduce: cd {ROOT} && PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_xlsx")


if __name__ == "__main__":
    main()
