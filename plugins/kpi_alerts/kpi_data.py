"""The typed result of a Cube.js query: what fetching produces and what checks and reports consume."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

ColumnKind = Literal["measure", "dimension", "time_dimension"]
CellValue = Decimal | datetime | str | bool | None


@dataclass(frozen=True)
class Column:
    """One column of a result, described by Cube's annotation.

    :param key: the Cube member as it appears in rows, e.g. ``orders.total_amount`` or
        ``orders.created_at.day`` for a time dimension with a granularity.
    :param title: the human title from the annotation (``Orders Total Amount``): report headers.
    :param kind: measure, dimension or time dimension.
    :param type: Cube's type (``number``, ``string``, ``time``, ``boolean``, ``count``, ``sum``...).
    :param format: Cube's format when declared (``currency``, ``percent``...), else None.
    :param short_title: the member's own title without the cube's (``Revenue``), from Cube's meta.
    :param currency: the ISO code a currency measure declares in its ``meta`` (``meta: {currency: USD}``).
    :param percent_scale: whether a percent measure holds a ``fraction`` or a ``percent`` (its ``meta``).
    """

    key: str
    title: str
    kind: ColumnKind
    type: str = "string"
    format: str | None = None
    short_title: str | None = None
    currency: str | None = None
    percent_scale: str | None = None


@dataclass(frozen=True)
class KpiData:
    """Rows of a Cube.js result with measures as ``Decimal`` and time dimensions as aware datetimes.

    :param columns: in display order (time dimensions, dimensions, then measures).
    :param rows: one mapping per row, keyed by :attr:`Column.key`; absent buckets are absent rows.
    :param timezone: the IANA timezone the query ran in (the alert's timezone).
    :param query: the Cube query that produced the rows.
    :param refreshed_at: when Cube last refreshed the data it answered from (its ``lastRefreshTime``:
        a pre-aggregation's build, or the query cache's refresh), None when it did not say. Reports that
        wait for fresh data read it (:mod:`kpi_alerts.conditions.freshness`).
    """

    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, CellValue], ...]
    timezone: str
    query: Mapping[str, Any] = field(default_factory=dict)
    refreshed_at: datetime | None = None

    @property
    def measures(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.kind == "measure")

    @property
    def time_dimension(self) -> Column | None:
        return next((c for c in self.columns if c.kind == "time_dimension"), None)

    def column(self, key: str) -> Column:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(key)

    def digest(self) -> str:
        """A fingerprint of the rows (SHA-256 of their canonical JSON): equal data, equal digest; the
        order Cube returned the rows in counts, as it does in the report."""
        rows = [{k: _canonical(v) for k, v in sorted(row.items())} for row in self.rows]
        return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def _canonical(value: CellValue) -> str | None:
    """A cell as text that does not depend on how it was written (``10`` and ``10.00`` are one number)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return str(value.normalize()) if value.is_finite() else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
