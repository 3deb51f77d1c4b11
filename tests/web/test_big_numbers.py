"""Issue 23 item 10: numbers at or above 2^63 in the REST API (a real ``airflow api-server``).

PostgreSQL's bigint ends at 2^63 - 1; before, ``?offset=``, ``?organization_id=`` and a history offset of
2^63 reached the database and came back as 500s. They are refused with 422 and a reason.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from kpi_alerts.ledger.alert_store import create_alert
from tests.web.conftest import AirflowApi
from tests.web.test_rest_api import schedule_spec

pytestmark = [pytest.mark.slow, pytest.mark.services]

BIG = 2**63


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"/alerts?offset={BIG}", id="offset"),
        pytest.param(f"/alerts?organization_id={BIG}", id="organization_id"),
        pytest.param("/alerts/{id}/history?offset=" + str(BIG), id="history offset"),
        pytest.param(f"/alerts/{BIG}", id="alert id"),
        pytest.param(f"/alerts/{BIG}/history", id="history of alert id"),
    ],
)
def test_numbers_beyond_bigint_are_refused_with_422(
    airflow_api: AirflowApi, db: psycopg.Connection[Any], path: str
) -> None:
    alert = create_alert(db, schedule_spec())
    answer = airflow_api.call("GET", path.format(id=alert.alert_id))
    assert answer.status_code == 422, answer.text
    assert "less than or equal to 9223372036854775807" in answer.text


def test_the_largest_bigint_offset_is_an_empty_page(
    airflow_api: AirflowApi, db: psycopg.Connection[Any]
) -> None:
    create_alert(db, schedule_spec())
    answer = airflow_api.call("GET", f"/alerts?offset={BIG - 1}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["alerts"] == [] and answer.json()["total_entries"] == 1
