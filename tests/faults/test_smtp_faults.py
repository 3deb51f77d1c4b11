"""Faults of the SMTP server, through the real DAG (``dag.test()``), real Postgres and Cube.js, and the
fault suite's own SMTP server (``faulty_smtp``: a fake, because no real server drops a connection after
storing a message, or answers 421, on demand).

- Issue 9 item 2: the server stores the message, then drops the connection (or never answers) after
  DATA. The message may have been delivered: recorded ``delivery_unknown`` with the reason, the run
  red, and never sent again — not by Airflow's retries, not by later ticks.
- Issue 9 item 5: the server answers 421 (or is down) before DATA: nothing went out, so the slot is
  retried by Airflow's tries and then by later ticks inside the misfire window, each attempt recorded
  in ``attempt_history`` (kept when a retry succeeds, item 9); past the window it fails for good.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.fault_table import FaultTable, deliveries, duplicates
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger
from tests.faults.faulty_smtp import FaultySmtpServer, Mode, smtp_connection_to

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]

RECIPIENTS = ["cfo@org1.example.com", "ops@org1.example.com"]


@pytest.fixture
def faulty_smtp(monkeypatch: pytest.MonkeyPatch, airflow_connections: dict[str, str]) -> Any:
    with FaultySmtpServer() as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_DEFAULT",
            smtp_connection_to(server, airflow_connections["AIRFLOW_CONN_SMTP_DEFAULT"]),
        )
        yield server


@pytest.mark.parametrize(
    ("mode", "fault"),
    [
        pytest.param(
            "drop_after_data",
            "SMTP stores the message, then drops the connection before answering DATA",
            id="drop",
        ),
        pytest.param(
            "hang_after_data", "SMTP stores the message, then never answers DATA (reply timeout)", id="hang"
        ),
    ],
)
def test_no_answer_after_data_is_recorded_unknown_and_never_resent(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    faulty_smtp: FaultySmtpServer,
    fault_table: FaultTable,
    mode: Mode,
    fault: str,
) -> None:
    due_report(db, "Daily revenue", RECIPIENTS)
    faulty_smtp.mode = mode

    first = fast_retries.test(logical_date=LOGICAL_TIME)
    faulty_smtp.mode = "accept"  # the server is fine again: still nothing may be resent
    later = fast_retries.test(logical_date=LOGICAL_TIME + timedelta(minutes=5))

    received = faulty_smtp.messages
    fault_table.record(
        fault=fault,
        alerts=1,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=0 if ledger(db) and ledger(db)[0]["status"] == "delivery_unknown" else 1,
        run_state=f"{first.state} → {later.state}",
    )
    assert sorted(n for n in deliveries(received).values()) == [1, 1]  # one copy per recipient, not two
    (row,) = ledger(db)
    assert row["status"] == "delivery_unknown" and row["attempts"] == 1
    assert "after the message was transmitted" in row["error"] and "not resent" in row["error"]
    assert str(first.state) == "failed"  # the run says something is wrong
    assert str(later.state) == "success"  # the next tick has nothing due: the alert moved on


def test_421_is_retried_by_later_ticks_and_sent_once_when_the_server_recovers(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    faulty_smtp: FaultySmtpServer,
    fault_table: FaultTable,
) -> None:
    due_report(db, "Daily revenue", RECIPIENTS)
    faulty_smtp.mode = "unavailable"
    runs = [fast_retries.test(logical_date=LOGICAL_TIME)]
    (row,) = ledger(db)
    assert (row["status"], row["attempts"], len(row["attempt_history"])) == ("retrying", 3, 3)
    runs.append(fast_retries.test(logical_date=LOGICAL_TIME + timedelta(minutes=5)))
    faulty_smtp.mode = "accept"
    runs.append(fast_retries.test(logical_date=LOGICAL_TIME + timedelta(minutes=10)))

    received = faulty_smtp.messages
    (row,) = ledger(db)
    fault_table.record(
        fault="SMTP answers 421 for two ticks, then recovers",
        alerts=1,
        messages=sum(deliveries(received).values()),
        duplicates=duplicates(received),
        lost=0 if row["status"] == "sent" else 1,
        run_state=" → ".join(str(r.state) for r in runs),
    )
    assert sorted(deliveries(received).values()) == [1, 1]
    assert (row["status"], row["attempts"], row["error"]) == ("sent", 7, None)
    history = row["attempt_history"]
    assert len(history) == 6 and all("421" in entry["error"] for entry in history)  # kept after success
    assert [entry["try_number"] for entry in history] == [1, 2, 3, 1, 2, 3]
    assert [str(r.state) for r in runs] == ["failed", "failed", "success"]


def test_smtp_down_past_the_misfire_window_fails_for_good(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    faulty_smtp: FaultySmtpServer,
    fault_table: FaultTable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_MISFIRE_MINUTES", "10")
    due_report(db, "Daily revenue", RECIPIENTS)
    faulty_smtp.mode = "unavailable"
    runs = [fast_retries.test(logical_date=LOGICAL_TIME + timedelta(minutes=m)) for m in (0, 5, 10, 15)]

    (row,) = ledger(db)
    fault_table.record(
        fault="SMTP down (421) until the misfire window closes",
        alerts=1,
        messages=len(faulty_smtp.messages),
        duplicates=0,
        lost=0 if row["status"] == "failed" and row["error"] else 1,
        run_state=" → ".join(str(r.state) for r in runs),
    )
    assert faulty_smtp.messages == []
    assert (
        row["status"] == "failed" and "421" in row["error"] and "gave up after 9 attempt(s)" in row["error"]
    )
    assert len(row["attempt_history"]) == 8
    assert [str(r.state) for r in runs] == ["failed", "failed", "failed", "success"]
