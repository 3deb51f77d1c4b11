"""Threshold conditions and the "which value is the KPI" rule."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from kpi_alerts.conditions.thresholds import (
    KpiReading,
    ThresholdCondition,
    describe_threshold,
    evaluate_threshold,
    kpi_value,
    parse_condition,
    validate_recovery,
)
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import CellValue, Column, KpiData

C = ThresholdCondition
Rows = tuple[dict[str, CellValue], ...]
D = Decimal
LA = ZoneInfo("America/Los_Angeles")
REVENUE = Column("orders.total_amount", "Revenue", "measure", "sum")
COUNT = Column("orders.count", "Orders", "measure", "count")
AVERAGE = Column("orders.average", "Average order", "measure", "number")
COUNTRY = Column("orders.country", "Country", "dimension", "string")


def day_column(granularity: str = "day") -> Column:
    return Column(f"orders.created_at.{granularity}", "Created", "time_dimension", "time")


def series(
    values: Mapping[datetime, str | None], *, granularity: str = "day", measure: Column = REVENUE
) -> KpiData:
    time = day_column(granularity)
    rows = tuple({time.key: start, measure.key: None if v is None else D(v)} for start, v in values.items())
    return KpiData((time, measure), rows, "America/Los_Angeles")


def la(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LA)


class TestParseCondition:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("GREATER_THAN", C.GREATER_THAN, id="name"),
            pytest.param("  less_than_or_equal ", C.LESS_THAN_OR_EQUAL, id="lowercase-padded"),
            pytest.param("increased by percent", C.INCREASED_BY_PERCENT, id="spaces"),
            pytest.param(">=", C.GREATER_THAN_OR_EQUAL, id="symbol"),
            pytest.param("≠", C.NOT_EQUAL, id="display-symbol"),
            pytest.param("<>", C.NOT_EQUAL, id="sql-not-equal"),
        ],
    )
    def test_accepts(self, text: str, expected: ThresholdCondition) -> None:
        assert parse_condition(text) is expected

    @pytest.mark.parametrize("text", ["GREATER", "", "=>", None, 3, ["EQUAL"]])
    def test_rejects_listing_valid_values(self, text: object) -> None:
        with pytest.raises(AlertValidationError, match=r"GREATER_THAN_OR_EQUAL.*DECREASED_BY_PERCENT"):
            parse_condition(text)


COMPARISONS = [
    # condition, value, threshold, breached
    pytest.param(C.GREATER_THAN, "10001", "10000", True, id="gt-above"),
    pytest.param(C.GREATER_THAN, "10000", "10000", False, id="gt-equal"),
    pytest.param(C.GREATER_THAN, "-5", "-10", True, id="gt-negative"),
    pytest.param(C.GREATER_THAN_OR_EQUAL, "10000", "10000", True, id="gte-equal"),
    pytest.param(C.GREATER_THAN_OR_EQUAL, "9999.99", "10000", False, id="gte-below"),
    pytest.param(C.LESS_THAN, "9999.999", "10000", True, id="lt-below"),
    pytest.param(C.LESS_THAN, "10000", "10000", False, id="lt-equal"),
    pytest.param(C.LESS_THAN, "-10", "-5", True, id="lt-negative"),
    pytest.param(C.LESS_THAN_OR_EQUAL, "10000", "10000", True, id="lte-equal"),
    pytest.param(C.LESS_THAN_OR_EQUAL, "10000.01", "10000", False, id="lte-above"),
    pytest.param(C.EQUAL, "10", "10.00", True, id="eq-trailing-zeros"),
    pytest.param(C.EQUAL, "0.3", str(D("0.1") + D("0.2")), True, id="eq-decimal-precision"),
    pytest.param(C.EQUAL, "0", "-0", True, id="eq-signed-zero"),
    pytest.param(C.EQUAL, "10.000000000000000000000000001", "10", False, id="eq-exact-not-rounded"),
    pytest.param(C.NOT_EQUAL, "10", "10.0", False, id="ne-same-number"),
    pytest.param(C.NOT_EQUAL, "-1", "1", True, id="ne-sign"),
]


class TestComparisons:
    @pytest.mark.parametrize(("condition", "value", "threshold", "breached"), COMPARISONS)
    def test_operator(self, condition: C, value: str, threshold: str, breached: bool) -> None:
        result = evaluate_threshold(condition, D(threshold), KpiReading(D(value)), measure_title="Revenue")
        assert result.status == ("breached" if breached else "ok")
        assert result.value == D(value)
        assert result.change_percent is None
        assert result.description.startswith(f"Revenue is {D(value):,f}")
        assert result.description.endswith("is met" if breached else "is not met")

    def test_float_arithmetic_would_have_failed(self) -> None:
        assert 0.1 + 0.2 != 0.3  # the reason every value is a Decimal
        reading = KpiReading(D("0.1") + D("0.2"))
        assert evaluate_threshold(C.EQUAL, D("0.3"), reading).status == "breached"

    @pytest.mark.parametrize("condition", list(C))
    def test_no_data(self, condition: C) -> None:
        result = evaluate_threshold(condition, D(5), KpiReading(None, D(1)), measure_title="Revenue")
        assert (result.status, result.description) == ("no_data", "no data for Revenue")

    @pytest.mark.parametrize("value", [D("NaN"), D("Infinity")])
    def test_non_finite_value_is_no_data(self, value: Decimal) -> None:
        assert evaluate_threshold(C.GREATER_THAN, D(5), KpiReading(value)).status == "no_data"

    @pytest.mark.parametrize(
        ("condition", "threshold"),
        [
            pytest.param(C.GREATER_THAN, D("NaN"), id="nan"),
            pytest.param(C.LESS_THAN, D("-Infinity"), id="infinite"),
            pytest.param(C.INCREASED_BY_PERCENT, D(-1), id="negative-percent"),
        ],
    )
    def test_unusable_threshold(self, condition: C, threshold: Decimal) -> None:
        with pytest.raises(AlertValidationError, match="threshold"):
            evaluate_threshold(condition, threshold, KpiReading(D(1), D(1)))


UP, DOWN = C.INCREASED_BY_PERCENT, C.DECREASED_BY_PERCENT
PERCENTS = [
    # condition, previous, value, threshold, status, change %
    pytest.param(UP, "100", "125", "20", "breached", "25", id="up-25-vs-20"),
    pytest.param(UP, "100", "120", "20", "breached", "20", id="up-exactly-threshold"),
    pytest.param(UP, "100", "119.99", "20", "ok", "19.99", id="up-just-below"),
    pytest.param(UP, "100", "80", "20", "ok", "-20", id="up-but-fell"),
    pytest.param(DOWN, "100", "80", "20", "breached", "-20", id="down-exactly-threshold"),
    pytest.param(DOWN, "100", "81", "20", "ok", "-19", id="down-not-enough"),
    pytest.param(DOWN, "100", "130", "20", "ok", "30", id="down-but-rose"),
    pytest.param(UP, "-100", "-50", "50", "breached", "50", id="up-from-negative"),
    pytest.param(DOWN, "-100", "-150", "50", "breached", "-50", id="down-to-more-negative"),
    pytest.param(UP, "3", "4", "33.33", "breached", None, id="up-repeating-decimal"),
    pytest.param(UP, "3", "4", "33.34", "ok", None, id="up-repeating-decimal-above"),
    pytest.param(UP, "0", "0", "0", "breached", "0", id="zero-to-zero-threshold-0"),
    pytest.param(UP, "0", "0", "10", "ok", "0", id="zero-to-zero"),
    pytest.param(UP, "0", "5", "1000", "breached", None, id="zero-to-positive-up"),
    pytest.param(DOWN, "0", "5", "10", "ok", None, id="zero-to-positive-down"),
    pytest.param(DOWN, "0", "-5", "1000", "breached", None, id="zero-to-negative-down"),
    pytest.param(UP, "0", "-5", "10", "ok", None, id="zero-to-negative-up"),
]


class TestPercentChange:
    @pytest.mark.parametrize(("condition", "previous", "value", "threshold", "status", "change"), PERCENTS)
    def test_change(
        self, condition: C, previous: str, value: str, threshold: str, status: str, change: str | None
    ) -> None:
        result = evaluate_threshold(condition, D(threshold), KpiReading(D(value), D(previous)))
        assert result.status == status
        if change is not None:
            assert result.change_percent == D(change)
        elif D(previous) == 0:
            assert result.change_percent is None
            assert "a change from zero, no percentage" in result.description

    def test_repeating_decimal_change_is_reported(self) -> None:
        result = evaluate_threshold(UP, D(10), KpiReading(D(4), D(3)), measure_title="Orders")
        assert result.change_percent is not None and abs(result.change_percent - D("33.3333")) < D("0.0001")
        assert result.description == (
            "Orders went from 3 to 4 (+33.33%): Orders increased by ≥ 10% vs previous period is met"
        )

    @pytest.mark.parametrize("condition", [UP, DOWN])
    def test_missing_previous_is_no_data(self, condition: C) -> None:
        result = evaluate_threshold(condition, D(10), KpiReading(D(4), None), measure_title="Orders")
        assert result.status == "no_data"
        assert result.description == "no previous-period value of Orders to compare with"


class TestDescribeThreshold:
    @pytest.mark.parametrize(
        ("condition", "threshold", "text"),
        [
            pytest.param(C.GREATER_THAN, "10000", "Revenue > 10,000", id="gt"),
            pytest.param(C.GREATER_THAN_OR_EQUAL, "1234567.50", "Revenue ≥ 1,234,567.50", id="gte"),
            pytest.param(C.LESS_THAN, "-3", "Revenue < -3", id="lt"),
            pytest.param(C.LESS_THAN_OR_EQUAL, "1E+4", "Revenue ≤ 10,000", id="lte-exponent"),
            pytest.param(C.EQUAL, "0.001", "Revenue = 0.001", id="eq"),
            pytest.param(C.NOT_EQUAL, "0", "Revenue ≠ 0", id="ne"),
            pytest.param(UP, "20", "Revenue increased by ≥ 20% vs previous period", id="up"),
            pytest.param(DOWN, "12.5", "Revenue decreased by ≥ 12.5% vs previous period", id="down"),
        ],
    )
    def test_text(self, condition: C, threshold: str, text: str) -> None:
        assert describe_threshold(condition, D(threshold), "Revenue") == text


class TestKpiValue:
    DAYS = {la(2026, 11, d): str(d * 10) for d in range(20, 25)}  # 20th..24th, 200..240

    @pytest.mark.parametrize(
        ("now", "value", "previous", "bucket"),
        [
            pytest.param(la(2026, 11, 24, 12), "230", "220", la(2026, 11, 23), id="current-day-excluded"),
            pytest.param(la(2026, 11, 25), "240", "230", la(2026, 11, 24), id="bucket-ends-exactly-now"),
            pytest.param(la(2026, 11, 24, 23, 59), "230", "220", la(2026, 11, 23), id="a-minute-before-end"),
            pytest.param(la(2026, 12, 3), "240", "230", la(2026, 11, 24), id="later-days-absent"),
            pytest.param(la(2026, 11, 21, 1), "200", None, la(2026, 11, 20), id="no-earlier-bucket"),
            pytest.param(la(2026, 11, 20, 23), None, None, None, id="no-complete-bucket"),
        ],
    )
    def test_latest_complete_bucket(
        self, now: datetime, value: str | None, previous: str | None, bucket: datetime | None
    ) -> None:
        reading = kpi_value(series(self.DAYS), now=now)
        assert reading.value == (D(value) if value else None)
        assert reading.previous == (D(previous) if previous else None)
        assert reading.bucket_start == bucket

    def test_previous_period_absent_is_missing_not_the_row_before(self) -> None:
        data = series({la(2026, 11, 20): "5", la(2026, 11, 22): "7"})  # the 21st had no rows
        reading = kpi_value(data, now=la(2026, 11, 23, 8))
        assert (reading.value, reading.previous) == (D(7), None)

    def test_now_in_another_timezone(self) -> None:
        # 2026-11-24T07:59Z is 23:59 on the 23rd in Los Angeles: the 23rd is not complete yet.
        reading = kpi_value(series(self.DAYS), now=datetime(2026, 11, 24, 7, 59, tzinfo=UTC))
        assert reading.bucket_start == la(2026, 11, 22)

    def test_dst_day_has_23_hours(self) -> None:
        # 2026-03-08 is the spring-forward day in Los Angeles: it ends at 07:00 UTC on the 9th.
        data = series({la(2026, 3, 7): "1", la(2026, 3, 8): "2"})
        assert kpi_value(data, now=datetime(2026, 3, 9, 6, 59, tzinfo=UTC)).value == D(1)
        assert kpi_value(data, now=datetime(2026, 3, 9, 7, 0, tzinfo=UTC)).value == D(2)

    @pytest.mark.parametrize(
        ("granularity", "starts", "now", "value", "previous"),
        [
            pytest.param(
                "hour",
                [la(2026, 11, 3, 9), la(2026, 11, 3, 10)],
                la(2026, 11, 3, 10, 30),
                "1",
                None,
                id="hour",
            ),
            pytest.param("week", [la(2026, 11, 9), la(2026, 11, 16)], la(2026, 11, 23), "2", "1", id="week"),
            pytest.param(
                "month",
                [la(2026, 1, 1), la(2026, 2, 1), la(2026, 3, 1)],
                la(2026, 3, 31),
                "2",
                "1",
                id="month",
            ),
            pytest.param(
                "quarter", [la(2025, 10, 1), la(2026, 1, 1)], la(2026, 4, 1), "2", "1", id="quarter"
            ),
            pytest.param("year", [la(2024, 1, 1), la(2025, 1, 1)], la(2025, 12, 31), "1", None, id="year"),
        ],
    )
    def test_granularities(
        self, granularity: str, starts: list[datetime], now: datetime, value: str, previous: str | None
    ) -> None:
        data = series({start: str(n) for n, start in enumerate(starts, 1)}, granularity=granularity)
        reading = kpi_value(data, now=now)
        assert reading.value == D(value)
        assert reading.previous == (D(previous) if previous else None)

    def test_unknown_granularity_drops_the_latest_bucket(self) -> None:
        data = series({la(2026, 1, 1): "1", la(2026, 2, 1): "2", la(2026, 3, 1): "3"}, granularity="fiscal")
        reading = kpi_value(data, now=la(2026, 3, 5))
        assert (reading.value, reading.previous) == (D(2), D(1))

    def test_future_buckets_are_ignored(self) -> None:
        data = series({la(2026, 11, 20): "1", la(2026, 11, 21): "2", la(2026, 11, 30): "9"})
        assert kpi_value(data, now=la(2026, 11, 22, 1)).value == D(2)

    def test_null_measure_is_no_data(self) -> None:
        assert kpi_value(series({la(2026, 11, 20): None}), now=la(2026, 11, 22)).value is None

    def test_no_rows(self) -> None:
        assert kpi_value(series({}), now=la(2026, 11, 22)) == KpiReading(None, None, None)
        assert kpi_value(KpiData((REVENUE,), (), "UTC"), now=la(2026, 11, 22)) == KpiReading(None)

    def test_single_row_without_time(self) -> None:
        data = KpiData((REVENUE, COUNT), ({REVENUE.key: D("12.5"), COUNT.key: D(3)},), "UTC")
        assert kpi_value(data, now=la(2026, 1, 1)) == KpiReading(D("12.5"))
        assert kpi_value(data, "orders.count", now=la(2026, 1, 1)) == KpiReading(D(3))

    def test_string_and_nan_cells(self) -> None:
        data = KpiData((REVENUE,), ({REVENUE.key: "148.00"},), "UTC")
        assert kpi_value(data, now=la(2026, 1, 1)).value == D("148.00")
        data = KpiData((REVENUE,), ({REVENUE.key: D("NaN")},), "UTC")
        assert kpi_value(data, now=la(2026, 1, 1)).value is None
        data = KpiData((REVENUE,), ({REVENUE.key: "n/a"},), "UTC")
        with pytest.raises(AlertValidationError, match="Revenue holds 'n/a'"):
            kpi_value(data, now=la(2026, 1, 1))

    @pytest.mark.parametrize("measure", [REVENUE, COUNT], ids=["sum", "count"])
    def test_several_rows_of_additive_measure_are_totalled(self, measure: Column) -> None:
        rows: Rows = ({COUNTRY.key: "FR", measure.key: D(2)}, {COUNTRY.key: "DE", measure.key: D("3.5")})
        assert kpi_value(KpiData((COUNTRY, measure), rows, "UTC"), now=la(2026, 1, 1)).value == D("5.5")

    def test_several_rows_of_other_measures_are_refused(self) -> None:
        rows: Rows = ({COUNTRY.key: "FR", AVERAGE.key: D(2)}, {COUNTRY.key: "DE", AVERAGE.key: D(3)})
        with pytest.raises(AlertValidationError, match="2 rows for one period and Average order"):
            kpi_value(KpiData((COUNTRY, AVERAGE), rows, "UTC"), now=la(2026, 1, 1))

    def test_several_rows_per_bucket(self) -> None:
        time = day_column()
        rows: Rows = tuple(
            {time.key: la(2026, 11, day), COUNTRY.key: country, COUNT.key: D(n)}
            for day, country, n in [
                (20, "FR", 1),
                (20, "DE", 2),
                (21, "FR", 4),
                (21, "DE", 8),
                (22, "FR", 16),
            ]
        )
        reading = kpi_value(
            KpiData((time, COUNTRY, COUNT), rows, "America/Los_Angeles"), now=la(2026, 11, 22, 9)
        )
        assert (reading.value, reading.previous) == (D(12), D(3))

    def test_total_adds_every_row(self) -> None:
        assert kpi_value(series(self.DAYS), now=la(2026, 11, 22), aggregate="total") == KpiReading(D(1100))
        rows = ({AVERAGE.key: D(2)}, {AVERAGE.key: None})
        assert kpi_value(KpiData((AVERAGE,), rows, "UTC"), now=la(2026, 1, 1), aggregate="total").value == 2

    def test_unknown_measure(self) -> None:
        with pytest.raises(AlertValidationError, match=r"'orders\.nope' is not in the query's result"):
            kpi_value(series(self.DAYS), "orders.nope", now=la(2026, 11, 22))

    def test_query_without_measures(self) -> None:
        with pytest.raises(AlertValidationError, match="no measure"):
            kpi_value(KpiData((COUNTRY,), (), "UTC"), now=la(2026, 1, 1))

    def test_naive_now_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            kpi_value(series(self.DAYS), now=datetime(2026, 11, 22))

    def test_unknown_timezone(self) -> None:
        data = KpiData(series(self.DAYS).columns, series(self.DAYS).rows, "Mars/Olympus")
        with pytest.raises(AlertValidationError, match="unknown timezone"):
            kpi_value(data, now=la(2026, 11, 22))


class TestRecoveryThreshold:
    """Hysteresis: "alert above 100, recover below 90"."""

    @pytest.mark.parametrize(
        ("condition", "value", "in_breach", "status"),
        [
            pytest.param(C.GREATER_THAN, "101", False, "breached", id="above-breaches"),
            pytest.param(C.GREATER_THAN, "95", False, "ok", id="between-from-ok-is-ok"),
            pytest.param(C.GREATER_THAN, "95", True, "breached", id="between-while-breached-holds"),
            pytest.param(C.GREATER_THAN, "90", True, "breached", id="at-recovery-level-holds"),
            pytest.param(C.GREATER_THAN, "89.99", True, "ok", id="below-recovers"),
            pytest.param(C.LESS_THAN, "95", True, "breached", id="less-than-between-holds"),
            pytest.param(C.LESS_THAN, "111", True, "ok", id="less-than-above-recovers"),
        ],
    )
    def test_decision(self, condition: ThresholdCondition, value: str, in_breach: bool, status: str) -> None:
        threshold, recovery = (D(100), D(90)) if condition is C.GREATER_THAN else (D(90), D(110))
        result = evaluate_threshold(
            condition, threshold, KpiReading(D(value)), measure_title="Revenue", recovery=recovery,
            in_breach=in_breach,
        )  # fmt: skip
        assert result.status == status

    def test_descriptions_name_the_recovery_threshold(self) -> None:
        def described(value: str) -> str:
            reading = KpiReading(D(value))
            return evaluate_threshold(
                C.GREATER_THAN, D(100), reading, measure_title="Revenue", recovery=D(90), in_breach=True
            ).description

        assert described("95") == (
            "Revenue is 95: Revenue > 100 is not met, but the breach holds until Revenue < 90 "
            "(recovery threshold)"
        )
        assert described("80") == (
            "Revenue is 80: Revenue > 100 is not met and Revenue < 90 (recovery threshold) is met"
        )

    @pytest.mark.parametrize(
        ("condition", "threshold", "recovery", "message"),
        [
            pytest.param(C.GREATER_THAN, "100", "110", "at or below the threshold", id="wrong-side-gt"),
            pytest.param(C.LESS_THAN, "100", "90", "at or above the threshold", id="wrong-side-lt"),
            pytest.param(C.EQUAL, "100", "90", "needs one of GREATER_THAN", id="equality"),
            pytest.param(C.INCREASED_BY_PERCENT, "10", "5", "needs one of", id="percent"),
            pytest.param(C.GREATER_THAN, "100", "NaN", "recovery threshold must be a finite", id="nan"),
        ],
    )
    def test_refused(
        self, condition: ThresholdCondition, threshold: str, recovery: str, message: str
    ) -> None:
        with pytest.raises(AlertValidationError, match=message):
            validate_recovery(condition, D(threshold), D(recovery))

    def test_same_level_is_allowed(self) -> None:
        validate_recovery(C.GREATER_THAN_OR_EQUAL, D(100), D(100))
