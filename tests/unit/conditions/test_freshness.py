"""Reports that wait for fresh data: the rule (send, wait, send anyway at the deadline), its words and its
validation, without Cube or Airflow (kpi_alerts.conditions.freshness)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kpi_alerts.alerts.spec import parse_alert_spec
from kpi_alerts.conditions.freshness import (
    Freshness,
    data_age,
    duration,
    judge_freshness,
    stale_note,
    waiting_reason,
)
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_store import validate_alert_spec
from kpi_alerts.pipeline.task_outcome import judge_item
from tests.factories import report_spec

SLOT = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # 09:00 in Los Angeles
CUBE = Freshness("cube", max_age_minutes=60, max_wait_minutes=120)


def judge(
    data_as_of: datetime | None, minutes_after: int, next_slot: datetime | None = None
) -> tuple[bool, bool]:
    verdict = judge_freshness(
        CUBE,
        slot=SLOT,
        logical_time=SLOT + timedelta(minutes=minutes_after),
        data_as_of=data_as_of,
        next_slot=next_slot or SLOT + timedelta(days=1),
    )
    return verdict.wait, verdict.fresh


class TestTheRule:
    def test_fresh_data_is_sent_at_once(self) -> None:
        assert judge(SLOT - timedelta(minutes=60), 0) == (False, True)  # exactly the maximum age: fresh
        assert judge(SLOT + timedelta(minutes=3), 5) == (False, True)

    def test_older_data_waits_until_the_deadline_then_is_sent_anyway(self) -> None:
        old = SLOT - timedelta(minutes=61)
        assert judge(old, 0) == (True, False)
        assert judge(old, 115) == (True, False)
        assert judge(old, 120) == (False, False)  # the deadline: sent, not fresh
        assert judge(None, 0) == (True, False)  # never refreshed
        assert judge(None, 120) == (False, False)

    def test_a_wait_never_runs_into_the_next_slot(self) -> None:
        verdict = judge_freshness(
            CUBE, slot=SLOT, logical_time=SLOT + timedelta(minutes=15), data_as_of=None,
            next_slot=SLOT + timedelta(minutes=15),
        )  # fmt: skip
        assert (verdict.wait, verdict.deadline) == (False, SLOT + timedelta(minutes=15))


class TestWords:
    @pytest.mark.parametrize(
        ("minutes", "text"),
        [
            pytest.param(0, "0 min", id="zero"),
            pytest.param(45, "45 min", id="minutes"),
            pytest.param(80, "1 h 20 min", id="hours"),
            pytest.param(120, "2 h", id="whole-hours"),
            pytest.param(60 * 51 + 5, "2 d 3 h", id="days"),
        ],
    )
    def test_durations(self, minutes: int, text: str) -> None:
        assert duration(timedelta(minutes=minutes)) == text

    def test_the_data_age_in_the_reports_zone(self) -> None:
        now = SLOT + timedelta(minutes=120)  # 11:00 in Los Angeles
        assert data_age(now - timedelta(minutes=200), now=now, timezone="America/Los_Angeles") == (
            "Data as of 07:40 (3 h 20 min old)"
        )
        assert data_age(now - timedelta(days=2), now=now, timezone="UTC") == (
            "Data as of 2026-12-05 19:00 (2 d old)"
        )
        assert data_age(None, now=now, timezone="UTC").startswith("Data never refreshed")

    def test_waiting_and_stale_sentences(self) -> None:
        verdict = judge_freshness(
            CUBE, slot=SLOT, logical_time=SLOT, data_as_of=SLOT - timedelta(hours=3), next_slot=None
        )
        assert waiting_reason(CUBE, verdict, "UTC") == (
            "waiting for fresh data: Cube's data is as of 2026-12-07 14:00, older than 1 h before the slot; "
            "checked again every tick until 2026-12-07 19:00 UTC, then sent anyway"
        )
        note = stale_note(CUBE, verdict, now=SLOT + timedelta(hours=2), timezone="UTC")
        assert note == (
            "Data as of 14:00 (5 h old): Cube's data was not refreshed within 2 h of the report's time; sent anyway"
        )
        assert CUBE.describe() == (
            "waits up to 2 h after its time for Cube's data to be at most 1 h old (then sent anyway, saying how old)"
        )

    def test_a_waiting_alert_leaves_its_task_instance_skipped_with_the_reason(self) -> None:
        verdict = judge_item(
            "alert 7: Daily", 1, [{"alert_id": 7, "status": "waiting", "detail": "waiting for"}], []
        )
        assert verdict.state == "skipped" and "alert 7 waiting: waiting for" in verdict.headline


class TestValidation:
    def spec(self, **freshness: object) -> dict[str, object]:
        return report_spec(schedule={"freshness": freshness})

    def test_a_valid_requirement_is_stored_as_columns_and_shown_back(self) -> None:
        spec = validate_alert_spec(
            self.spec(asset="warehouse://orders", max_age_minutes=720, max_wait_minutes=60)
        )
        assert spec.schedule is not None
        assert spec.schedule.freshness_columns() == {
            "freshness_source": "asset",
            "freshness_asset": "warehouse://orders",
            "freshness_max_age_minutes": 720,
            "freshness_max_wait_minutes": 60,
        }
        assert Freshness.from_columns(spec.schedule.freshness_columns()) == Freshness(
            "asset", 720, 60, "warehouse://orders"
        )
        assert Freshness("asset", 720, 60, "warehouse://orders").spec() == {
            "asset": "warehouse://orders",
            "max_age_minutes": 720,
            "max_wait_minutes": 60,
        }

    @pytest.mark.parametrize(
        ("freshness", "reason"),
        [
            pytest.param({"max_age_minutes": 5, "max_wait_minutes": 10}, "what to wait for", id="nothing"),
            pytest.param(
                {"cube": True, "asset": "a://b", "max_age_minutes": 5, "max_wait_minutes": 10},
                "not both",
                id="both",
            ),
            pytest.param(
                {"asset": " ", "max_age_minutes": 5, "max_wait_minutes": 10}, "URI", id="blank-asset"
            ),
            pytest.param(
                {"asset": "a://b\nc", "max_age_minutes": 5, "max_wait_minutes": 10}, "one line", id="newline"
            ),
            pytest.param(
                {"cube": True, "max_age_minutes": 0, "max_wait_minutes": 10}, "max_age_minutes", id="age-0"
            ),
            pytest.param(
                {"cube": True, "max_age_minutes": 5, "max_wait_minutes": 2000}, "max_wait", id="wait-long"
            ),
            pytest.param({"cube": True, "max_wait_minutes": 10}, "max_age_minutes", id="age-missing"),
            pytest.param(
                {"cube": True, "max_age_minutes": 5, "max_wait_minutes": 10, "x": 1}, "x", id="extra"
            ),
        ],
    )
    def test_refused_with_one_line(self, freshness: dict[str, object], reason: str) -> None:
        with pytest.raises(AlertValidationError, match=reason) as refused:
            validate_alert_spec(self.spec(**freshness))
        assert "\n" not in str(refused.value)

    def test_only_reports_wait(self) -> None:
        with pytest.raises(AlertValidationError, match="freshness"):
            parse_alert_spec(
                {
                    "organization_id": 1,
                    "alert_name": "x",
                    "recipients": ["a@example.com"],
                    "cube_query": {"measures": ["orders.count"]},
                    "threshold": {"condition": "GREATER_THAN", "threshold_value": 1, "freshness": {}},
                }
            )
