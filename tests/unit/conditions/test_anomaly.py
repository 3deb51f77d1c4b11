"""Anomaly conditions: the band (checked against the standard library's statistics, not pandas), the
seasonal history, the decision and its sentence."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_alerts.conditions.anomaly import (
    AnomalyMethod,
    evaluate_anomaly,
    expected_band,
    history_query,
    history_starts,
    season_label,
    seasonal_granularity,
    seasonal_history,
    validate_history,
)
from kpi_alerts.conditions.thresholds import ThresholdCondition, validate_threshold
from kpi_alerts.errors import AlertValidationError

C = ThresholdCondition
D = Decimal
LA = ZoneInfo("America/Los_Angeles")
MONDAY = datetime(2026, 11, 30, tzinfo=UTC)
QUERY = {
    "measures": ["orders.total_amount", "orders.count"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-24", "2026-11-30"]}
    ],
    "filters": [{"member": "orders.status", "operator": "equals", "values": ["completed"]}],
    "order": {"orders.created_at": "asc"},
}


def plain_band(values: list[float], k: float, method: AnomalyMethod) -> tuple[float, float]:
    if method is AnomalyMethod.MEDIAN_MAD:
        center = statistics.median(values)
        spread = statistics.median(abs(v - center) for v in values) * 1.4826
    else:
        center, spread = statistics.mean(values), statistics.stdev(values)
    return center - k * spread, center + k * spread


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10_000_000), min_size=2, max_size=52),
    st.sampled_from([D(1), D("2.5"), D(3)]),
    st.sampled_from(AnomalyMethod),
)
def test_band_equals_the_textbook_statistics(cents: list[int], k: Decimal, method: AnomalyMethod) -> None:
    history = [D(c) / 100 for c in cents]
    band = expected_band(history, k, method)
    low, high = plain_band([float(v) for v in history], float(k), method)
    assert float(band.low) == pytest.approx(low, abs=1e-4, rel=1e-9)
    assert float(band.high) == pytest.approx(high, abs=1e-4, rel=1e-9)
    assert band.samples == len(history) and band.width == k


class TestDecision:
    band = expected_band(
        [D(4000), D(4200), D(4300), D(4100), D(4500), D(3900)], D(3), AnomalyMethod.MEDIAN_MAD
    )

    @pytest.mark.parametrize(
        ("condition", "value", "status"),
        [
            pytest.param(C.OUTSIDE_EXPECTED_RANGE, "2710", "breached", id="drop-outside"),
            pytest.param(C.BELOW_EXPECTED_RANGE, "2710", "breached", id="drop-below"),
            pytest.param(C.ABOVE_EXPECTED_RANGE, "2710", "ok", id="drop-not-above"),
            pytest.param(C.OUTSIDE_EXPECTED_RANGE, "4250", "ok", id="expected"),
            pytest.param(C.ABOVE_EXPECTED_RANGE, "9000", "breached", id="spike-above"),
        ],
    )
    def test_status(self, condition: ThresholdCondition, value: str, status: str) -> None:
        result = evaluate_anomaly(condition, D(value), self.band, samples=6, min_history=4, season="a Monday")
        assert result.status == status

    def test_sentence_says_what_was_expected(self) -> None:
        result = evaluate_anomaly(
            C.OUTSIDE_EXPECTED_RANGE,
            D(2710),
            self.band,
            samples=6,
            min_history=4,
            season="a Monday",
            measure_title="Revenue",
            show=lambda v: f"{v:,.0f} USD",
        )
        assert result.description == (
            "expected 3,483\N{EN DASH}4,817 USD for a Monday, got 2,710 USD "
            "(below the expected range; median of 6 past weeks ± 3 MAD)"
        )

    def test_a_band_rounded_to_the_unit_never_hides_why_the_value_is_outside(self) -> None:
        """Orders 2 above a band of 1.06-1.94: "expected 1-2, got 2 (above ...)" would contradict itself."""
        band = expected_band([D(1), D(1), D(2), D(2), D(1), D(2)], D("0.6"), AnomalyMethod.MEDIAN_MAD)
        assert band.high < 2
        result = evaluate_anomaly(
            C.OUTSIDE_EXPECTED_RANGE, D(2), band, samples=6, min_history=4, season="a Sunday",
            show=lambda v: f"{v:,.0f}",
        )  # fmt: skip
        assert result.status == "breached"
        assert result.description.startswith(
            f"expected {band.low:.2f}\N{EN DASH}{band.high:.2f} for a Sunday, got 2 "
        )

    def test_not_enough_history(self) -> None:
        result = evaluate_anomaly(
            C.OUTSIDE_EXPECTED_RANGE, D(10), None, samples=3, min_history=4, season="a Monday",
            measure_title="Revenue",
        )  # fmt: skip
        assert result.status == "no_data"
        assert result.description == "not enough history for Revenue: 3 past value(s) for a Monday, 4 needed"

    def test_flat_history_is_a_point(self) -> None:
        band = expected_band([D(5)] * 4, D(3), AnomalyMethod.MEDIAN_MAD)
        assert (band.low, band.high) == (5, 5)
        assert (
            evaluate_anomaly(
                C.OUTSIDE_EXPECTED_RANGE, D(5), band, samples=4, min_history=4, season="x"
            ).status
            == "ok"
        )
        assert (
            evaluate_anomaly(
                C.OUTSIDE_EXPECTED_RANGE, D("5.01"), band, samples=4, min_history=4, season="x"
            ).status
            == "breached"
        )


class TestHistory:
    def test_same_weekday_of_past_weeks_in_local_time_across_dst(self) -> None:
        start = datetime(2026, 11, 9, 9, tzinfo=LA)  # PST; four weeks earlier is PDT
        starts = history_starts(start, 4)
        assert [s.strftime("%a %H:%M") for s in starts] == ["Mon 09:00"] * 4
        assert starts[-1].utcoffset() != start.utcoffset()

    def test_missing_weeks_are_left_out_not_zero(self) -> None:
        values = {MONDAY.replace(day=23): D(1), MONDAY.replace(day=16): None, MONDAY.replace(day=24): D(99)}
        assert seasonal_history(values, MONDAY, 3) == [D(1)]

    def test_history_query_keeps_filters_and_narrows_range_and_measure(self) -> None:
        q = history_query(QUERY, measure="orders.count", period_start=MONDAY, weeks=8)
        assert q["measures"] == ["orders.count"]
        assert q["filters"] == QUERY["filters"]
        assert q["timeDimensions"] == [
            {
                "dimension": "orders.created_at",
                "granularity": "day",
                "dateRange": ["2026-10-05T00:00:00.000", "2026-11-29T23:59:59.999"],
            }
        ]
        assert "order" not in q

    def test_season_label(self) -> None:
        assert season_label(MONDAY, "day") == "a Monday"
        assert season_label(datetime(2026, 11, 30, 9, tzinfo=LA), "hour") == "a Monday at 09:00"


class TestValidation:
    def test_needs_a_day_or_hour_series(self) -> None:
        with pytest.raises(AlertValidationError, match="time dimension by day or hour"):
            seasonal_granularity({"measures": ["orders.count"]})
        week = {**QUERY, "timeDimensions": [{**QUERY["timeDimensions"][0], "granularity": "week"}]}  # type: ignore[dict-item]
        with pytest.raises(AlertValidationError, match="time dimension by day or hour"):
            seasonal_granularity(week)

    @pytest.mark.parametrize(("weeks", "minimum"), [(8, 1), (3, 4), (53, 4)])
    def test_history_bounds(self, weeks: int, minimum: int) -> None:
        with pytest.raises(AlertValidationError, match="min_history"):
            validate_history(weeks, minimum)

    @pytest.mark.parametrize("width", ["0", "-1", "101"])
    def test_band_width(self, width: str) -> None:
        with pytest.raises(AlertValidationError, match="band's width"):
            validate_threshold(C.OUTSIDE_EXPECTED_RANGE, D(width))
