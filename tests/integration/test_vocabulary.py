"""The vocabulary's closed lists equal the database's CHECK constraints (read from the migrated DB)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from kpi_alerts.vocabulary import AlertType, AttachmentKind, LedgerStatus

pytestmark = pytest.mark.services


def check_values(db: psycopg.Connection[Any], constraint: str) -> set[str]:
    """The quoted values of a ``CHECK (column IN (...))`` constraint, as PostgreSQL stores it."""
    row = db.execute(
        "SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conname = %(name)s",
        {"name": constraint},
    ).fetchone()
    assert row is not None, f"no constraint {constraint}"
    # e.g. CHECK ((status = ANY (ARRAY['claimed'::text, 'retrying'::text, ...])))
    return set(re.findall(r"'([^']*)'::text", row["definition"]))


def test_ledger_statuses_are_the_status_check_constraint(db: psycopg.Connection[Any]) -> None:
    assert {s.value for s in LedgerStatus} == check_values(db, "kpi_alerts_result_status_check")


def test_attachment_kinds_are_the_attachment_type_check_constraint(db: psycopg.Connection[Any]) -> None:
    assert {k.value for k in AttachmentKind} == check_values(db, "kpi_schedules_attachment_type_check")


def test_alert_types_are_the_alert_type_check_constraint(db: psycopg.Connection[Any]) -> None:
    assert {t.value for t in AlertType} == check_values(db, "kpi_alerts_alert_type_check")
