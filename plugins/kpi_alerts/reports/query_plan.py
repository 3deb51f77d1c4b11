"""Which Cube queries a report asks, planned before any answer: the previous period's series of its KPI,
the KPI alone (totals), and the period pair (both periods in one query when the rows are a plain time
series). A run sends what it knows in advance in one request; :mod:`kpi_alerts.reports.model` builds the
report from the answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kpi_alerts.kpi_data import CellValue, KpiData
from kpi_alerts.reports.formatting import to_local
from kpi_alerts.reports.periods import DateRange, query_date_range, resolve_date_range, with_date_range

_QUERY_KEYS_DROPPED_FOR_TOTALS = ("dimensions", "order", "limit", "offset", "total", "ungrouped")


def kpi_query(query: Mapping[str, Any], kpi_key: str) -> dict[str, Any]:
    """``query`` reduced to the KPI alone, without breakdown, order or paging (totals and the previous
    period are asked this way)."""
    base = {k: v for k, v in query.items() if k not in _QUERY_KEYS_DROPPED_FOR_TOTALS}
    base.pop("timezone", None)
    base.pop("renewQuery", None)
    base["measures"] = [kpi_key]
    return base


def previous_series_query(query: Mapping[str, Any], kpi_key: str, date_range: DateRange) -> dict[str, Any]:
    """The KPI over the range before ``date_range``, same granularity: the report's change and its
    chart's faint line."""
    return with_date_range(kpi_query(query, kpi_key), date_range.previous(), granularity=True)


def expected_report_queries(query: Mapping[str, Any], timezone: str, now: datetime) -> list[dict[str, Any]]:
    """The queries a scheduled report will ask besides its own, as far as they are known before its data
    arrives: the previous range's series of its first measure, when the query has a date range and a
    granularity. A run sends them with the alert's query in one request; a wrong guess costs one query."""
    measures = query.get("measures") or []
    granular = any(
        isinstance(td, Mapping) and td.get("granularity") for td in query.get("timeDimensions") or ()
    )
    date_range = resolve_date_range(query_date_range(query), timezone, now)
    if not measures or not granular or date_range is None:
        return []
    return [previous_series_query(query, str(measures[0]), date_range)]


#: Granularities whose buckets never straddle a day, so a period of whole days is a run of whole buckets.
_WITHIN_A_DAY = frozenset({"second", "minute", "hour", "day"})
#: Most buckets a day can hold, per granularity (25 hours on the day a clock goes back).
_BUCKETS_PER_DAY = {"second": 90_000, "minute": 1_500, "hour": 25, "day": 1}
#: A pair asks for at most this many rows with a limit of its own (Cube's default limit is 10,000);
#: a query with its own limit is sent in one page, with no paging order for Cube to sort by.
_PAIR_LIMIT_MAX = 5_000
#: Query keys that make a row depend on more than its bucket (or cut the rows): then no period pair.
_KEYS_AGAINST_A_PAIR = ("dimensions", "limit", "offset", "total", "ungrouped")


@dataclass(frozen=True)
class PeriodPair:
    """One Cube query whose rows are a report's own rows and the previous period's series of its KPI.

    A report asks for its period and for the previous one (:func:`previous_series_query`). When the
    query is a plain time series (one time dimension bucketed within a day, no breakdown, no limit), the
    two periods are adjacent runs of the same buckets: one query over both gives every row of each,
    exactly, and Cube works once instead of twice. :meth:`split` gives back what each query would have
    returned. The report's range is resolved here (as :class:`_Builder` resolves it for the previous
    period), so both periods come from one reading of the clock.
    """

    query: dict[str, Any]
    current_query: Mapping[str, Any]
    previous_query: dict[str, Any]
    current_range: DateRange
    previous_range: DateRange
    time_key: str
    kpi_key: str

    def split(self, data: KpiData) -> tuple[KpiData, KpiData]:
        """``data`` (the answer to :attr:`query`) as the answers to the report's query and the previous one."""
        tz = data.timezone
        current: list[Mapping[str, CellValue]] = []
        previous: list[tuple[datetime, Mapping[str, CellValue]]] = []
        for row in data.rows:
            bucket = row.get(self.time_key)
            if not isinstance(bucket, datetime):
                continue
            day = to_local(bucket, tz).date()
            if self.current_range.start <= day <= self.current_range.end:
                current.append(row)
            elif self.previous_range.start <= day <= self.previous_range.end:
                previous.append((bucket, {self.time_key: bucket, self.kpi_key: row.get(self.kpi_key)}))
        previous.sort(key=lambda pair: pair[0])  # the previous query's own order: by bucket
        # the report's query as sent: the pair's, without its limit, over the report's own range
        sent = {k: v for k, v in data.query.items() if k != "limit"}
        sent["timeDimensions"] = self.current_query.get("timeDimensions")
        columns = tuple(c for c in data.columns if c.key in (self.time_key, self.kpi_key))
        return (
            dataclasses.replace(data, rows=tuple(current), query=sent),
            KpiData(columns, tuple(row for _, row in previous), tz, {**self.previous_query, "timezone": tz}),
        )


def period_pair(query: Mapping[str, Any], timezone: str, now: datetime) -> PeriodPair | None:
    """The :class:`PeriodPair` of a report's query at ``now``, or None when its rows are not a plain
    time series of whole days (then the two periods are asked as two queries)."""
    measures = query.get("measures") or []
    tds = query.get("timeDimensions") or []
    if not measures or len(tds) != 1 or not isinstance(tds[0], Mapping):
        return None
    td = tds[0]
    if td.get("granularity") not in _WITHIN_A_DAY or td.get("compareDateRange") is not None:
        return None
    if any(query.get(key) for key in _KEYS_AGAINST_A_PAIR):
        return None
    current = resolve_date_range(query_date_range(query), timezone, now)
    if current is None:
        return None
    previous = current.previous()
    both = DateRange(previous.start, current.end, current.unit, current.count)
    kpi = str(measures[0])
    merged = with_date_range(query, both, granularity=True)
    most_rows = both.days * _BUCKETS_PER_DAY[td["granularity"]]  # one row per bucket: no breakdown
    if most_rows <= _PAIR_LIMIT_MAX:
        merged["limit"] = most_rows
    return PeriodPair(
        query=merged,
        current_query=query,
        previous_query=previous_series_query(query, kpi, current),
        current_range=current,
        previous_range=previous,
        time_key=f"{td['dimension']}.{td['granularity']}",
        kpi_key=kpi,
    )
