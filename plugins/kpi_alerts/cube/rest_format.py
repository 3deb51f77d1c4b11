"""The Cube.js REST format without the HTTP: queries (validation against ``/v1/meta``, timezone,
stable paging order) and results (``/load`` rows typed as :class:`~kpi_alerts.kpi_data.KpiData`).

Validation runs before a query is sent (and when an alert is created), so an alert's owner reads
"unknown member 'orders.nope' (did you mean 'orders.count'?)" instead of a Cube stack trace.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from kpi_alerts.errors import AlertValidationError, PermanentAlertError
from kpi_alerts.kpi_data import CellValue, Column, ColumnKind, KpiData
from kpi_alerts.scheduling.timezones import zone
from kpi_alerts.vocabulary import GRANULARITIES

FILTER_OPERATORS = frozenset(
    {
        "equals", "notEquals", "contains", "notContains", "startsWith", "notStartsWith", "endsWith",
        "notEndsWith", "in", "notIn", "gt", "gte", "lt", "lte", "set", "notSet", "inDateRange",
        "notInDateRange", "onTheDate", "beforeDate", "beforeOrOnDate", "afterDate", "afterOrOnDate",
        "measureFilter",
    }
)  # fmt: skip
QUERY_KEYS = frozenset(
    {
        "measures", "dimensions", "filters", "timeDimensions", "order", "segments", "timezone", "limit",
        "offset", "total", "renewQuery", "ungrouped", "responseFormat",
    }
)  # fmt: skip
MAX_LIMIT = 50_000  # Cube's CUBEJS_DB_QUERY_LIMIT default
#: A dashboard graph's query is small; a larger one is a mistake or an attack (gate queries: 16 KB).
MAX_QUERY_CHARS = 65_536


def check_query_shape(query: object) -> None:
    """The query's shape as Cube's REST API requires it, without asking Cube (no ``/v1/meta``).

    Run when an alert is created and again before each run, so a query stored by plain SQL fails
    with a readable, permanent reason instead of an internal error or a Cube 400 mid-run.

    :raises AlertValidationError: naming every problem found.
    """
    if not isinstance(query, Mapping):
        raise AlertValidationError(f"cube_query must be a JSON object, got {type(query).__name__}")
    try:
        size = len(json.dumps(query, allow_nan=False))
    except (TypeError, ValueError, RecursionError, OverflowError):
        raise AlertValidationError("cube_query must be plain JSON, not nested too deeply") from None
    if size > MAX_QUERY_CHARS:
        raise AlertValidationError(
            f"cube_query is {size:,} characters; at most {MAX_QUERY_CHARS:,} are allowed"
        )
    problems: list[str] = []
    unknown = sorted(set(query) - QUERY_KEYS)
    if unknown:
        problems.append(f"unknown query keys: {', '.join(map(str, unknown))[:200]}")
    measures = query.get("measures")
    if not isinstance(measures, list) or not measures:
        problems.append('"measures" must be a non-empty list of member names like "orders.count"')
    for key in ("measures", "dimensions", "segments"):
        value = query.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            problems.append(f'"{key}" must be a list of member names like "orders.count"')
    for key in ("timeDimensions", "filters"):
        value = query.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value)
        ):
            problems.append(f'"{key}" must be a list of objects')
    for i, td in enumerate(query.get("timeDimensions") or ()):
        if isinstance(td, Mapping) and not isinstance(td.get("dimension"), str):
            problems.append(f'timeDimensions[{i}] needs a "dimension" member name')
    if problems:
        raise AlertValidationError("invalid Cube query: " + "; ".join(problems))


def with_timezone(query: Mapping[str, Any], timezone: str) -> dict[str, Any]:
    """A copy of ``query`` that runs in ``timezone``: it decides bucketing and relative date ranges."""
    zone(timezone)
    return {**query, "timezone": timezone}


def _members(meta: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``{kind: {member: type}}`` for kinds measure, dimension, segment."""
    found: dict[str, dict[str, str]] = {"measure": {}, "dimension": {}, "segment": {}}
    for cube in meta.get("cubes", []):
        for kind, key in (("measure", "measures"), ("dimension", "dimensions"), ("segment", "segments")):
            for member in cube.get(key, []):
                found[kind][member["name"]] = member.get("type", "")
    return found


class _Checker:
    """Collects every problem of one query, so the owner fixes them in one go."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.members = _members(meta)
        self.problems: list[str] = []

    def member(self, name: object, kind: str, where: str) -> str | None:
        """Check that ``name`` is a member of ``kind``; return its type."""
        if not isinstance(name, str):
            self.problems.append(f"{where}: expected a member name like 'cube.member', got {name!r}")
            return None
        if name in self.members[kind]:
            return self.members[kind][name]
        other = next((k for k, names in self.members.items() if name in names), None)
        if other is not None:
            self.problems.append(f"{where}: {name!r} is a {other}, not a {kind}")
            return None
        everything = [n for names in self.members.values() for n in names]
        close = difflib.get_close_matches(name, everything, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.problems.append(f"{where}: unknown member {name!r}{hint}")
        return None

    def names(self, value: object, where: str) -> list[object]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.append(f"{where} must be a list, got {type(value).__name__}")
            return []
        return value

    def time_dimension(self, td: object, index: int) -> None:
        where = f"timeDimensions[{index}]"
        if not isinstance(td, Mapping):
            self.problems.append(f"{where} must be an object")
            return
        kind = self.member(td.get("dimension"), "dimension", where)
        if kind is not None and kind != "time":
            self.problems.append(f"{where}: {td['dimension']!r} is a {kind} dimension, not a time dimension")
        granularity = td.get("granularity")
        if granularity is not None and granularity not in GRANULARITIES:
            self.problems.append(
                f"{where}: granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}"
            )
        if "dateRange" in td:
            self.date_range(td["dateRange"], where)

    def date_range(self, value: object, where: str) -> None:
        if isinstance(value, str) and value.strip():
            return  # a phrase such as "last 7 days"; Cube parses it in the query's timezone
        if isinstance(value, list) and 1 <= len(value) <= 2 and all(isinstance(v, str) for v in value):
            for bound in value:
                try:
                    datetime.fromisoformat(bound)
                except ValueError:
                    self.problems.append(f"{where}: dateRange bound {bound!r} is not an ISO date")
            return
        self.problems.append(
            f"{where}: dateRange must be [start, end] ISO dates or a phrase like 'last 7 days', got {value!r}"
        )

    def filters(self, filters: Sequence[object], where: str) -> None:
        for i, item in enumerate(filters):
            at = f"{where}[{i}]"
            if not isinstance(item, Mapping):
                self.problems.append(f"{at} must be an object")
            elif "and" in item or "or" in item:
                key = "and" if "and" in item else "or"
                self.filters(self.names(item[key], f"{at}.{key}"), f"{at}.{key}")
            else:
                self.one_filter(item, at)

    def one_filter(self, item: Mapping[str, Any], where: str) -> None:
        name = item.get("member", item.get("dimension"))
        if name in self.members["measure"]:
            pass  # filtering on a measure is a HAVING clause: allowed
        else:
            self.member(name, "dimension", where)
        operator = item.get("operator")
        if operator not in FILTER_OPERATORS:
            self.problems.append(f"{where}: unknown filter operator {operator!r}")
        values = item.get("values", [])
        if not isinstance(values, list) or not all(
            v is None or isinstance(v, str | int | float | bool) for v in values
        ):
            self.problems.append(f"{where}: values must be a list of strings, got {values!r}")
        elif operator not in ("set", "notSet") and not values:
            self.problems.append(f"{where}: operator {operator!r} needs values")


def validate_cube_query(query: object, meta: Mapping[str, Any], *, kpi_measure: str | None = None) -> None:
    """Check a Cube query against the server's ``/v1/meta``; raise one error listing every problem.

    :param query: the alert's ``cube_query``.
    :param meta: the ``/v1/meta`` answer for the alert's organization.
    :param kpi_measure: the measure the alert evaluates, which must be one of the query's measures.
    :raises AlertValidationError: with a message meant for the alert's owner.
    """
    if not isinstance(query, Mapping):
        raise AlertValidationError(f"Cube query must be a JSON object, got {type(query).__name__}")
    check = _Checker(meta)
    unknown_keys = sorted(set(query) - QUERY_KEYS)
    if unknown_keys:
        check.problems.append(f"unknown query keys: {', '.join(unknown_keys)}")
    measures = check.names(query.get("measures"), "measures")
    if not measures:
        check.problems.append("the query has no measures: a KPI needs at least one")
    for i, name in enumerate(measures):
        check.member(name, "measure", f"measures[{i}]")
    for i, name in enumerate(check.names(query.get("dimensions"), "dimensions")):
        base, _, granularity = str(name).rpartition(".") if str(name).count(".") == 2 else (name, "", "")
        check.member(base, "dimension", f"dimensions[{i}]")
        if granularity and granularity not in GRANULARITIES:
            check.problems.append(f"dimensions[{i}]: granularity {granularity!r} is not valid")
    for i, name in enumerate(check.names(query.get("segments"), "segments")):
        check.member(name, "segment", f"segments[{i}]")
    for i, td in enumerate(check.names(query.get("timeDimensions"), "timeDimensions")):
        check.time_dimension(td, i)
    check.filters(check.names(query.get("filters"), "filters"), "filters")
    _check_paging_and_order(check, query)
    if "timezone" in query:
        try:
            zone(query["timezone"])
        except AlertValidationError as exc:
            check.problems.append(str(exc))
    if query.get("responseFormat", "default") != "default":
        check.problems.append("responseFormat must be 'default'")
    if kpi_measure is not None and kpi_measure not in measures:
        if kpi_measure in check.members["measure"]:
            check.problems.append(f"the KPI measure {kpi_measure!r} is not among the query's measures")
        else:
            check.member(kpi_measure, "measure", "KPI measure")
    if check.problems:
        raise AlertValidationError("invalid Cube query: " + "; ".join(check.problems))


def _check_paging_and_order(check: _Checker, query: Mapping[str, Any]) -> None:
    for key, low in (("limit", 1), ("offset", 0)):
        value = query.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            check.problems.append(f"{key} must be an integer >= {low}, got {value!r}")
    limit = query.get("limit")
    if isinstance(limit, int) and limit > MAX_LIMIT:
        check.problems.append(f"limit {limit} exceeds Cube's maximum of {MAX_LIMIT}")
    order = query.get("order")
    pairs = order_pairs(order) if isinstance(order, Mapping | list) else None
    if order is not None and pairs is None:
        check.problems.append(
            f"order must be {{member: 'asc'|'desc'}} or [[member, 'asc'|'desc'], ...], got {order!r}"
        )
    for member, direction in pairs or []:
        if member not in check.members["measure"]:
            check.member(member, "dimension", "order")
        if direction not in ("asc", "desc"):
            check.problems.append(
                f"order: direction for {member!r} must be 'asc' or 'desc', got {direction!r}"
            )


def order_pairs(order: object) -> list[tuple[str, str]] | None:
    """Cube's two order forms as ``[(member, direction)]``; None when malformed."""
    if isinstance(order, Mapping):
        return [(str(k), str(v)) for k, v in order.items()]
    if isinstance(order, list) and all(isinstance(p, list | tuple) and len(p) == 2 for p in order):
        return [(str(p[0]), str(p[1])) for p in order]
    return None


def total_order(query: Mapping[str, Any]) -> list[list[str]]:
    """An ``order`` that makes limit/offset paging stable: Cube's own order, ties broken by every dimension.

    Cube orders by the first granular time dimension (or the first measure, descending), which leaves
    ties between rows of one bucket: pages fetched with ``offset`` could then skip or repeat rows.
    """
    pairs = order_pairs(query.get("order")) or []
    time_dims = [td["dimension"] for td in query.get("timeDimensions", []) if td.get("granularity")]
    dims = [str(d) for d in query.get("dimensions", [])]
    measures = [str(m) for m in query.get("measures", [])]
    if not pairs:
        if time_dims:
            pairs = [(time_dims[0], "asc")]
        elif measures and dims:
            pairs = [(measures[0], "desc")]
    seen = {member for member, _ in pairs}
    for member in [*time_dims, *dims]:
        if member not in seen and member.count(".") == 1:
            pairs.append((member, "asc"))
            seen.add(member)
    return [[member, direction] for member, direction in pairs]


def refresh_time(*answers: Mapping[str, Any]) -> datetime | None:
    """The oldest ``lastRefreshTime`` of a ``/load`` answer's pages (ISO with ``Z``), as an aware UTC
    datetime; None when Cube did not say (or said something that is not a time)."""
    times = []
    for answer in answers:
        value = answer.get("lastRefreshTime")
        if not isinstance(value, str):
            continue
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            continue
        times.append(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC))
    return min(times) if times else None


def kpi_data_from_result(
    query: Mapping[str, Any],
    annotation: Mapping[str, Any],
    rows: list[Mapping[str, Any]],
    refreshed_at: datetime | None = None,
) -> KpiData:
    """Cube's ``data`` rows as :class:`KpiData`: columns in display order (time dimensions,
    dimensions, measures) from the annotation; measures as Decimal, times as aware datetimes.

    :param query: the query as sent (its member lists decide the columns, its timezone the zone).
    :param annotation: the ``annotation`` of the ``/load`` answer.
    :param rows: the ``data`` rows, possibly from several pages.
    :raises PermanentAlertError: when a measure is not numeric (a model defect, not a Cube outage).
    """
    timezone = str(query.get("timezone") or "UTC")
    tz = zone(timezone)
    keys: list[tuple[str, ColumnKind, str]] = [
        (f"{td['dimension']}.{td['granularity']}", "time_dimension", "timeDimensions")
        for td in query.get("timeDimensions", [])
        if td.get("granularity")
    ]
    keys += [(str(d), "dimension", "dimensions") for d in query.get("dimensions", [])]
    keys += [(str(m), "measure", "measures") for m in query.get("measures", [])]
    columns = []
    for key, kind, section in keys:
        info = annotation.get(section, {}).get(key) or annotation.get("timeDimensions", {}).get(key) or {}
        columns.append(
            Column(
                key=key,
                title=info.get("title") or key,
                kind=kind,
                type=info.get("type") or ("time" if kind == "time_dimension" else "string"),
                format=info.get("format"),
                short_title=info.get("shortTitle"),
            )
        )
    typed = tuple({c.key: _cell(row.get(c.key), c, tz) for c in columns} for row in rows)
    return KpiData(
        columns=tuple(columns), rows=typed, timezone=timezone, query=dict(query), refreshed_at=refreshed_at
    )


def _cell(value: Any, column: Column, zone: ZoneInfo) -> CellValue:
    if value is None:
        return None
    if column.kind == "measure":
        return cube_number(value, column.key)
    if column.type == "time":
        # Cube sends local wall time without an offset (2026-11-22T00:00:00.000) in the query's zone. Its
        # buckets are truncated local times, so a DST fall-back hour is one bucket: fold=0 is right.
        try:
            return datetime.fromisoformat(str(value)).replace(tzinfo=zone)
        except ValueError:
            raise PermanentAlertError(
                f"Cube returned {_shown(value)} for {column.key}, which is not a date and time"
            ) from None
    if column.type == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return str(value)


#: A number as Cube's JSON writes one: no digit separators (``1_000``), no hex, no spaces.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NOT_A_NUMBER = frozenset(
    {"nan", "snan", "-nan", "+nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf"}
)
#: Larger magnitudes are no KPI (a sum of every cent ever is below 10^21) and break decimal arithmetic.
MAX_MAGNITUDE = Decimal(10) ** 21


def cube_number(value: object, member: str) -> Decimal:
    """A measure's value as Cube sends it (a string, sometimes a JSON number) as a Decimal.

    ``NaN`` and infinities (``sNaN`` too) become a quiet ``NaN`` — no value, which checks treat as no
    data and reports leave empty with a note; ``-0`` is 0. Anything else that is not a plain decimal
    number (``1_000``, ``0x10``, ``true``), or whose magnitude reaches 10^21 (``1e308``), is refused
    with the member and the value named.
    """
    text = (
        str(value).strip() if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    )
    if text is not None and text.lower() in _NOT_A_NUMBER:
        return Decimal("NaN")
    if text is None or not _NUMBER.fullmatch(text):
        raise PermanentAlertError(f"Cube returned {_shown(value)} for {member}, which is not a number")
    number = Decimal(text)
    if abs(number) >= MAX_MAGNITUDE:
        raise PermanentAlertError(
            f"Cube returned {_shown(value)} for {member}: beyond any KPI (at most ±10^21), so it is not used"
        )
    return number.copy_abs() if number.is_zero() else number  # "-0" is 0


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
