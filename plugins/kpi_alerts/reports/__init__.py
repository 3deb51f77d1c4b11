"""Report attachments (CSV, Excel, PDF) rendered from a :class:`~kpi_alerts.reports.model.ReportModel`.

Plain Python, no Airflow. openpyxl/reportlab/cairo/Babel are imported inside the functions that
need them, so importing this package costs nothing at DAG parse time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.reports.csv_report import render_csv
from kpi_alerts.reports.excel_report import render_excel
from kpi_alerts.reports.formatting import slug
from kpi_alerts.reports.model import ReportModel, build_report
from kpi_alerts.reports.pdf_report import render_pdf
from kpi_alerts.vocabulary import AttachmentKind

EXTENSIONS: dict[str, str] = {kind.value: kind.extension for kind in AttachmentKind}
MIME_TYPES: dict[str, str] = {kind.value: kind.mime_type for kind in AttachmentKind}

__all__ = [
    "Attachment",
    "AttachmentKind",
    "ReportModel",
    "attachment_filename",
    "build_report",
    "render_attachment",
    "render_csv",
    "render_excel",
    "render_pdf",
]


@dataclass(frozen=True)
class Attachment:
    """A rendered file ready to attach: ``filename`` is what the recipient sees."""

    path: Path
    filename: str
    mime_type: str
    size: int


def attachment_filename(kind: str, report: ReportModel) -> str:
    """``<alert-name-slug>-<YYYY-MM-DD>.<ext>``, the date being the slot's date in the alert's timezone."""
    if kind not in EXTENSIONS:
        raise AlertValidationError(f"unknown attachment type {kind!r}; expected one of {sorted(EXTENSIONS)}")
    return f"{slug(report.alert_name)}-{report.report_date}.{EXTENSIONS[kind]}"


def render_attachment(kind: AttachmentKind, report: ReportModel, dest_dir: Path) -> Attachment:
    """Render the report as ``kind`` into ``dest_dir``.

    The file is written under a temporary name and renamed when complete, so a crash or a retry
    never leaves a half-written report under the final name.
    """
    filename = attachment_filename(kind, report)  # validates kind first
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    renderers: dict[str, Callable[[Path], Path]] = {
        "csv": lambda p: render_csv(report, p),
        "excel": lambda p: render_excel(report, p),
        "pdf": lambda p: render_pdf(report, p),
    }
    try:
        renderers[kind](tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return Attachment(path=final, filename=filename, mime_type=MIME_TYPES[kind], size=final.stat().st_size)
