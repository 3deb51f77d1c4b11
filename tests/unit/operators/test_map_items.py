"""The due listing's batching arithmetic: one alert per map item, or nearly equal batches."""

from __future__ import annotations

import pytest

from kpi_alerts.operators.kpi_alerts import MAX_MAP_LENGTH, map_items


def alerts(n: int) -> list[dict[str, object]]:
    return [{"alert_id": i, "alert_name": f"alert {i}"} for i in range(1, n + 1)]


class TestMapItems:
    def test_nothing_due_maps_nothing(self) -> None:
        assert map_items([], 500) == []

    @pytest.mark.parametrize("n", [pytest.param(1, id="one"), pytest.param(500, id="at-threshold")])
    def test_up_to_the_threshold_one_alert_per_item(self, n: int) -> None:
        items = map_items(alerts(n), 500)
        assert len(items) == n
        assert all(len(item["alerts"]) == 1 for item in items)
        assert items[0]["label"] == "alert 1: alert 1"

    @pytest.mark.parametrize(
        ("n", "threshold", "sizes"),
        [
            pytest.param(3, 2, [2, 1], id="3-over-2"),
            pytest.param(501, 500, [2] * 250 + [1], id="501-over-500"),
            pytest.param(1000, 500, [2] * 500, id="1000-over-500"),
            pytest.param(10, 3, [4, 4, 2], id="10-over-3"),
        ],
    )
    def test_above_the_threshold_nearly_equal_batches(self, n: int, threshold: int, sizes: list[int]) -> None:
        items = map_items(alerts(n), threshold)
        assert [len(item["alerts"]) for item in items] == sizes
        assert len(items) <= threshold
        assert [a["alert_id"] for item in items for a in item["alerts"]] == list(range(1, n + 1))
        assert items[0]["label"] == f"batch 1/{len(sizes)} ({sizes[0]} alerts)"

    def test_threshold_capped_below_max_map_length(self) -> None:
        items = map_items(alerts(5000), 100_000)
        assert len(items) < MAX_MAP_LENGTH
        assert sum(len(item["alerts"]) for item in items) == 5000

    def test_long_names_truncate_the_label(self) -> None:
        (item,) = map_items([{"alert_id": 7, "alert_name": "x" * 500}], 10)
        assert len(item["label"]) == 200
