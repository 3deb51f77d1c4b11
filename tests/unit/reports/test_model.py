"""The report model without Cube: periods, units, the threshold rule's wording, the gate's statement."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from kpi_alerts.conditions.gating_evaluation import GateDecision, GateValue
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import CellValue, Column, KpiData
from kpi_alerts.reports.context import ReportContext
from kpi_alerts.reports.model import build_report
from kpi_alerts.reports.periods import DateRange, resolve_date_range, with_date_range
from kpi_alerts.reports.units import (
    DisplaySettings,
    Unit,
    check_currency,
    check_locale,
    format_plain,
    format_value,
)

DAY = Column("orders.created_at.day", "Orders Created", "time_dimension", "time", short_title="Created")
REVENUE = Column("orders.total_amount", "Orders Revenue", "measure", "sum", "currency", "Revenue", "USD")
AVERAGE = Column("orders.average_amount", "Orders Avg", "measure", "avg", "currency", "Avg", "USD")
TZ = "America/Los_Angeles"
NOW = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)  # 09:00 on 2026-12-02 in Los Angeles


@pytest.mark.parametrize(
    ("phrase", "expected", "previous"),
    [
        ("last 7 days", ("2026-11-25", "2026-12-01"), ("2026-11-18", "2026-11-24")),
        ("yesterday", ("2026-12-01", "2026-12-01"), ("2026-11-30", "2026-11-30")),
        ("today", ("2026-12-02", "2026-12-02"), ("2026-12-01", "2026-12-01")),
        ("this week", ("2026-11-30", "2026-12-06"), ("2026-11-23", "2026-11-29")),  # weeks start on Monday
        ("last week", ("2026-11-23", "2026-11-29"), ("2026-11-16", "2026-11-22")),
        ("last month", ("2026-11-01", "2026-11-30"), ("2026-10-01", "2026-10-31")),
        ("last 3 months", ("2026-09-01", "2026-11-30"), ("2026-06-01", "2026-08-31")),
        ("last quarter", ("2026-07-01", "2026-09-30"), ("2026-04-01", "2026-06-30")),
        (["2026-11-01", "2026-11-14"], ("2026-11-01", "2026-11-14"), ("2026-10-18", "2026-10-31")),
    ],
)
def test_ranges_resolve_like_cube_in_the_alerts_zone(
    phrase: object, expected: tuple[str, str], previous: tuple[str, str]
) -> None:
    got = resolve_date_range(phrase, TZ, NOW)
    assert got is not None
    assert (got.start.isoformat(), got.end.isoformat()) == expected
    before = got.previous()
    assert (before.start.isoformat(), before.end.isoformat()) == previous


def test_the_zone_decides_the_day_and_unknown_phrases_resolve_to_nothing() -> None:
    late = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # still 2026-12-01 in Los Angeles
    la, utc = resolve_date_range("yesterday", TZ, late), resolve_date_range("yesterday", "UTC", late)
    assert (
        la is not None
        and utc is not None
        and la.start == date(2026, 11, 30)
        and utc.start == date(2026, 12, 1)
    )
    assert resolve_date_range("from 3 hours ago to now", TZ, NOW) is None
    assert resolve_date_range(None, TZ, NOW) is None
    assert DateRange(date(2026, 1, 1), date(2026, 1, 7), "day", 7).length_text() == "week"


def test_queries_for_another_range_keep_filters_and_may_drop_granularity() -> None:
    query = {
        "measures": ["m"],
        "filters": [{"member": "x", "operator": "equals", "values": ["1"]}],
        "timeDimensions": [{"dimension": "t", "granularity": "day", "dateRange": "last 7 days"}],
    }
    moved = with_date_range(query, DateRange(date(2026, 1, 1), date(2026, 1, 7)), granularity=False)
    assert moved["timeDimensions"] == [{"dimension": "t", "dateRange": ["2026-01-01", "2026-01-07"]}]
    assert moved["filters"] == query["filters"] and query["timeDimensions"][0]["granularity"] == "day"


def test_units_by_locale() -> None:
    usd, pct, count = Unit("currency", 2, "USD"), Unit("percent", 1), Unit("count", 0)
    assert format_value(Decimal("219795.424"), usd, "en-US") == "$219,795.42"
    assert format_value(Decimal("219795.424"), usd, "de-DE") == "219.795,42\xa0$"
    assert format_plain(Decimal("219795.42"), usd, "en-US", places=0) == "219,795 USD"
    assert format_value(Decimal("0.1234"), pct, "en-US") == "12.3%"
    assert format_value(Decimal("12.34"), Unit("percent", 1, percent_scale="percent"), "en-US") == "12.3%"
    assert format_value(Decimal("1234567"), count, "en-US") == "1,234,567"
    assert usd.excel_format == '#,##0.00 "USD"' and pct.excel_format == "0.0%"
    assert Unit("percent", 1, percent_scale="percent").excel_format == '0.0"%"'
    assert check_locale("fr-CH") == "fr-CH" and check_currency("EUR") == "EUR"
    for bad in ("zz-QQ", "not a locale"):
        with pytest.raises(AlertValidationError):
            check_locale(bad)
    with pytest.raises(AlertValidationError):
        check_currency("XYZ")


def _data(values: list[str], column: Column = REVENUE, query: Mapping[str, Any] | None = None) -> KpiData:
    start = datetime(2026, 11, 25, tzinfo=UTC)
    rows: tuple[dict[str, CellValue], ...] = tuple(
        {DAY.key: start + timedelta(days=i), column.key: Decimal(v)} for i, v in enumerate(values)
    )
    q = query or {
        "measures": [column.key],
        "timeDimensions": [
            {"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 7 days"}
        ],
    }
    return KpiData(columns=(DAY, column), rows=rows, timezone="UTC", query=q)


def _ctx(**changes: Any) -> ReportContext:
    fields: dict[str, Any] = {
        "alert_name": "Weekly revenue",
        "organization_id": 1,
        "timezone": "UTC",
        "slot": NOW,
        "period": "last 7 days",
        "generated_at": NOW,
        **changes,
    }
    return ReportContext(**fields)


def test_a_report_headlines_the_total_and_the_change_from_the_previous_range() -> None:
    seen: list[Mapping[str, Any]] = []

    def fetch(query: Mapping[str, Any]) -> KpiData:
        seen.append(query)
        return _data(["10", "20", "30", "40", "50", "60", "90"], query=query)

    report = build_report(_data(["100"] * 7), _ctx(), fetch=fetch)
    assert report.headline is not None and report.headline.value == Decimal(700)
    assert report.change is not None and report.change.previous == Decimal(300)
    assert report.change.text == "▲ up +400.00 USD (+133.3 %) vs previous week"
    assert report.subject_figure == "700.00 USD (+133.3 % vs previous week)"
    (previous_query,) = seen  # additive: one query for the previous week's days, none for the total
    assert previous_query["timeDimensions"][0]["dateRange"] == ["2026-11-18", "2026-11-24"]
    assert [c.label for c in report.columns] == ["Day", "Revenue"] and report.columns[
        1
    ].header == "Revenue (USD)"
    assert report.chart is not None and report.chart.previous_values == [10, 20, 30, 40, 50, 60, 90]


def test_a_non_additive_headline_is_cubes_figure_never_an_average_of_averages() -> None:
    answers = {None: "7.50", ("2026-11-18", "2026-11-24"): "5"}

    def fetch(query: Mapping[str, Any]) -> KpiData:
        td = query["timeDimensions"][0]
        if td.get("granularity"):
            return _data(["1"] * 7, AVERAGE, query)
        date_range = td["dateRange"]
        value = answers[tuple(date_range) if isinstance(date_range, list) else None]
        return KpiData(columns=(AVERAGE,), rows=({AVERAGE.key: Decimal(value)},), timezone="UTC", query=query)

    report = build_report(_data(["1", "2", "3", "4", "5", "6", "100"], AVERAGE), _ctx(), fetch=fetch)
    assert report.headline is not None and report.headline.value == Decimal("7.50")  # not 17.29
    assert report.change is not None and report.change.absolute == Decimal("2.50")
    assert "not an average of the rows" in (report.value_rule or "")
    no_cube = build_report(_data(["1", "2"], AVERAGE), _ctx())
    assert no_cube.headline is None  # without Cube there is no honest figure to show


def test_threshold_messages_keep_the_latest_complete_bucket_and_say_so() -> None:
    data = _data(["1", "2", "3", "4", "5", "6", "7"])  # 2026-11-25 .. 2026-12-01, UTC days
    ctx = _ctx(kind="threshold_triggered", kpi=REVENUE, kpi_value=Decimal(7), previous_value=Decimal(6))
    ctx = _ctx(**{**ctx.__dict__, "condition": "Revenue > 5", "threshold_value": Decimal(5)})
    report = build_report(data, ctx)
    assert report.headline is not None and report.headline.basis == "latest complete day: 2026-12-01"
    assert "The value checked is the latest complete day: 2026-12-01" in (report.value_rule or "")
    assert report.change is not None and report.change.against == "previous day"
    assert report.chart is not None and report.chart.threshold == 5.0


def test_a_gated_report_states_its_gate_and_the_value_that_passed_it() -> None:
    gate = GateDecision(
        True, [GateValue(REVENUE.key, Decimal("219795.42"), ">", Decimal(100), True)], "gate passed"
    )
    report = build_report(_data(["1"] * 7), _ctx(), gate=gate, display=DisplaySettings(locale="en-US"))
    assert report.gate == "Sent because its gate passed: Revenue $219,795.42 > 100.00 USD (passed)"
    assert report.gate_short == "gate Revenue > 100.00 USD passed at 219,795 USD"
