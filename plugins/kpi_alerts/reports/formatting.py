"""Turning cells into text and naming things: shared by every renderer and by the e-mail.

One place decides how a value looks (dates in the report's timezone, numbers by Cube's format), so a
CSV, a workbook, a PDF and an e-mail of the same data never disagree. Heavy imports stay inside
functions: importing :mod:`kpi_alerts.reports` must stay cheap for the DAG processor.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from kpi_alerts.kpi_data import CellValue, Column, KpiData
from kpi_alerts.report_context import ReportContext

if TYPE_CHECKING:
    import jinja2

#: Cube granularities; those from ``day`` up are shown as a date without a time of day.
GRANULARITIES = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
DATE_GRANULARITIES = frozenset(GRANULARITIES[3:])
#: OWASP CSV-injection triggers: a spreadsheet would evaluate a cell starting with one of these.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


def templates_dir() -> Path:
    """``include/templates`` of the deployment (``$KPI_ALERTS_TEMPLATES_DIR`` overrides it).

    The package lives in ``<root>/plugins/kpi_alerts`` both in the repo and under ``$AIRFLOW_HOME``,
    so ``<root>/include/templates`` is found without configuration.
    """
    override = os.environ.get("KPI_ALERTS_TEMPLATES_DIR")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[3] / "include" / "templates"


@functools.cache
def _template_env(folder: Path) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["single_line"] = single_line
    return env


def template_env() -> jinja2.Environment:
    """The Jinja2 environment for ``include/templates``: autoescape on for HTML, strict undefined."""
    return _template_env(templates_dir())


def single_line(text: object) -> str:
    """Control characters (CR, LF, tab, NUL, U+2028...) become one space: safe in headers and titles."""
    return " ".join(_CONTROL.sub(" ", str(text)).split())


def slug(text: str, *, max_length: int = 60) -> str:
    """ASCII ``lower-case-words`` for filenames and headers; ``report`` when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _SLUG_JUNK.sub("-", ascii_text.lower()).strip("-")
    return cleaned[:max_length].rstrip("-") or "report"


def local_date(moment: datetime, timezone: str) -> date:
    """The calendar date of an instant in ``timezone`` (a naive instant is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(ZoneInfo(timezone)).date()


def granularity(data: KpiData, column: Column) -> str | None:
    """The granularity of a time dimension: from the member key (``x.created_at.day``) or the query."""
    last = column.key.rsplit(".", 1)[-1]
    if last in GRANULARITIES:
        return last
    for td in data.query.get("timeDimensions", ()) or ():
        if isinstance(td, dict) and td.get("dimension") == column.key and td.get("granularity"):
            return str(td["granularity"])
    return None


def is_date_only(data: KpiData, column: Column) -> bool:
    return granularity(data, column) in DATE_GRANULARITIES


def to_local(value: datetime, timezone: str) -> datetime:
    """An aware datetime converted to the report's timezone; naive ones are already local."""
    if value.tzinfo is None:
        return value
    return value.astimezone(ZoneInfo(timezone))


def neutralise_formula(text: str) -> str:
    """Prefix a quote to text a spreadsheet would evaluate (OWASP CSV injection guidance)."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _grouped(value: Decimal, places: int | None) -> str:
    if places is None:
        places = 0 if value == value.to_integral_value() else 2
    quantum = Decimal(1).scaleb(-places)
    try:
        value = value.quantize(quantum)
    except InvalidOperation:  # too many digits for the context: show it as it is
        return str(value)
    return f"{value:,.{places}f}"


def format_number(value: Decimal | None, fmt: str | None) -> str:
    """Human text of a measure: ``1,234.50`` (currency), ``12.50%`` (percent), ``1,234``.

    A ``percent`` measure holds a fraction (0.125 shows as 12.50%), the convention of Excel's ``0.00%``
    and of Cube's current data-modeling docs; no currency symbol, since Cube declares none.
    """
    if value is None:
        return "n/a"
    if not value.is_finite():
        return str(value)
    if fmt == "percent":
        return _grouped(value * 100, 2) + "%"
    if fmt == "currency":
        return _grouped(value, 2)
    return _grouped(value, None)


def display_value(value: CellValue, column: Column, data: KpiData) -> str:
    """Human text of any cell, for PDF tables and e-mail bodies."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format_number(value, column.format)
    if isinstance(value, datetime):
        local = to_local(value, data.timezone)
        if column.kind == "time_dimension" and is_date_only(data, column):
            return local.date().isoformat()
        return local.strftime("%Y-%m-%d %H:%M")
    return str(value)


def kpi_headline(ctx: ReportContext, data: KpiData | None) -> tuple[str, str, str | None]:
    """(label, value text, note) of the KPI: the checked value, else the only or latest row's.

    The checks set ``ctx.kpi_value`` for thresholds; a plain scheduled report may not, and then the
    most recent bucket is what a reader looks for first (the note says which bucket it is).
    """
    kpi = ctx.kpi or (data.measures[0] if data is not None and data.measures else None)
    label = (kpi.title if kpi else None) or "KPI"
    fmt = kpi.format if kpi else None
    if ctx.kpi_value is not None or kpi is None or data is None or not data.rows:
        return label, format_number(ctx.kpi_value, fmt), None
    time_col = data.time_dimension
    if len(data.rows) == 1 or time_col is None:
        value = data.rows[0].get(kpi.key) if len(data.rows) == 1 else None
        return label, format_number(value if isinstance(value, Decimal) else None, fmt), None
    dated = [
        (r[time_col.key], r.get(kpi.key))
        for r in data.rows
        if isinstance(r.get(time_col.key), datetime) and isinstance(r.get(kpi.key), Decimal)
    ]
    if not dated:
        return label, format_number(None, fmt), None
    when, value = max(dated, key=lambda p: p[0])  # type: ignore[arg-type,return-value]
    note = "latest: " + display_value(when, time_col, data)
    return label, format_number(value if isinstance(value, Decimal) else None, fmt), note
