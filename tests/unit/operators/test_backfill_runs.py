"""A backfill run is told apart by its Airflow context (``dag_run.run_type``), and only its claim settings
measure the misfire window from the wall clock (the rule itself: ``ClaimSettings.oldest_sendable_slot``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.api.datamodels._generated import DagRunType

from kpi_alerts.ledger.claim_terms import ClaimSettings
from kpi_alerts.operators.tasks import TaskSettings, claim_settings_of, is_backfill

NOW = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)
TWO_DAYS_AGO = NOW - timedelta(days=2)


@pytest.mark.parametrize(
    ("run_type", "backfill"),
    [
        (DagRunType.BACKFILL, True),  # the Task SDK's context (a task under the scheduler)
        ("backfill", True),  # a plain string (dag.test()'s core DagRun)
        (DagRunType.SCHEDULED, False),
        (DagRunType.MANUAL, False),  # `airflow dags test kpi_alerts <T>` stays reproducible
        (None, False),
    ],
)
def test_a_backfill_run_is_read_from_the_dag_runs_run_type(run_type: object, backfill: bool) -> None:
    context = {"dag_run": SimpleNamespace(run_type=run_type)}
    assert is_backfill(context) is backfill
    claim = claim_settings_of(context, TaskSettings(misfire_minutes=60))
    assert claim.backfill is backfill
    oldest = claim.oldest_sendable_slot(logical_time=TWO_DAYS_AGO, now=NOW)
    assert oldest == (NOW if backfill else TWO_DAYS_AGO) - timedelta(hours=1)


def test_a_backfill_logical_time_ahead_of_a_skewed_clock_counts_from_the_logical_time() -> None:
    settings = ClaimSettings(misfire_window=timedelta(hours=1), backfill=True)
    assert settings.oldest_sendable_slot(logical_time=NOW, now=NOW - timedelta(minutes=1)) == NOW - timedelta(
        hours=1
    )
    assert not is_backfill({})
