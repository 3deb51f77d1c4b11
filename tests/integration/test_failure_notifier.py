"""FailureNotifier: a failure callback of any DAG or task, sent over smtp_default to a real SMTP server."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.mail import MailCatcher
from kpi_alerts.notifications.failure import FailureNotifier

pytestmark = pytest.mark.services

LOGICAL = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)


def task_failure_context(exception: BaseException, **extra: Any) -> dict[str, Any]:
    """What Airflow hands a task's ``on_failure_callback`` (the parts the notifier reads)."""
    dag_run = SimpleNamespace(
        dag_id="orders_etl", run_id="scheduled__2026-12-07T17:05:00+00:00", run_after=LOGICAL
    )
    ti = SimpleNamespace(task_id="load", map_index=2, try_number=3)
    return {
        "dag_run": dag_run,
        "ti": ti,
        "run_id": dag_run.run_id,
        "logical_date": LOGICAL,
        "exception": exception,
        **extra,
    }


class TestFailureNotifier:
    def test_a_task_failure_reaches_the_owners(
        self, mailbox: MailCatcher, airflow_connections: dict[str, str]
    ) -> None:
        notifier = FailureNotifier(to="a@example.com, b@example.com", sender="Ops <ops@example.com>")

        notifier(task_failure_context(RuntimeError("warehouse <b>timeout</b>\nTraceback ...")))

        (message,) = mailbox.messages()
        assert message["Subject"] == "[KPI alert] Failed: orders_etl / load[2] — 2026-12-07"
        assert message["From"] == "Ops <ops@example.com>"
        assert message["To"] == "undisclosed-recipients:;"  # recipients do not see each other (Bcc)
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        assert "warehouse <b>timeout</b>" in text and "Traceback" not in text
        assert "warehouse &lt;b&gt;timeout&lt;/b&gt;" in html and "<b>timeout" not in html
        assert "task load[2], try 3" in text
        assert "for organization" not in text

    def test_recipients_are_templated(
        self, mailbox: MailCatcher, airflow_connections: dict[str, str]
    ) -> None:
        notifier = FailureNotifier(
            to="{{ params.owner }}", reason="{{ params.why }}", sender="ops@example.com"
        )

        notifier(
            task_failure_context(ValueError("x"), params={"owner": "owner@example.com", "why": "stale data"})
        )

        (message,) = mailbox.messages()
        assert message["To"] == "owner@example.com"
        assert "stale data" in message.get_body(preferencelist=("plain",)).get_content()

    def test_an_unreachable_smtp_server_is_logged_not_raised(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, free_tcp_port: int
    ) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_DEFAULT",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": free_tcp_port,
                    "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0},
                }
            ),
        )
        with caplog.at_level(logging.WARNING):
            FailureNotifier(to=["a@example.com"], sender="ops@example.com")(
                task_failure_context(RuntimeError("boom"))
            )
        assert "Could not send the failure notice of orders_etl / load[2]" in caplog.text


@pytest.fixture
def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
