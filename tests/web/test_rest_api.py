"""The REST API on a real Airflow API server: every route, its answers and its refusals.

401 without a token, 403 without the DAG permission (reads: the no-role user; writes: the viewer too),
404 for an unknown alert, 422 with the readable reason; what a refusal leaves in the database: nothing.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from devstack import free_port
from devstack.mail import MailCatcher
from devstack.stack import Stack
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from tests.factories import ledger_row
from tests.web.conftest import API, BIN, AirflowApi, api_server_env, running_api_server

pytestmark = [pytest.mark.slow, pytest.mark.services]


def schedule_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "organization_id": 1,
        "alert_name": "Weekly revenue",
        "recipients": ["finance@org1.example.com"],
        "cube_query": {
            "measures": ["orders.total_amount"],
            "timeDimensions": [
                {
                    "dimension": "orders.created_at",
                    "granularity": "day",
                    "dateRange": ["2026-11-01", "2026-11-07"],
                }
            ],
        },
        "schedule": {
            "frequency_interval": "week",
            "schedule_hour": 9,
            "selected_days": [1],
            "timezone": "America/Los_Angeles",
            "attachment_type": "csv",
        },
    }
    spec.update(overrides)
    return spec


def threshold_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "organization_id": 2,
        "alert_name": "Too many orders",
        "recipients": ["ops@org2.example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "1"},
    }
    spec.update(overrides)
    return spec


def record_result(
    db: psycopg.Connection[Any], alert_id: int, slot: datetime, status: str, error: str | None
) -> None:
    """A ledger row as a run writes it (the runs themselves are tested elsewhere)."""
    db.execute(
        """
        INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at,
                                      finished_at, updated_at, error, try_number)
        SELECT cron_job_id, id, organization_id, %(slot)s, %(status)s, %(slot)s, %(slot)s, %(slot)s, %(error)s, 1
        FROM kpi_alerts WHERE id = %(alert_id)s
        """,
        {"alert_id": alert_id, "slot": slot, "status": status, "error": error},
    )


def counts(db: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = db.execute(
        """SELECT (SELECT count(*) FROM kpi_alerts) AS a, (SELECT count(*) FROM cron_job_results) AS r,
                  (SELECT count(*) FROM cron_jobs WHERE master_locked) AS p,
                  (SELECT count(*) FROM kpi_alert_events) AS e"""
    ).fetchone()
    return (row["a"], row["r"], row["p"], row["e"])


ROUTES = [
    pytest.param("GET", "/alerts", None, "read", id="GET /alerts"),
    pytest.param("POST", "/alerts", "spec", "edit", id="POST /alerts"),
    pytest.param("GET", "/alerts/{id}", None, "read", id="GET /alerts/{id}"),
    pytest.param("PATCH", "/alerts/{id}", {"alert_name": "Renamed"}, "edit", id="PATCH /alerts/{id}"),
    pytest.param("DELETE", "/alerts/{id}", None, "edit", id="DELETE /alerts/{id}"),
    pytest.param("POST", "/alerts/{id}/pause", None, "edit", id="POST /alerts/{id}/pause"),
    pytest.param("POST", "/alerts/{id}/resume", None, "edit", id="POST /alerts/{id}/resume"),
    pytest.param(
        "POST",
        "/alerts/{id}/snooze",
        {"until": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        "edit",
        id="POST /alerts/{id}/snooze",
    ),
    pytest.param("POST", "/alerts/{id}/test-send", {"to": "me@example.com"}, "edit", id="POST test-send"),
    pytest.param("GET", "/alerts/{id}/history", None, "read", id="GET /alerts/{id}/history"),
    pytest.param("GET", "/organizations/{id}/quiet-hours", None, "read", id="GET org quiet-hours"),
    pytest.param(
        "PUT",
        "/organizations/{id}/quiet-hours",
        {"from": "22:00", "to": "07:00", "timezone": "UTC"},
        "edit",
        id="PUT org quiet-hours",
    ),
    pytest.param("DELETE", "/organizations/{id}/quiet-hours", None, "edit", id="DELETE org quiet-hours"),
]


def fresh_spec(freshness: dict[str, Any]) -> dict[str, Any]:
    """:func:`schedule_spec` with a report that waits for fresh data."""
    spec = schedule_spec()
    spec["schedule"] = {**spec["schedule"], "freshness": freshness}
    return spec


class TestAccess:
    @pytest.mark.parametrize(("method", "path", "body", "needs"), ROUTES)
    def test_every_route_needs_a_token_and_the_dag_permission(
        self,
        airflow_api: AirflowApi,
        db: psycopg.Connection[Any],
        mailbox: MailCatcher,
        method: str,
        path: str,
        body: Any,
        needs: str,
    ) -> None:
        alert = create_alert(db, schedule_spec())
        url = path.format(id=alert.alert_id)
        payload = schedule_spec() if body == "spec" else body
        before = counts(db)

        no_token = airflow_api.call(method, url, user=None, json_body=payload)
        assert no_token.status_code == 401, no_token.text
        assert no_token.json() == {"detail": "Not authenticated"}

        bad_token = requests.request(
            method,
            f"{airflow_api.base_url}{API}{url}",
            json=payload,
            headers={"Authorization": "Bearer not-a-token"},
            timeout=30,
        )
        assert bad_token.status_code == 403, bad_token.text  # Airflow's answer to a forged token

        no_role = airflow_api.call(method, url, user="nobody", json_body=payload)
        assert no_role.status_code == 403, no_role.text
        viewer = airflow_api.call(method, url, user="viewer", json_body=payload)
        assert viewer.status_code == (403 if needs == "edit" else 200), viewer.text
        assert counts(db) == before  # a refusal writes nothing
        assert mailbox.messages() == []

    def test_the_ui_cookie_authenticates_like_a_bearer_token(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        create_alert(db, schedule_spec())
        listed = requests.get(
            f"{airflow_api.base_url}{API}/alerts", cookies={"_token": airflow_api.token("viewer")}, timeout=30
        )
        assert listed.status_code == 200
        assert listed.json()["total_entries"] == 1
        paused = requests.post(  # as the page's own fetch sends it (tests/web/test_csrf.py: from elsewhere)
            f"{airflow_api.base_url}{API}/alerts/{listed.json()['alerts'][0]['id']}/pause",
            cookies={"_token": airflow_api.token("editor")},
            headers={"Origin": airflow_api.base_url, "Content-Type": "application/json"},
            timeout=30,
        )
        assert paused.status_code == 200
        assert paused.json()["paused"] is True

    def test_the_openapi_document_lists_every_route(self, airflow_api: AirflowApi) -> None:
        answer = requests.get(f"{airflow_api.base_url}{API}/openapi.json", timeout=30)
        assert answer.status_code == 200
        paths = answer.json()["paths"]
        assert set(paths) == {
            "/alerts",
            "/alerts/{alert_id}",
            "/alerts/{alert_id}/pause",
            "/alerts/{alert_id}/resume",
            "/alerts/{alert_id}/test-send",
            "/alerts/{alert_id}/snooze",
            "/alerts/{alert_id}/history",
            "/organizations/{organization_id}/quiet-hours",
        }
        assert set(paths["/alerts"]) == {"get", "post"}
        assert set(paths["/alerts/{alert_id}"]) == {"get", "patch", "delete"}
        assert "401" in paths["/alerts"]["get"]["responses"]


class TestAlerts:
    def test_list_filters_and_pages(self, airflow_api: AirflowApi, db: psycopg.Connection[Any]) -> None:
        weekly = create_alert(db, schedule_spec())
        other_org = create_alert(db, schedule_spec(organization_id=3, alert_name="Org 3", is_active=False))
        threshold = create_alert(db, threshold_spec())
        db.execute(
            "UPDATE kpi_thresholds SET state = 'TRIGGERED' WHERE kpi_alert_id = %s", [threshold.alert_id]
        )
        record_result(db, weekly.alert_id, datetime(2026, 11, 30, 17, tzinfo=UTC), "failed", "Cube said no")
        assert airflow_api.call("POST", f"/alerts/{weekly.alert_id}/pause").status_code == 200

        def ids(**params: Any) -> list[int]:
            answer = airflow_api.call("GET", "/alerts", user="viewer", params=params)
            assert answer.status_code == 200, answer.text
            return [a["id"] for a in answer.json()["alerts"]]

        assert ids() == [weekly.alert_id, other_org.alert_id, threshold.alert_id]
        assert ids(organization_id=3) == [other_org.alert_id]
        assert ids(alert_type="threshold") == [threshold.alert_id]
        assert ids(state="TRIGGERED") == [threshold.alert_id]
        assert ids(active="false") == [other_org.alert_id]
        assert ids(paused="true") == [weekly.alert_id]
        page = airflow_api.call("GET", "/alerts", params={"limit": 2, "offset": 2}).json()
        assert (page["total_entries"], page["limit"], page["offset"]) == (3, 2, 2)
        assert [a["id"] for a in page["alerts"]] == [threshold.alert_id]

        line = airflow_api.call("GET", "/alerts", params={"organization_id": 1}).json()["alerts"][0]
        assert line["schedule_description"] == "Every Monday at 09:00 (America/Los_Angeles)"
        assert line["paused"] is True and line["status"] == "paused"
        assert line["last_result"]["status"] == "failed"
        assert line["last_result"]["error"] == "Cube said no"
        for bad in ({"alert_type": "cron"}, {"limit": 0}, {"state": "bad"}, {"organization_id": "x"}):
            assert airflow_api.call("GET", "/alerts", params=bad).status_code == 422, bad

    def test_create_answers_201_with_the_alert_or_422_with_the_reason(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        created = airflow_api.call("POST", "/alerts", user="editor", json_body=threshold_spec())
        assert created.status_code == 201, created.text
        alert = created.json()
        assert alert["alert_type"] == "threshold" and alert["state"] == "OK"
        assert alert["definition"]["threshold"]["condition"] == "GREATER_THAN"
        assert len(alert["next_runs"]) == 5
        assert alert["recent_events"][0]["actor"] == "api:editor"
        before = counts(db)

        refusals = {
            "recipients": schedule_spec(recipients=["not-an-address"]),
            "timezone": schedule_spec(
                schedule={"frequency_interval": "day", "timezone": "Mars/Olympus_Mons"}
            ),
            "both kinds": {**schedule_spec(), "threshold": threshold_spec()["threshold"]},
            "field": schedule_spec(colour="red"),
        }
        for what, spec in refusals.items():
            refused = airflow_api.call("POST", "/alerts", json_body=spec)
            assert refused.status_code == 422, (what, refused.text)
            detail = refused.json()["detail"]
            assert isinstance(detail, str) and detail, what  # one readable line, not a stack trace
        assert (
            "not-an-address"
            in airflow_api.call("POST", "/alerts", json_body=refusals["recipients"]).json()["detail"]
        )
        not_json = requests.post(
            f"{airflow_api.base_url}{API}/alerts",
            data="{not json",
            headers={
                "Authorization": f"Bearer {airflow_api.token('admin')}",
                "Content-Type": "application/json",
            },
            timeout=30,
        )
        assert not_json.status_code == 422
        assert airflow_api.call("POST", "/alerts", json_body=["a list"]).status_code == 422
        assert counts(db) == before  # nothing half-written

    def test_a_report_that_waits_for_fresh_data_through_the_api(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        fresh = {"cube": True, "max_age_minutes": 60, "max_wait_minutes": 120}
        created = airflow_api.call("POST", "/alerts", user="editor", json_body=fresh_spec(fresh))
        assert created.status_code == 201, created.text
        alert = created.json()
        assert alert["definition"]["schedule"]["freshness"] == fresh
        assert alert["freshness"] == (
            "waits up to 2 h after its time for Cube's data to be at most 1 h old (then sent anyway, saying how old)"
        )
        assert alert["schedule_description"].endswith(alert["freshness"])
        assert alert["waiting_for_data"] is None
        waiting = (
            "waiting for fresh data: Cube's data is as of 2026-12-07 06:40, older than 1 h before the slot"
        )
        ledger_row(db, alert["cron_job_id"], status="waiting", error=waiting, kpi_alert_id=alert["id"])
        shown = airflow_api.call("GET", f"/alerts/{alert['id']}").json()
        assert shown["waiting_for_data"] == waiting
        assert shown["recent_results"][0]["status"] == "waiting"
        asset = {  # a merge patch: null removes "cube"
            "freshness": {
                "cube": None,
                "asset": "warehouse://orders",
                "max_age_minutes": 720,
                "max_wait_minutes": 60,
            }
        }
        patched = airflow_api.call(
            "PATCH", f"/alerts/{alert['id']}", user="editor", json_body={"schedule": asset}
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["freshness"].startswith(
            "waits up to 1 h after its time for asset 'warehouse://orders'"
        )
        for bad, reason in (
            ({"cube": True, "asset": "x://y", "max_age_minutes": 5, "max_wait_minutes": 5}, "not both"),
            ({"max_age_minutes": 5, "max_wait_minutes": 5}, "what to wait for"),
            ({"cube": True, "max_age_minutes": 5, "max_wait_minutes": 2}, "max_wait_minutes"),
        ):
            refused = airflow_api.call("POST", "/alerts", user="editor", json_body=fresh_spec(bad))
            assert refused.status_code == 422 and reason in refused.text, refused.text
            assert "\n" not in refused.json()["detail"]

    def test_cron_and_calendar_schedules_through_the_api(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        quarterly = {
            "frequency_interval": "cron",
            "cron_expression": "0 9 * 1,4,7,10 mon#1",
            "timezone": "UTC",
        }
        created = airflow_api.call(
            "POST", "/alerts", user="editor", json_body=schedule_spec(schedule=quarterly)
        )
        assert created.status_code == 201, created.text
        alert = created.json()
        assert alert["definition"]["schedule"]["cron_expression"] == "0 9 * 1,4,7,10 mon#1"
        assert alert["schedule_description"] == (
            "At 09:00, on the first Monday of the month, only in January, April, July, and October (UTC)"
        )
        assert all(
            run["words"].startswith("Monday ") and "09:00 UTC" in run["words"] for run in alert["next_runs"]
        )
        month_end = {
            "schedule": {
                "frequency_interval": "month",
                "business_day": -1,
                "schedule_hour": 17,
                "cron_expression": None,
            }
        }
        patched = airflow_api.call("PATCH", f"/alerts/{alert['id']}", user="editor", json_body=month_end)
        assert patched.status_code == 200, patched.text
        assert patched.json()["schedule_description"].startswith(
            "Every month on the last business day at 17:00"
        )
        business_hours = {"days": [1, 2, 3, 4, 5], "from": "08:00", "to": "18:00"}
        checked = {"condition": "GREATER_THAN", "threshold_value": "1", "check_every_minutes": 15}
        quarter_hourly = airflow_api.call(
            "POST",
            "/alerts",
            user="editor",
            json_body=threshold_spec(threshold={**checked, "active_hours": business_hours}),
        )
        assert quarter_hourly.status_code == 201, quarter_hourly.text
        assert quarter_hourly.json()["definition"]["threshold"]["active_hours"] == business_hours
        assert quarter_hourly.json()["schedule_description"].startswith(
            "Checked every 15 minutes (on the UTC grid)"
        )
        before = counts(db)
        for schedule, reason in (
            ({"frequency_interval": "cron", "cron_expression": "0 9 31 2 *"}, "never fires"),
            ({"frequency_interval": "week", "every_n_weeks": 0, "selected_days": [1]}, "every_n_weeks"),
            ({"frequency_interval": "day", "holiday_country": "Atlantis"}, "holiday"),
        ):
            refused = airflow_api.call("POST", "/alerts", json_body=schedule_spec(schedule=schedule))
            assert refused.status_code == 422 and reason in refused.json()["detail"], refused.text
        assert counts(db) == before

    def test_show_one_alert(self, airflow_api: AirflowApi, db: psycopg.Connection[Any]) -> None:
        alert = create_alert(db, schedule_spec())
        shown = airflow_api.call("GET", f"/alerts/{alert.alert_id}", user="viewer")
        assert shown.status_code == 200
        detail = shown.json()
        assert detail["definition"]["schedule"]["timezone"] == "America/Los_Angeles"
        assert [r["local"][-5:] for r in detail["next_runs"]] == ["(Mon)"] * 5
        assert detail["next_runs"][0]["local"].startswith(detail["next_run_local"][:16])
        assert airflow_api.call("GET", "/alerts/999999").status_code == 404
        assert airflow_api.call("GET", "/alerts/not-a-number").status_code == 422

    def test_patch_changes_what_it_names_and_validates_like_creation(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        alert = create_alert(db, schedule_spec())
        changed = airflow_api.call(
            "PATCH",
            f"/alerts/{alert.alert_id}",
            user="editor",
            json_body={
                "alert_name": "Daily revenue",
                "schedule": {"frequency_interval": "day", "selected_days": []},
            },
        )
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["alert_name"] == "Daily revenue"
        assert body["changed"] == ["alert_name", "schedule.frequency_interval", "schedule.selected_days"]
        assert body["schedule_description"].startswith("Every day at 09:00")
        assert body["definition"]["recipients"] == ["finance@org1.example.com"]  # untouched fields stay
        before = counts(db)
        for patch in (
            {"organization_id": 2},
            {"schedule": {"schedule_hour": 25}},
            {"threshold": {"condition": "GREATER_THAN", "threshold_value": "1"}},
        ):
            refused = airflow_api.call("PATCH", f"/alerts/{alert.alert_id}", json_body=patch)
            assert refused.status_code == 422, (patch, refused.text)
            assert isinstance(refused.json()["detail"], str)
        assert counts(db) == before
        assert airflow_api.call("PATCH", "/alerts/999999", json_body={"alert_name": "x"}).status_code == 404

    def test_delete_keeps_the_ledger(self, airflow_api: AirflowApi, db: psycopg.Connection[Any]) -> None:
        alert = create_alert(db, schedule_spec())
        record_result(db, alert.alert_id, datetime(2026, 11, 30, 17, tzinfo=UTC), "sent", None)
        deleted = airflow_api.call("DELETE", f"/alerts/{alert.alert_id}", user="editor")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {
            "id": alert.alert_id,
            "deleted": True,
            "cron_job_id": alert.cron_job_id,
            "ledger_rows_kept": 1,
        }
        assert airflow_api.call("GET", f"/alerts/{alert.alert_id}").status_code == 404
        history = airflow_api.call("GET", f"/alerts/{alert.alert_id}/history")
        assert history.status_code == 200
        assert [r["status"] for r in history.json()["results"]] == ["sent"]
        assert airflow_api.call("DELETE", f"/alerts/{alert.alert_id}").status_code == 404

    def test_pause_and_resume(self, airflow_api: AirflowApi, db: psycopg.Connection[Any]) -> None:
        alert = create_alert(db, schedule_spec(), now=datetime.now(UTC) - timedelta(days=30))
        paused = airflow_api.call("POST", f"/alerts/{alert.alert_id}/pause", user="editor")
        assert paused.status_code == 200
        assert (paused.json()["changed"], paused.json()["status"]) == (True, "paused")
        again = airflow_api.call("POST", f"/alerts/{alert.alert_id}/pause")
        assert (again.status_code, again.json()["changed"]) == (200, False)
        assert db.execute(
            "SELECT master_locked FROM cron_jobs WHERE id = %s", [alert.cron_job_id]
        ).fetchone()["master_locked"]
        resumed = airflow_api.call("POST", f"/alerts/{alert.alert_id}/resume", user="editor")
        assert (resumed.status_code, resumed.json()["changed"], resumed.json()["status"]) == (
            200,
            True,
            "active",
        )
        # no backlog: the next run is the next slot after now, not the month-old one
        assert datetime.fromisoformat(resumed.json()["next_run_at"]) > datetime.now(UTC)
        assert airflow_api.call("POST", f"/alerts/{alert.alert_id}/resume").json()["changed"] is False
        actions = [
            e["action"] for e in airflow_api.call("GET", f"/alerts/{alert.alert_id}").json()["recent_events"]
        ]
        assert actions == ["resumed", "paused", "created"]
        assert airflow_api.call("POST", "/alerts/999999/pause").status_code == 404

    def test_an_organizations_quiet_hours_hold_its_reports(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        alert = create_alert(db, schedule_spec())  # Mondays 09:00 in Los Angeles
        org = load_alert(db, alert.alert_id).organization_id  # type: ignore[union-attr]
        body = {"from": "08:00", "to": "10:30", "timezone": "America/Los_Angeles", "days": [1]}
        put = airflow_api.call("PUT", f"/organizations/{org}/quiet-hours", user="editor", json_body=body)
        assert put.status_code == 200, put.text
        assert (
            put.json()["quiet_hours"]["words"] == "Quiet 08:00-10:30, starting Monday (America/Los_Angeles)"
        )
        assert airflow_api.call("GET", f"/organizations/{org}/quiet-hours").json() == put.json()
        shown = airflow_api.call("GET", f"/alerts/{alert.alert_id}").json()
        assert shown["quiet_hours"] == [{"of": "organization", "words": put.json()["quiet_hours"]["words"]}]
        # Mondays 09:00 fall inside them: each later run is at their end, 10:30 (the first was planned before)
        assert {run["local"][11:16] for run in shown["next_runs"][1:]} == {"10:30"}
        refused = airflow_api.call(
            "PUT", f"/organizations/{org}/quiet-hours", json_body={**body, "to": "08:00"}
        )
        assert refused.status_code == 422 and "never end" in refused.text
        removed = airflow_api.call("DELETE", f"/organizations/{org}/quiet-hours", user="editor")
        assert removed.json() == {"organization_id": org, "quiet_hours": None}

    def test_snooze_until_a_time_and_end_it(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        alert = create_alert(db, schedule_spec(), now=datetime.now(UTC) - timedelta(days=30))
        until = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)  # the report is weekly
        snoozed = airflow_api.call(
            "POST", f"/alerts/{alert.alert_id}/snooze", user="editor", json_body={"until": until.isoformat()}
        )
        assert snoozed.status_code == 200, snoozed.text
        assert datetime.fromisoformat(snoozed.json()["snoozed_until"]) == until
        # nothing before the snooze's end: the next run is the first slot at or after it
        assert datetime.fromisoformat(snoozed.json()["next_run_at"]) >= until
        passed = airflow_api.call(
            "POST", f"/alerts/{alert.alert_id}/snooze", json_body={"until": "2020-01-01T00:00:00+00:00"}
        )
        assert passed.status_code == 422 and "has passed" in passed.text
        ended = airflow_api.call("POST", f"/alerts/{alert.alert_id}/snooze", json_body={"until": None})
        assert ended.status_code == 200 and ended.json()["snoozed_until"] is None
        assert datetime.fromisoformat(ended.json()["next_run_at"]) < until
        events = airflow_api.call("GET", f"/alerts/{alert.alert_id}").json()["recent_events"]
        assert [e["action"] for e in events][:2] == ["snoozed", "snoozed"]
        assert airflow_api.call("POST", "/alerts/999999/snooze", json_body={"until": None}).status_code == 404
        assert airflow_api.call("POST", "/alerts/999999/resume").status_code == 404

    def test_test_send_mails_one_address_and_records_no_slot(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any], mailbox: MailCatcher
    ) -> None:
        alert = create_alert(db, schedule_spec())
        sent = airflow_api.call(
            "POST", f"/alerts/{alert.alert_id}/test-send", user="editor", json_body={"to": "me@example.com"}
        )
        assert sent.status_code == 200, sent.text
        answer = sent.json()
        assert answer["to"] == "me@example.com" and answer["delivery"] == "smtp"
        assert answer["subject"].startswith("[TEST] ")
        messages = mailbox.messages()  # the catcher stores a message before it answers DATA
        assert [str(m["To"]) for m in messages] == ["me@example.com"]
        assert str(messages[0]["Subject"]).startswith("[TEST] ")
        assert db.execute("SELECT count(*) AS n FROM cron_job_results").fetchone()["n"] == 0
        events = db.execute(
            "SELECT actor, details FROM kpi_alert_events WHERE action = 'test_send' AND kpi_alert_id = %s",
            [alert.alert_id],
        ).fetchall()
        assert [(e["actor"], e["details"]["to"]) for e in events] == [("api:editor", "me@example.com")]

        for body in ({"to": "not-an-address"}, {"to": "a@example.com, b@example.com"}, {}):
            refused = airflow_api.call("POST", f"/alerts/{alert.alert_id}/test-send", json_body=body)
            assert refused.status_code == 422, (body, refused.text)
        assert (
            airflow_api.call(
                "POST", "/alerts/999999/test-send", json_body={"to": "me@example.com"}
            ).status_code
            == 404
        )

        broken = create_alert(db, schedule_spec(cube_query={"measures": ["orders.no_such_measure"]}))
        failed = airflow_api.call(
            "POST", f"/alerts/{broken.alert_id}/test-send", json_body={"to": "me@example.com"}
        )
        assert failed.status_code == 502, failed.text
        assert "no_such_measure" in failed.json()["detail"]
        assert len(mailbox.messages()) == 1

    def test_history_pages_and_filters_the_ledger(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        alert = create_alert(db, schedule_spec())
        first = datetime(2026, 11, 2, 17, tzinfo=UTC)
        for week in range(4):
            failed = week == 2
            record_result(
                db,
                alert.alert_id,
                first + timedelta(weeks=week),
                "failed" if failed else "sent",
                "Cube answered 400: unknown member" if failed else None,
            )
        history = airflow_api.call(
            "GET", f"/alerts/{alert.alert_id}/history", user="viewer", params={"limit": 3}
        )
        assert history.status_code == 200
        body = history.json()
        assert (body["total_entries"], len(body["results"])) == (4, 3)
        assert [r["slot"] for r in body["results"]] == [
            (first + timedelta(weeks=w)).isoformat() for w in (3, 2, 1)
        ]
        failures = airflow_api.call(
            "GET", f"/alerts/{alert.alert_id}/history", params={"status": "failed"}
        ).json()
        assert [(r["status"], r["error"]) for r in failures["results"]] == [
            ("failed", "Cube answered 400: unknown member")
        ]
        rest = airflow_api.call(
            "GET", f"/alerts/{alert.alert_id}/history", params={"limit": 3, "offset": 3}
        ).json()
        assert [r["slot"] for r in rest["results"]] == [first.isoformat()]
        assert (
            airflow_api.call(
                "GET", f"/alerts/{alert.alert_id}/history", params={"status": "nope"}
            ).status_code
            == 422
        )
        assert airflow_api.call("GET", "/alerts/999999/history").status_code == 404
        json.dumps(body)  # plain JSON all the way down


class TestUnderTheDag:
    def test_an_alert_paused_through_the_api_is_skipped_by_the_next_run(
        self,
        airflow_api: AirflowApi,
        db: psycopg.Connection[Any],
        mailbox: MailCatcher,
        kpi_dag: Any,
        airflow_connections: dict[str, str],
    ) -> None:
        from tests.integration.test_dag_end_to_end import LOGICAL_TIME, run_dag, schedule_alert, task_states

        created_at = LOGICAL_TIME - timedelta(minutes=4)
        paused = create_alert(
            db,
            schedule_alert(1, "Paused from the UI", ["p@org1.example.com"], "America/Los_Angeles", 9, 5),
            now=created_at,
        )
        active = create_alert(
            db,
            schedule_alert(2, "Still active", ["a@org2.example.com"], "Europe/London", 17, 3),
            now=created_at,
        )
        assert airflow_api.call("POST", f"/alerts/{paused.alert_id}/pause", user="editor").status_code == 200

        dag_run = run_dag(kpi_dag)

        assert str(dag_run.state) == "success", task_states(dag_run)
        assert [str(m["To"]) for m in mailbox.messages()] == ["a@org2.example.com"]
        history = airflow_api.call("GET", f"/alerts/{paused.alert_id}/history", user="viewer").json()
        assert [(r["slot"], r["status"], r["error"]) for r in history["results"]] == [
            (paused.next_run_at.isoformat(), "skipped", "paused by an operator")
        ]
        listed = {a["id"]: a for a in airflow_api.call("GET", "/alerts", user="viewer").json()["alerts"]}
        assert listed[paused.alert_id]["last_result"]["status"] == "skipped"
        assert listed[paused.alert_id]["paused"] is True
        assert listed[active.alert_id]["last_result"]["status"] == "sent"


class TestAlertsDatabase:
    def test_a_missing_or_unreachable_alerts_database_is_a_readable_503(
        self, tmp_path: Path, stack: Stack, db: psycopg.Connection[Any]
    ) -> None:
        """The API server reads ``kpi_alerts_db`` like any Airflow connection: here from its metadata DB."""
        env = api_server_env(stack, tmp_path, free_port())
        del env["AIRFLOW_CONN_KPI_ALERTS_DB"]
        create_alert(db, schedule_spec())

        def connection(*args: str) -> None:
            subprocess.run(
                [str(BIN / "airflow"), "connections", *args],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )

        with running_api_server(tmp_path, env) as api:
            missing = api.call("GET", "/alerts")
            assert missing.status_code == 503
            assert "no Airflow connection 'kpi_alerts_db'" in missing.json()["detail"]
            assert api.call("GET", "/alerts", user=None).status_code == 401  # still authentication first

            connection(
                "add", "kpi_alerts_db", "--conn-uri", f"postgresql://kpi:s3cret-pw@127.0.0.1:{free_port()}/x"
            )
            down = api.call("POST", "/alerts", json_body=schedule_spec())
            assert down.status_code == 503
            assert "cannot be reached" in down.json()["detail"]
            assert "s3cret-pw" not in down.text

            connection("delete", "kpi_alerts_db")
            connection("add", "kpi_alerts_db", "--conn-uri", stack.alerts_db_url)
            listed = api.call("GET", "/alerts")
            assert listed.status_code == 200
            assert listed.json()["total_entries"] == 1
