"""Turning cells into text and naming things: shared by every renderer and by the e-mail.

One place decides how a value looks (dates in the report's timezone, numbers by Cube's format), so a
CSV, a workbook, a PDF and an e-mail of the same data never disagree. Heavy imports stay inside
functions: importing :mod:`kpi_alerts.reports` must stay cheap for the DAG processor.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from kpi_alerts.conditions.thresholds import kpi_value
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import CellValue, Column, KpiData
from kpi_alerts.paths import TEMPLATES_DIR
from kpi_alerts.reports.context import ReportContext
from kpi_alerts.vocabulary import ADDITIVE_AGGREGATIONS, DATE_GRANULARITIES, GRANULARITIES

if TYPE_CHECKING:
    import jinja2

    from kpi_alerts.conditions.thresholds import KpiReading

#: OWASP CSV-injection triggers: a spreadsheet would evaluate a cell starting with one of these.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


def templates_dir() -> Path:
    """``include/templates`` of the deployment (see :mod:`kpi_alerts.paths`)."""
    return TEMPLATES_DIR


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


def kpi_headline(ctx: ReportContext, data: KpiData | None) -> tuple[str, str | None, str | None]:
    """(label, value text, note) of the KPI shown above the report; value None means no headline.

    Threshold messages show the value the check computed (``ctx.kpi_value``). A scheduled report shows
    the KPI by the rule the checks use (docs/conditions.md): the latest *complete* period of a time
    series, and the note names that period so "42,953.00" under "Period: 2026-11-01 to 2026-11-14"
    is never read as the total of the range; before any period is complete (e.g. ``today``), the
    latest one so far. Rows that cannot make one value (a breakdown of a measure that cannot be added
    up, such as an average) give no headline: the table shows them, where one row's value shown as
    "the KPI" would mislead.
    """
    kpi = ctx.kpi or (data.measures[0] if data is not None and data.measures else None)
    label = (kpi.title if kpi else None) or "KPI"
    fmt = kpi.format if kpi else None
    if ctx.kind != "report" or kpi is None or data is None or not data.rows:
        return label, format_number(ctx.kpi_value, fmt), None
    reading = _reading(data, kpi, ctx.slot)
    time_col = data.time_dimension
    if ctx.kpi_value is not None:  # the pipeline's value: name its period when it is the one read here
        same = reading is not None and reading.value == ctx.kpi_value
        note = _period_note(reading.bucket_start, data, "latest complete") if same and reading else None
        return label, format_number(ctx.kpi_value, fmt), note
    if reading is not None and reading.value is not None:
        return (
            label,
            format_number(reading.value, fmt),
            _period_note(reading.bucket_start, data, "latest complete"),
        )
    if time_col is None:
        return label, None, None
    when, value = _latest_period(data, kpi, time_col)
    if value is None:
        return label, None, None
    return label, format_number(value, fmt), _period_note(when, data, "latest")


def _reading(data: KpiData, kpi: Column, slot: datetime) -> KpiReading | None:
    if slot.utcoffset() is None:
        slot = slot.replace(tzinfo=ZoneInfo("UTC"))
    try:
        return kpi_value(data, kpi.key, now=slot)
    except (AlertValidationError, KeyError):
        return None


def _latest_period(data: KpiData, kpi: Column, time_col: Column) -> tuple[datetime | None, Decimal | None]:
    """The most recent period's value: its only row, or the total of a count/sum over several rows."""
    by_time: dict[datetime, list[CellValue]] = {}
    for row in data.rows:
        start = row.get(time_col.key)
        if isinstance(start, datetime):
            by_time.setdefault(start, []).append(row.get(kpi.key))
    if not by_time:
        return None, None
    when = max(by_time)
    values = [v for v in by_time[when] if isinstance(v, Decimal) and v.is_finite()]
    if len(values) != len(by_time[when]):
        return None, None
    if len(values) == 1:
        return when, values[0]
    if kpi.type in ADDITIVE_AGGREGATIONS:
        return when, sum(values, Decimal(0))
    return None, None


def _period_note(when: datetime | None, data: KpiData, prefix: str) -> str | None:
    """``latest complete day: 2026-11-14``, ``... month: 2026-11``, ``... week: starting 2026-11-09``."""
    time_col = data.time_dimension
    if when is None or time_col is None:
        return None
    unit = granularity(data, time_col)
    local = to_local(when, data.timezone)
    text = {
        "year": f"{local:%Y}",
        "quarter": f"{local:%Y} Q{(local.month - 1) // 3 + 1}",
        "month": f"{local:%Y-%m}",
        "week": f"starting {local:%Y-%m-%d}",
        "day": f"{local:%Y-%m-%d}",
    }.get(unit or "", f"{local:%Y-%m-%d %H:%M}")
    return f"{prefix} {unit or 'period'}: {text}"
