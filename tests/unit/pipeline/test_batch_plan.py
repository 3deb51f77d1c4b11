"""The batch sizing arithmetic: from a target duration and the parallelism, not only a count."""

from __future__ import annotations

import pytest

from kpi_alerts.pipeline.batch import plan_batches


def sizes(plan: object) -> list[int]:
    return [end - start for start, end in plan.ranges]  # type: ignore[attr-defined]


class TestPlanBatches:
    def test_ten_thousand_alerts_are_cut_into_whole_waves_of_about_the_target_duration(self) -> None:
        plan = plan_batches(10_000, parallelism=4, target_seconds=60, seconds_per_alert=0.15, max_items=1023)
        # 10,000 x 0.15 s = 1,500 s of work = 25 batches of 60 s, rounded up to 7 waves of 4
        assert plan.batches == 28
        assert set(sizes(plan)) == {357, 358}
        assert sum(sizes(plan)) == 10_000
        assert plan.label(2) == "batch 3/28: alerts 717-1074"
        assert plan.estimated_seconds == pytest.approx(7 * 358 * 0.15)

    def test_few_alerts_still_use_every_parallel_slot(self) -> None:
        plan = plan_batches(10, parallelism=4, target_seconds=60, seconds_per_alert=0.15, max_items=1023)
        assert sizes(plan) == [3, 3, 2, 2]
        assert [plan.label(n) for n in range(4)] == [
            "batch 1/4: alerts 1-3",
            "batch 2/4: alerts 4-6",
            "batch 3/4: alerts 7-8",
            "batch 4/4: alerts 9-10",
        ]

    def test_fewer_alerts_than_slots_get_one_item_each(self) -> None:
        plan = plan_batches(3, parallelism=4, target_seconds=60, seconds_per_alert=0.15, max_items=1023)
        assert sizes(plan) == [1, 1, 1]

    def test_positions_are_contiguous_and_cover_the_due_list(self) -> None:
        for due in (1, 7, 999, 1000, 1001, 12_345):
            for parallelism in (1, 2, 4, 16):
                plan = plan_batches(due, parallelism=parallelism, target_seconds=30, seconds_per_alert=0.1,
                                    max_items=1023)  # fmt: skip
                assert plan.ranges[0][0] == 0 and plan.ranges[-1][1] == due
                assert all(a[1] == b[0] for a, b in zip(plan.ranges, plan.ranges[1:], strict=False))
                assert max(sizes(plan)) - min(sizes(plan)) <= 1
                assert plan.batches <= parallelism or plan.batches % parallelism == 0 or plan.batches == 1023

    def test_the_map_never_exceeds_max_map_length(self) -> None:
        plan = plan_batches(100_000, parallelism=4, target_seconds=1, seconds_per_alert=1, max_items=1023)
        assert plan.batches == 1023
        assert sum(sizes(plan)) == 100_000

    def test_a_shorter_target_means_more_batches(self) -> None:
        long = plan_batches(1000, parallelism=2, target_seconds=120, seconds_per_alert=0.1, max_items=1023)
        short = plan_batches(1000, parallelism=2, target_seconds=10, seconds_per_alert=0.1, max_items=1023)
        assert (long.batches, short.batches) == (2, 10)

    def test_nothing_due_plans_nothing(self) -> None:
        plan = plan_batches(0, parallelism=4, target_seconds=60, seconds_per_alert=0.1, max_items=1023)
        assert plan.batches == 0 and plan.estimated_seconds == 0
