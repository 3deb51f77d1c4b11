"""The package's counters: one call per finished slot, never breaking the alert."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from kpi_alerts import metrics


@pytest.fixture
def sent() -> Iterator[list[tuple[str, int]]]:
    calls: list[tuple[str, int]] = []
    metrics.set_sink(lambda name, count: calls.append((name, count)))
    yield calls
    metrics.set_sink(None)


def test_a_finished_slot_counts_its_status_and_how_late_it_finished(sent: list[tuple[str, int]]) -> None:
    slot = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)
    metrics.slot_finished("sent", slot=slot, now=slot + timedelta(seconds=42.4))
    metrics.slot_finished("failed", slot=slot, now=slot - timedelta(seconds=3))  # clock skew: not negative
    assert sent == [
        ("kpi_alerts.sent", 1),
        ("kpi_alerts.late_seconds", 42),
        ("kpi_alerts.failed", 1),
        ("kpi_alerts.late_seconds", 0),
    ]


def test_a_failing_sink_never_breaks_the_alert() -> None:
    def broken(name: str, count: int) -> None:
        raise OSError("statsd unreachable")

    metrics.set_sink(broken)
    try:
        metrics.slot_finished("sent", slot=datetime.now(UTC), now=datetime.now(UTC))
    finally:
        metrics.set_sink(None)


def test_outside_airflow_metrics_off_the_default_sink_is_quiet() -> None:
    metrics.slot_finished("missed", slot=datetime.now(UTC), now=datetime.now(UTC))
