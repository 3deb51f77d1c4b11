"""The "KPI alerts" page in a real headless Chromium (Debian's, driven by Playwright): log in through
Airflow's login form, open the page from the navigation, read the table, pause an alert, try it out.

Screenshots are kept in ``.artifacts/`` (the README shows a copy from ``docs/``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.ledger.alert_store import create_alert
from tests.conftest import REPO_ROOT
from tests.web.conftest import PASSWORDS, AirflowApi
from tests.web.test_rest_api import fresh_spec, record_result, schedule_spec, threshold_spec

pytestmark = [pytest.mark.slow, pytest.mark.services]

ARTIFACTS = REPO_ROOT / ".artifacts"
HOSTILE_NAME = 'Revenue <img src=x onerror="window.__xss = 1"> & <b>more</b>'
HOSTILE_ERROR = "Cube answered 400: <script>window.__xss = 2</script>"
# As root on a closed network: no sandbox, and none of Chromium's own background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: `make system-deps` installs Debian's chromium package"
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(
        timeout=30_000
    )  # waits on conditions; the 5 s default is short on a busy 2-core machine
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def log_in(page: Any, airflow_api: AirflowApi, user: str) -> Any:
    """Log in through Airflow's own login form, land on the KPI alerts page; return its frame."""
    page.goto(f"{airflow_api.base_url}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="KPI alerts").click()  # the entry in Airflow's navigation
    page.wait_for_url("**/plugin/kpi-alerts")
    return page.frame_locator("iframe")


def page_frame(page: Any) -> Any:
    """The page's own frame (the iframe): Airflow's page around it is at /plugin/kpi-alerts/kpi-alerts/ui/."""
    return next(f for f in page.frames if f is not page.main_frame and "/kpi-alerts/ui/" in f.url)


def test_an_operator_reads_pauses_and_tries_out_alerts(
    page: Any, airflow_api: AirflowApi, db: psycopg.Connection[Any], mailbox: MailCatcher
) -> None:
    from playwright.sync_api import expect

    weekly = create_alert(db, schedule_spec(organization_id=7, alert_name="Weekly revenue, org 7"))
    record_result(db, weekly.alert_id, datetime(2026, 11, 30, 17, tzinfo=UTC), "sent", None)
    report = create_alert(db, schedule_spec(alert_name=HOSTILE_NAME))
    record_result(db, report.alert_id, datetime(2026, 11, 30, 17, tzinfo=UTC), "failed", HOSTILE_ERROR)
    record_result(db, report.alert_id, datetime(2026, 11, 23, 17, tzinfo=UTC), "sent", None)
    threshold = create_alert(db, threshold_spec())
    db.execute("UPDATE kpi_thresholds SET state = 'TRIGGERED' WHERE kpi_alert_id = %s", [threshold.alert_id])

    frame = log_in(page, airflow_api, "admin")
    rows = frame.locator("#alerts tbody tr")
    expect(rows).to_have_count(3)
    first, second = (frame.locator(f'#alerts tr[data-alert-id="{a.alert_id}"]') for a in (report, threshold))
    expect(rows.nth(0).locator("td").nth(7)).to_have_text("sent · 2026-11-30 17:00 UTC")
    cells = first.locator("td")
    expect(cells.nth(1)).to_have_text(HOSTILE_NAME)  # user text shown as text, never run as HTML
    expect(cells.nth(2)).to_have_text("1")
    expect(cells.nth(3)).to_have_text("schedule")
    expect(cells.nth(4)).to_have_text("Every Monday at 09:00 (America/Los_Angeles)")
    expect(cells.nth(5)).to_contain_text("(Mon)")
    expect(cells.nth(7)).to_have_text(f"failed · 2026-11-30 17:00 UTC — {HOSTILE_ERROR}")
    expect(cells.nth(8)).to_have_text("no")
    expect(second.locator("td").nth(6)).to_have_text("TRIGGERED")
    expect(second.locator("td").nth(4)).to_contain_text("every hour")
    assert frame.locator("#alerts img, #alerts b, #alerts script").count() == 0
    assert page_frame(page).evaluate("window.__xss") is None

    first.get_by_role("button", name="Pause").click()
    expect(frame.locator("#message")).to_have_text(f"Alert {report.alert_id} paused.")
    expect(cells.nth(8)).to_have_text("yes")
    expect(cells.nth(5)).to_have_text("paused")
    expect(first.get_by_role("button", name="Resume")).to_be_visible()
    assert db.execute("SELECT master_locked FROM cron_jobs WHERE id = %s", [report.cron_job_id]).fetchone()[
        "master_locked"
    ]
    frame.locator("#filter-status").select_option("paused")
    frame.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(frame.locator("#page-info")).to_have_text("1\u20131 of 1")
    ARTIFACTS.mkdir(exist_ok=True)
    frame.locator("#filter-status").select_option("")
    frame.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(3)
    page.screenshot(path=str(ARTIFACTS / "kpi-alerts-page.png"))

    first.get_by_role("link", name=HOSTILE_NAME).click()
    expect(frame.locator("#alert-title")).to_have_text(f"{HOSTILE_NAME} (alert {report.alert_id})")
    expect(frame.locator("#failures tbody tr")).to_have_count(1)
    expect(frame.locator("#failures tbody td").nth(3)).to_have_text(HOSTILE_ERROR)
    expect(frame.locator("#history tbody tr")).to_have_count(2)
    expect(frame.locator("#next-runs li")).to_have_count(5)
    expect(frame.locator("#events tbody td").nth(1)).to_have_text("paused")
    expect(frame.locator("#pause")).to_be_disabled()
    frame.locator("#resume").click()
    expect(frame.locator("#message")).to_have_text(f"Alert {report.alert_id} resumed.")
    expect(frame.locator("#pause")).to_be_enabled()

    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")  # the browser's zone
    frame.locator("#snooze-until").fill(until)
    frame.get_by_role("button", name="Snooze", exact=True).click()
    expect(frame.locator("#message")).to_contain_text(f"Alert {report.alert_id} snoozed until ")
    expect(frame.locator("#unsnooze")).to_be_enabled()
    snoozed = db.execute("SELECT snoozed_until FROM kpi_alerts WHERE id = %s", [report.alert_id]).fetchone()
    assert snoozed["snoozed_until"] > datetime.now(UTC) + timedelta(days=1)
    frame.locator("#unsnooze").click()
    expect(frame.locator("#message")).to_have_text(f"Alert {report.alert_id} is no longer snoozed.")
    expect(frame.locator("#unsnooze")).to_be_disabled()

    frame.locator("#test-to").fill("operator@example.com")
    frame.get_by_role("button", name="Send test").click()
    expect(frame.locator("#message")).to_contain_text("Test sent to operator@example.com ([TEST] ")
    assert [str(m["To"]) for m in mailbox.messages()] == ["operator@example.com"]
    assert page_frame(page).evaluate("window.__xss") is None
    page.screenshot(path=str(ARTIFACTS / "kpi-alerts-alert-page.png"))

    # A threshold alert's page states its whole rule, the no-data and error policies included.
    frame.locator("body").evaluate(f"() => {{ window.location.hash = '#alert={threshold.alert_id}'; }}")
    expect(frame.locator("#alert-facts")).to_contain_text("TRIGGERED")
    expect(frame.locator("#alert-facts")).to_contain_text("> 1; no data: keep the last state; error: alert")


def test_a_report_waiting_for_fresh_data_says_so_on_its_page(
    page: Any, airflow_api: AirflowApi, db: psycopg.Connection[Any]
) -> None:
    from playwright.sync_api import expect

    spec = fresh_spec({"cube": True, "max_age_minutes": 60, "max_wait_minutes": 120})
    alert = create_alert(db, spec)
    waiting = "waiting for fresh data: Cube's data is as of 2026-12-07 06:40, older than 1 h before the slot"
    record_result(db, alert.alert_id, datetime(2026, 12, 7, 17, 0, tzinfo=UTC), "waiting", waiting)
    frame = log_in(page, airflow_api, "viewer")
    row = frame.locator(f'#alerts tr[data-alert-id="{alert.alert_id}"]')
    expect(row.locator("td.status-waiting")).to_contain_text("waiting")
    frame.locator("body").evaluate(f"() => {{ window.location.hash = '#alert={alert.alert_id}'; }}")
    facts = frame.locator("#alert-facts")
    expect(facts).to_contain_text("Fresh data")
    expect(facts).to_contain_text("waits up to 2 h after its time for Cube's data to be at most 1 h old")
    expect(facts.locator("dd.status-waiting")).to_have_text(waiting)
    expect(frame.locator("#history td.status-waiting")).to_have_count(1)


def test_a_viewer_reads_but_cannot_pause(
    page: Any, airflow_api: AirflowApi, db: psycopg.Connection[Any]
) -> None:
    from playwright.sync_api import expect

    alert = create_alert(db, schedule_spec())
    frame = log_in(page, airflow_api, "viewer")
    row = frame.locator("#alerts tbody tr")
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Pause").click()
    expect(frame.locator("#message")).to_contain_text(
        "Not allowed: this needs edit access to the kpi_alerts DAG"
    )
    expect(row.locator("td").nth(8)).to_have_text("no")
    assert not db.execute(
        "SELECT master_locked FROM cron_jobs WHERE id = %s", [alert.cron_job_id]
    ).fetchone()["master_locked"]


def test_the_page_sends_a_browser_without_a_session_to_the_login(page: Any, airflow_api: AirflowApi) -> None:
    page.goto(f"{airflow_api.base_url}/kpi-alerts/ui/")
    page.wait_for_url("**/auth/login**")
    assert "next=" in page.url
    for asset in ("static/kpi_alerts.js", "static/icon.svg"):
        answer = page.request.get(f"{airflow_api.base_url}/kpi-alerts/ui/{asset}")
        assert answer.status == 401, asset
    assert page.request.get(f"{airflow_api.base_url}/kpi-alerts/ui/static/../api.py").status in (401, 404)


def test_the_page_loads_nothing_from_another_host(airflow_api: AirflowApi) -> None:
    import requests

    static = Path(__file__).resolve().parents[2] / "plugins" / "kpi_alerts" / "web" / "static"
    for file in static.iterdir():
        text = file.read_text()
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), file.name
        assert "https://" not in text, file.name
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, file.name
    answer = requests.get(
        f"{airflow_api.base_url}/kpi-alerts/ui/", cookies={"_token": airflow_api.token("viewer")}, timeout=30
    )
    assert answer.status_code == 200
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    nobody = requests.get(
        f"{airflow_api.base_url}/kpi-alerts/ui/", cookies={"_token": airflow_api.token("nobody")}, timeout=30
    )
    assert nobody.status_code == 403
    assert "needs read access to the <code>kpi_alerts</code> DAG" in nobody.text
    assert nobody.headers["Content-Type"].startswith("text/html")
