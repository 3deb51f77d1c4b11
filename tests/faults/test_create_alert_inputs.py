"""Hostile or unusual ``create-alert`` input that used to be stored wrong (issue 9, item 7, part).

``"condition": "greater_than"`` (the docs say both spellings work) ended in a CheckViolation; negative
percent thresholds and a ``kpi_measure`` outside the query were accepted; gates were stored as given.
Real PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_store import create_alert

pytestmark = [pytest.mark.faults, pytest.mark.services]

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def threshold(**overrides: Any) -> dict[str, Any]:
    return {
        "organization_id": 1,
        "alert_name": "Orders",
        "recipients": ["ops@example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "1", "timezone": "UTC", **overrides},
    }


def test_both_condition_spellings_are_stored_as_the_column_spelling(db: psycopg.Connection[Any]) -> None:
    create_alert(db, threshold(condition="greater_than"), now=NOW)
    create_alert(db, {**threshold(condition=">="), "alert_name": "Other"}, now=NOW)
    stored = [r["condition"] for r in db.execute("SELECT condition FROM kpi_thresholds ORDER BY id")]
    assert stored == ["GREATER_THAN", "GREATER_THAN_OR_EQUAL"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"condition": "INCREASED_BY_PERCENT", "threshold_value": "-5"}, "0 or more", id="neg-pct"
        ),
        pytest.param({"kpi_measure": "orders.total_amount"}, "kpi_measure", id="kpi-not-in-query"),
    ],
)
def test_wrong_thresholds_are_refused(
    db: psycopg.Connection[Any], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(AlertValidationError, match=message):
        create_alert(db, threshold(**overrides), now=NOW)
    assert db.execute("SELECT count(*) AS n FROM kpi_alerts").fetchone()["n"] == 0


def test_gates_are_stored_canonical(db: psycopg.Connection[Any]) -> None:
    spec = {
        "organization_id": 1,
        "alert_name": "Gated",
        "recipients": ["ops@example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "schedule": {
            "frequency_interval": "day",
            "gating_condition": {"measure": "orders.count", "op": "greater_than", "value": "10.0",
                                 "aggregate": "latest"},
        },
    }  # fmt: skip
    create_alert(db, spec, now=NOW)
    stored = db.execute("SELECT gating_condition FROM kpi_schedules").fetchone()["gating_condition"]
    assert stored == {"measure": "orders.count", "op": ">", "value": 10}
