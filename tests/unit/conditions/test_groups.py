"""Per-group checks: each group's decision, the alert's one notice and its sentence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kpi_alerts.conditions.groups import MAX_GROUPS, check_group_by, decide_groups, split_by_group
from kpi_alerts.conditions.threshold_state import AlertState, Settings, StoredState
from kpi_alerts.conditions.thresholds import ThresholdCondition
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import Column, KpiData

C = ThresholdCondition
T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)
REGION = Column("orders.region", "Region", "dimension", "string")
COUNT = Column("orders.count", "Orders", "measure", "count")


def data(**counts: int) -> KpiData:
    return KpiData(
        (REGION, COUNT),
        tuple({"orders.region": g, "orders.count": Decimal(n)} for g, n in counts.items()),
        "UTC",
    )


def decide(stored: dict[str, StoredState], now: datetime = T0, **counts: int):  # type: ignore[no-untyped-def]
    return decide_groups(
        data(**counts),
        group_by="orders.region",
        measure="orders.count",
        measure_title="Orders",
        condition=C.GREATER_THAN,
        threshold=Decimal(2),
        recovery=None,
        stored=stored,
        now=now,
        settings=Settings(),
    )


def stored_after(decision) -> dict[str, StoredState]:  # type: ignore[no-untyped-def]
    return {c.group: c.transition.stored for c in decision.checks}


def test_a_new_group_breaching_notifies_a_still_breaching_one_does_not() -> None:
    first = decide({}, east=3, west=1)
    assert first.notify == "triggered" and first.state is AlertState.TRIGGERED
    assert first.describe() == "breaching: east (Orders is 3: Orders > 2 is met) (2 group(s) checked)"
    second = decide(stored_after(first), T0 + timedelta(hours=1), east=3, west=4)
    assert [(c.group, c.transition.notify) for c in second.checks] == [("east", None), ("west", "triggered")]
    assert second.describe() == (
        "breaching: west (Orders is 4: Orders > 2 is met); breaching, already notified: east "
        "(2 group(s) checked)"
    )
    third = decide(stored_after(second), T0 + timedelta(hours=2), east=1, west=4)
    assert third.notify == "triggered"  # east recovered, but west still breaches: the problem stands
    assert third.describe().startswith("recovered: east (Orders is 1: Orders > 2 is not met)")
    fourth = decide(stored_after(third), T0 + timedelta(hours=3), east=1, west=1)
    assert fourth.notify == "recovered" and fourth.state is AlertState.OK
    quiet = decide(stored_after(fourth), T0 + timedelta(hours=4), east=1, west=1)
    assert quiet.notify is None and quiet.describe() == "no group changed (2 group(s) checked)"


def test_a_breaching_group_that_disappears_is_no_data() -> None:
    first = decide({}, east=3)
    gone = decide(stored_after(first), T0 + timedelta(hours=1), west=1)
    east = next(c for c in gone.checks if c.group == "east")
    assert east.result.status == "no_data" and east.transition.new_state is AlertState.TRIGGERED  # keep_last


def test_validation() -> None:
    query = {"measures": ["orders.count"], "dimensions": ["orders.region"]}
    check_group_by(query, "orders.region", C.GREATER_THAN)
    with pytest.raises(AlertValidationError, match="not one of the query's dimensions"):
        check_group_by(query, "orders.status", C.GREATER_THAN)
    with pytest.raises(AlertValidationError, match="do not apply to OUTSIDE_EXPECTED_RANGE"):
        check_group_by(query, "orders.region", C.OUTSIDE_EXPECTED_RANGE)
    with pytest.raises(AlertValidationError, match=f"at most {MAX_GROUPS}"):
        split_by_group(data(**{f"g{i}": 1 for i in range(MAX_GROUPS + 1)}), "orders.region")
