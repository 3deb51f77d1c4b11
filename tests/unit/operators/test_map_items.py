"""The due listing's map items: one alert per item when there are few, else the batch plan's batches
(the plan's arithmetic itself: tests/unit/pipeline/test_batch_plan.py)."""

from __future__ import annotations

import pytest

from kpi_alerts.operators.tasks import MAX_MAP_LENGTH, TaskSettings, map_items, plan_for


def alerts(n: int) -> list[dict[str, object]]:
    return [{"alert_id": i, "alert_name": f"alert {i}"} for i in range(1, n + 1)]


def items_for(n: int, **settings: object) -> list[dict[str, object]]:
    task_settings = TaskSettings(**{"parallelism": 4, **settings})  # type: ignore[arg-type]
    return map_items(alerts(n), plan_for(n, task_settings), single_up_to=task_settings.batch_threshold)


class TestMapItems:
    def test_nothing_due_maps_nothing(self) -> None:
        assert items_for(0) == []

    @pytest.mark.parametrize("n", [pytest.param(1, id="one"), pytest.param(4, id="as-many-as-slots")])
    def test_no_more_alerts_than_slots_one_alert_per_item(self, n: int) -> None:
        items = items_for(n)
        assert len(items) == n
        assert all(len(item["alerts"]) == 1 for item in items)  # type: ignore[arg-type]
        assert items[0]["label"] == "alert 1: alert 1"

    def test_the_threshold_keeps_one_alert_per_item_up_to_it(self) -> None:
        assert len(items_for(50, batch_threshold=50)) == 50

    @pytest.mark.parametrize(
        ("n", "sizes", "first_label"),
        [
            pytest.param(10, [3, 3, 2, 2], "batch 1/4: alerts 1-3", id="10-over-4-slots"),
            pytest.param(1000, [250] * 4, "batch 1/4: alerts 1-250", id="1000-in-one-wave"),
            pytest.param(2000, [500] * 4, "batch 1/4: alerts 1-500", id="2000-in-one-wave"),
            pytest.param(5000, [625] * 8, "batch 1/8: alerts 1-625", id="5000-in-two-waves"),
        ],
    )
    def test_more_alerts_than_slots_are_batched_in_order(
        self, n: int, sizes: list[int], first_label: str
    ) -> None:
        items = items_for(n)
        assert [len(item["alerts"]) for item in items] == sizes  # type: ignore[arg-type]
        assert [a["alert_id"] for item in items for a in item["alerts"]] == list(range(1, n + 1))  # type: ignore[attr-defined]
        assert items[0]["label"] == first_label

    def test_never_longer_than_max_map_length(self) -> None:
        items = items_for(50_000, batch_seconds=1, seconds_per_alert=1)
        assert len(items) < MAX_MAP_LENGTH
        assert sum(len(item["alerts"]) for item in items) == 50_000  # type: ignore[arg-type, misc]

    def test_long_names_truncate_the_label(self) -> None:
        task_settings = TaskSettings(parallelism=4)
        (item,) = map_items([{"alert_id": 7, "alert_name": "x" * 500}], plan_for(1, task_settings))
        assert len(item["label"]) == 200
