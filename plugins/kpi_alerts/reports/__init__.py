"""Report attachments (CSV, Excel, PDF) rendered from a :class:`~kpi_alerts.reports.model.ReportModel`.

Plain Python, no Airflow. openpyxl/reportlab/cairo/Babel are imported inside the functions that
need them, so importing this package costs nothing at DAG parse time.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

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

    filename: str
    mime_type: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


def attachment_filename(kind: str, report: ReportModel) -> str:
    """``<alert-name-slug>-<YYYY-MM-DD>.<ext>``, the date being the slot's date in the alert's timezone."""
    if kind not in EXTENSIONS:
        raise AlertValidationError(f"unknown attachment type {kind!r}; expected one of {sorted(EXTENSIONS)}")
    return f"{slug(report.alert_name)}-{report.report_date}.{EXTENSIONS[kind]}"


_RENDERERS: dict[str, Callable[[ReportModel, BinaryIO], object]] = {
    "csv": render_csv,
    "excel": render_excel,
    "pdf": render_pdf,
}


def render_attachment(kind: AttachmentKind, report: ReportModel) -> Attachment:
    """Render the report as ``kind``, in memory.

    The message carries the whole file anyway (base64 in the MIME tree), so a file on disk would only
    add a directory, a write, a rename and a read per alert; and there is nothing half-written to
    leave behind when a render fails.
    """
    filename = attachment_filename(kind, report)  # validates kind first
    out = io.BytesIO()
    _RENDERERS[kind](report, out)
    return Attachment(filename=filename, mime_type=MIME_TYPES[kind], content=out.getvalue())
