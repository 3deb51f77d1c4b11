"""Small shared helpers of the renderers: templates, safe text, slugs, dates in the report's zone.

What a report *says* (headline, units, labels, cell text) is the report model's job
(:mod:`kpi_alerts.reports.model`, :mod:`kpi_alerts.reports.units`). Heavy imports stay inside
functions: importing :mod:`kpi_alerts.reports` must stay cheap for the DAG processor.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

from kpi_alerts.kpi_data import Column, KpiData
from kpi_alerts.paths import TEMPLATES_DIR
from kpi_alerts.vocabulary import DATE_GRANULARITIES, GRANULARITIES

if TYPE_CHECKING:
    import jinja2

#: Where a renderer writes: a file, or a binary stream (a run renders attachments in memory).
Destination = TypeVar("Destination", Path, BinaryIO)
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
        auto_reload=False,  # deployed files: compiled once per process, no stat() per get_template
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
