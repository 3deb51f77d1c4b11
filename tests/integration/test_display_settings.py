"""An alert's display settings (issue 14): stored by migration 0008, validated, loaded for the report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_store import create_alert, load_alert, set_organization_currency
from tests.integration.test_schema_and_creation import NOW, schedule_spec

pytestmark = pytest.mark.services


def test_settings_round_trip_and_the_organizations_currency_is_joined(db: psycopg.Connection[Any]) -> None:
    labels = {"orders.total_amount": "Umsatz", "orders.created_at": "Tag"}
    created = create_alert(
        db,
        schedule_spec(locale="de-DE", currency="EUR", percent_scale="percent", column_labels=labels),
        now=NOW,
    )
    org = 424_242  # an organization no other test uses (its setting outlives the test's alerts)
    plain = create_alert(db, schedule_spec(organization_id=org), now=NOW)
    set_organization_currency(db, org, "CHF", now=datetime(2026, 11, 28, tzinfo=UTC))
    try:
        alert, other = load_alert(db, created.alert_id), load_alert(db, plain.alert_id)
    finally:
        db.execute("DELETE FROM kpi_organization_settings WHERE organization_id = %s", (org,))
    assert alert is not None and other is not None
    display = alert.display
    assert (display.locale, display.currency, display.percent_scale) == ("de-DE", "EUR", "percent")
    assert display.column_labels == labels and display.organization_currency is None
    defaults = other.display
    assert (defaults.locale, defaults.currency, defaults.organization_currency) == ("en-US", None, "CHF")
    assert defaults.percent_scale is None and defaults.column_labels == {}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"locale": "zz-QQ"}, "unknown locale"),
        ({"currency": "XYZ"}, "unknown currency"),
        ({"percent_scale": "ratio"}, "percent_scale"),
        ({"column_labels": {"orders.total_amount": "two\nlines"}}, "column_labels"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_stored(
    db: psycopg.Connection[Any], overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(AlertValidationError, match=reason):
        create_alert(db, schedule_spec(**overrides), now=NOW)
    assert db.execute("SELECT count(*) AS n FROM kpi_alerts").fetchone() == {"n": 0}


def test_the_table_refuses_what_the_api_would(db: psycopg.Connection[Any]) -> None:
    created = create_alert(db, schedule_spec(), now=NOW)
    for column, value in (("currency", "usd"), ("percent_scale", "ratio"), ("locale", "not a locale")):
        with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
            db.execute(
                f"UPDATE kpi_alerts SET {column} = %s WHERE id = %s",
                (value, created.alert_id),
            )
