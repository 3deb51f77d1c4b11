"""Issue 23 item 3: cross-origin requests riding on the Airflow UI's cookie, against a real ``airflow
api-server`` and a real headless Chromium.

The cookie (``_token``) is ``SameSite=Lax``: a browser sends it on a POST from another origin of the
same site (another port of the host, a sibling subdomain). Before, an auto-submitted form or a
``no-cors`` fetch from such a page paused alerts (200): pause and resume take no body, so nothing
else stood in the way. Changes made with the cookie must now come from the server's own origin, as JSON.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
import requests

from kpi_alerts.ledger.alert_store import create_alert
from tests.fault_table import FaultTable
from tests.polling import wait_until
from tests.web.conftest import API, AirflowApi
from tests.web.test_kpi_alerts_page import browser, log_in, page  # noqa: F401  (fixtures)
from tests.web.test_rest_api import schedule_spec

pytestmark = [pytest.mark.slow, pytest.mark.services]


def paused(db: psycopg.Connection[Any], alert_id: int) -> bool:
    row = db.execute(
        "SELECT cj.master_locked FROM cron_jobs cj JOIN kpi_alerts ka ON ka.cron_job_id = cj.id "
        "WHERE ka.id = %s",
        (alert_id,),
    ).fetchone()
    assert row is not None
    return bool(row["master_locked"])


class TestCookieChanges:
    def post(self, airflow_api: AirflowApi, path: str, headers: dict[str, str]) -> requests.Response:
        return requests.post(
            f"{airflow_api.base_url}{API}{path}",
            cookies={"_token": airflow_api.token("editor")},
            headers=headers,
            timeout=30,
        )

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="no Origin, no Sec-Fetch-Site"),
            pytest.param(
                {"Origin": "http://127.0.0.1:1", "Content-Type": "application/json"}, id="other port"
            ),
            pytest.param(
                {"Origin": "http://evil.127.0.0.1.nip.io", "Content-Type": "application/json"},
                id="other host",
            ),
            pytest.param({"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, id="same-site"),
            pytest.param({"Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain"}, id="not JSON"),
        ],
    )
    def test_a_cookie_change_from_elsewhere_is_refused(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any], headers: dict[str, str]
    ) -> None:
        alert = create_alert(db, schedule_spec())
        answer = self.post(airflow_api, f"/alerts/{alert.alert_id}/pause", headers)
        assert answer.status_code == 403, answer.text
        assert "cookie" in answer.json()["detail"] and "Authorization: Bearer" in answer.json()["detail"]
        assert not paused(db, alert.alert_id)

    def test_the_pages_own_requests_and_bearer_tokens_pass(
        self, airflow_api: AirflowApi, db: psycopg.Connection[Any]
    ) -> None:
        alert = create_alert(db, schedule_spec())
        own = {
            "Origin": airflow_api.base_url,
            "Sec-Fetch-Site": "same-origin",
            "Content-Type": "application/json",
        }
        assert self.post(airflow_api, f"/alerts/{alert.alert_id}/pause", own).status_code == 200
        assert paused(db, alert.alert_id)
        resumed = airflow_api.call("POST", f"/alerts/{alert.alert_id}/resume", user="editor")
        assert resumed.status_code == 200 and not paused(db, alert.alert_id)


_ATTACK = """<!doctype html><html><body>
<form id="f" method="POST" action="{api}/alerts/{form_alert}/pause"></form>
<script>
  fetch("{api}/alerts/{fetch_alert}/pause", {{method: "POST", mode: "no-cors", credentials: "include"}})
    .finally(() => {{ document.title = "fetched"; document.getElementById("f").submit(); }});
</script></body></html>"""


@pytest.fixture
def attacker_site() -> Iterator[tuple[str, dict[str, str]]]:
    """A page on another port of the same host: same site as the API server, another origin."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()


@pytest.mark.faults
def test_a_same_site_page_cannot_pause_alerts_with_the_ui_cookie(
    page: Any,  # noqa: F811
    airflow_api: AirflowApi,
    db: psycopg.Connection[Any],
    attacker_site: tuple[str, dict[str, str]],
    fault_table: FaultTable,
) -> None:
    by_form, by_fetch = (create_alert(db, schedule_spec(alert_name=n)).alert_id for n in ("Form", "Fetch"))
    log_in(page, airflow_api, "admin")  # the browser now holds the UI's cookie for 127.0.0.1
    origin, pages = attacker_site
    pages["/attack.html"] = _ATTACK.format(
        api=f"{airflow_api.base_url}{API}", form_alert=by_form, fetch_alert=by_fetch
    )
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if "/pause" in r.url else None)

    page.goto(f"{origin}/attack.html")
    page.wait_for_url(f"**/alerts/{by_form}/pause")  # the form was submitted and answered
    wait_until(lambda: len(answers) >= 1, what="the form's answer")

    still_active = not paused(db, by_form) and not paused(db, by_fetch)
    fault_table.record(
        fault="same-site page (other port) POSTs pause with the UI cookie: form + no-cors fetch",
        alerts=2,
        messages=0,
        duplicates=0,
        lost=0 if still_active else 1,
        run_state="n/a: refused (403), nothing paused" if still_active else "n/a: alerts paused",
    )
    assert still_active
    assert 403 in answers
