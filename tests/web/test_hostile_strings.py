"""Issue 23, "also to prove": the page's hostile strings in a real headless Chromium.

Alert names, alert messages and ledger errors holding markup (``<script>``, ``"><img src=x
onerror=...>``, ``<svg onload=...>``), unterminated bidirectional overrides (U+202E, U+2066) and very
long words, shown on the list and on the alert's page, and echoed by a test send's confirmation. The
API refuses bidi overrides at creation (``check_text``), so those rows are written by SQL, as a legacy
row or another job's writer could; the markup goes through ``create_alert`` (it is valid text).

Held: every string is shown as its own text; no script runs (no dialog, no ``window.__xss``, no request
for ``src=x``, no page error); nothing widens the page past its viewport; an override reorders nothing
outside the user text it is in. Before, a 200-character word stretched the list and the alert's page
past the viewport (no wrapping rule), and an override in an alert's name reversed the " (alert N)"
after it in the title and the verdict after the subject in the test send's confirmation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.ledger.alert_store import create_alert
from tests.fault_table import FaultTable, duplicates
from tests.polling import wait_until
from tests.web.conftest import AirflowApi
from tests.web.test_kpi_alerts_page import browser, log_in, page  # noqa: F401  (fixtures)
from tests.web.test_rest_api import record_result, schedule_spec

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.faults]

SCRIPT_NAME = '<script>alert("name"); window.__xss = 1</script>"><img src=x onerror="alert(2)">'
SCRIPT_MESSAGE = 'Dear team,\n<svg onload="alert(3)"></svg>\n"><img src=x onerror="window.__xss = 4">'
SCRIPT_ERROR = 'Cube answered 400: <script>alert("error")</script>"><img src=x onerror=alert(5)>'
BIDI_NAME = "\u202eInvoice fdp.exe"  # an unterminated RIGHT-TO-LEFT OVERRIDE
BIDI_MESSAGE = "Totals \u2066\u202eyadsenseW\u202c for the week"  # LRI never closed, RLO closed
BIDI_ERROR = "Cube answered 400: \u202etluav eht morf"
LONG_NAME = "Revenue" + "x" * 193  # 200 characters, the API's limit, in one word
LONG_MESSAGE = "y" * 2000  # the column's limit
LONG_ERROR = "Cube answered 400: " + "z" * 5000
PLACED = datetime(2026, 11, 30, 17, tzinfo=UTC)

# In the page's frame (its <html>): is every element within the viewport, the page no wider than it?
WITHIN_WIDTH = """(html) => {
  const width = html.clientWidth;
  const wide = [...html.querySelectorAll("main *")]
    .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > width + 1)
    .map((el) => el.tagName + "#" + el.id + " right " + Math.round(el.getBoundingClientRect().right));
  return { width, scroll: html.scrollWidth, wide: wide.slice(0, 5) };
}"""
# On an element: is the text `after` laid out to the right of the element's first child (the
# user text), as in a left-to-right sentence, whatever the user text holds?
AFTER_USER_TEXT = """(el, after) => {
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode()) && !node.data.includes(after)) {}
  if (!node) return "no text " + after;
  const at = node.data.indexOf(after);
  const mark = document.createRange();
  mark.setStart(node, at);
  mark.setEnd(node, at + 1);
  const user = document.createRange();  // everything before `after`: the user text and its lead-in
  user.setStart(el, 0);
  user.setEnd(node, at);
  const rects = [...user.getClientRects()].filter((r) => r.width > 0);
  const last = rects[rects.length - 1];
  const m = mark.getBoundingClientRect();
  return m.top >= last.bottom - 1 || m.left >= last.right - 1 ? "after" : "before";
}"""


def set_column(db: psycopg.Connection[Any], alert_id: int, column: str, value: str) -> None:
    """Write a value the API refuses (a bidi override), as a legacy row or another writer could."""
    assert column in ("alert_name", "message")
    db.execute(f"UPDATE kpi_alerts SET {column} = %s WHERE id = %s", (value, alert_id))


def test_hostile_strings_are_text_in_a_real_browser(
    page: Any,  # noqa: F811
    airflow_api: AirflowApi,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    fault_table: FaultTable,
) -> None:
    from playwright.sync_api import expect

    scripted = create_alert(db, schedule_spec(alert_name=SCRIPT_NAME, message=SCRIPT_MESSAGE))
    record_result(db, scripted.alert_id, PLACED, "failed", SCRIPT_ERROR)
    bidi = create_alert(db, schedule_spec(alert_name="bidi"))
    set_column(db, bidi.alert_id, "alert_name", BIDI_NAME)
    set_column(db, bidi.alert_id, "message", BIDI_MESSAGE)
    record_result(db, bidi.alert_id, PLACED, "failed", BIDI_ERROR)
    long = create_alert(db, schedule_spec(alert_name=LONG_NAME))
    set_column(db, long.alert_id, "message", LONG_MESSAGE)
    record_result(db, long.alert_id, PLACED, "failed", LONG_ERROR)
    alerts = {scripted.alert_id: SCRIPT_NAME, bidi.alert_id: BIDI_NAME, long.alert_id: LONG_NAME}
    errors = {scripted.alert_id: SCRIPT_ERROR, bidi.alert_id: BIDI_ERROR, long.alert_id: LONG_ERROR}
    messages = {scripted.alert_id: SCRIPT_MESSAGE, bidi.alert_id: BIDI_MESSAGE, long.alert_id: LONG_MESSAGE}

    dialogs: list[str] = []
    page_errors: list[str] = []
    console_errors: list[str] = []
    requests_for_x: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests_for_x.append(r.url) if r.url.rstrip("/").endswith("/x") else None)

    frame = log_in(page, airflow_api, "admin")
    expect(frame.locator("#alerts tbody tr")).to_have_count(3)
    problems: list[str] = []

    def check_layout(where: str) -> None:
        layout = frame.locator("html").evaluate(WITHIN_WIDTH)
        if layout["scroll"] > layout["width"] or layout["wide"]:
            problems.append(f"{where}: {layout}")

    for alert_id, name in alerts.items():
        row = frame.locator(f'#alerts tr[data-alert-id="{alert_id}"]')
        expect(row.locator("td").nth(1)).to_have_text(name)
        expect(row.locator("td").nth(7)).to_have_text(f"failed · 2026-11-30 17:00 UTC — {errors[alert_id]}")
    check_layout("list")

    for alert_id, name in alerts.items():
        frame.locator("body").evaluate(f"() => {{ window.location.hash = '#alert={alert_id}'; }}")
        expect(frame.locator("#alert-title")).to_have_text(f"{name} (alert {alert_id})")
        expect(frame.locator("#failures tbody td").nth(3)).to_have_text(errors[alert_id])
        facts = frame.locator("#alert-facts dd")
        expect(facts.filter(has_text=messages[alert_id].split("\n")[0])).to_have_count(1)
        check_layout(f"alert {alert_id}")
        if frame.locator("#alert-title").evaluate(AFTER_USER_TEXT, "(alert") != "after":
            problems.append(f"alert {alert_id}: ' (alert {alert_id})' laid out before the name")
        for selector in ("img", "script", "svg"):
            assert frame.locator(f"main {selector}").count() == 0, selector

    frame.locator("body").evaluate(f"() => {{ window.location.hash = '#alert={bidi.alert_id}'; }}")
    expect(frame.locator("#alert-title")).to_have_text(f"{BIDI_NAME} (alert {bidi.alert_id})")
    frame.locator("#test-to").fill("operator@example.com")
    frame.get_by_role("button", name="Send test").click()
    expect(frame.locator("#message")).to_contain_text(
        f"Test sent to operator@example.com ([TEST] [KPI report] {BIDI_NAME} — "
    )
    if frame.locator("#message").evaluate(AFTER_USER_TEXT, ").") != "after":
        problems.append("test send: the verdict after the subject laid out before it")
    sent = wait_until(lambda: mailbox.messages(), what="the test message")

    assert frame.locator("html").evaluate("() => window.__xss") is None
    ran = dialogs + page_errors + requests_for_x + [e for e in console_errors if "Security Policy" in e]
    fault_table.record(
        fault="page shows <script>, img onerror, bidi overrides, 200- to 5,000-char words (names, messages, errors)",
        alerts=3,
        messages=len(sent),
        duplicates=duplicates(sent),
        lost=0,
        run_state="n/a: shown as text, no script ran, within the viewport"
        if not (ran or problems)
        else f"n/a: {len(ran)} script(s) ran, {len(problems)} layout/bidi fault(s)",
    )
    assert ran == []
    assert problems == []
    assert [str(m["To"]) for m in sent] == ["operator@example.com"]
