"""What a map item's task instance shows, from how its alerts ended (kpi_alerts.pipeline.task_outcome)."""

from __future__ import annotations

import pytest

from kpi_alerts.pipeline.task_outcome import judge_item


def run(alert_id: int, status: str, detail: str = "") -> dict[str, object]:
    return {"alert_id": alert_id, "status": status, "detail": detail, "slot": None}


@pytest.mark.parametrize("status", ["gated", "not_triggered", "suppressed", "skipped"])
def test_an_alert_that_sent_nothing_and_did_not_fail_is_skipped(status: str) -> None:
    verdict = judge_item("alert 3: Revenue", 1, [run(3, status, "revenue 5 > 10 is not met")], [])
    assert verdict.state == "skipped" and verdict.label == "alert 3: Revenue"
    assert f"alert 3 {status}: revenue 5 > 10 is not met" in verdict.headline


def test_a_sent_alert_succeeds() -> None:
    assert judge_item("alert 3: Revenue", 1, [run(3, "sent")], []).state == "success"


def test_a_failure_is_its_reason_in_one_line() -> None:
    reason = "alert 3 (Revenue) failed: Cube.js refused the query\ntaken over from vm:1\n"
    verdict = judge_item("alert 3: Revenue", 1, [], [reason])
    assert verdict.state == "failed"
    assert verdict.headline == "alert 3 (Revenue) failed: Cube.js refused the query | taken over from vm:1"
    assert judge_item("alert 3: Revenue", 1, [], [reason], transient=True).state == "retry"


def test_a_batch_says_how_its_alerts_ended() -> None:
    mixed = judge_item("batch 1/2 (3 alerts)", 3, [run(1, "sent"), run(2, "gated")], [])
    assert (mixed.state, mixed.label) == ("success", "batch 1/2 (3 alerts): 1 gated, 1 sent")
    quiet = judge_item("batch 1/2 (2 alerts)", 2, [run(1, "gated"), run(2, "not_triggered")], [])
    assert (quiet.state, quiet.label) == ("skipped", "batch 1/2 (2 alerts): 1 gated, 1 not_triggered")
    failed = judge_item(
        "batch 2/2 (3 alerts)", 3, [run(1, "sent"), run(2, "gated")], ["alert 3 (X) failed: boom"]
    )
    assert failed.state == "failed" and failed.label == "batch 2/2 (3 alerts): 1 failed, 1 gated, 1 sent"
    assert failed.headline == "1 of 3 alerts failed: alert 3 (X) failed: boom"


def test_an_empty_item_is_not_called_skipped() -> None:
    assert judge_item("batch 1/1 (0 alerts)", 0, [], []).state == "success"


def test_the_headline_is_capped() -> None:
    assert len(judge_item("alert 1: A", 1, [], ["x" * 10_000]).headline) == 2000
