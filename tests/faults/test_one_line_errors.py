"""Issue 23 item 10: tracebacks instead of one line, on a real PostgreSQL and the real DAG.

Before: ``prune-results --days 2932896`` (the cut-off falls outside PostgreSQL's timestamps) and
``--days 99999999999999999999`` (Python's timedelta overflows) printed tracebacks; a read-only alerts
database (``default_transaction_read_only``: a standby, a maintenance switch) failed every task with
psycopg's raw ``ReadOnlySqlTransaction`` traceback over three tries. Now each is one readable line.
(The REST API's numbers at or above 2^63 are in ``tests/web/test_big_numbers.py``.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from kpi_alerts import cli
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.retention import prune_results
from tests.fault_table import FaultTable
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.services]

READ_ONLY = "?options=" + quote("-c default_transaction_read_only=on")


@pytest.mark.parametrize("days", ["2932896", "99999999999999999999", "36601"])
def test_prune_results_refuses_a_retention_beyond_100_years_in_one_line(
    alerts_db_url: str, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--db", alerts_db_url, "prune-results", "--days", days])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "at most 36,600 days (100 years)" in err and "Traceback" not in err


def test_prune_results_itself_refuses_it(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(AlertValidationError, match="at most 36,600 days"):
        prune_results(db, retention=timedelta(days=2932896))
    assert prune_results(db, retention=timedelta(days=36_600)) == 0  # the longest allowed works


def test_the_cli_on_a_read_only_database_says_so_in_one_line(
    db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alert_id = due_report(db, "Daily", ["cfo@org1.example.com"])
    assert cli.main(["--db", alerts_db_url + READ_ONLY, "pause", str(alert_id)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: the alerts database refused: ReadOnlySqlTransaction: ")
    assert "the database is read-only" in line


@pytest.mark.slow
def test_a_run_on_a_read_only_database_fails_with_one_readable_line(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    fault_table: FaultTable,
) -> None:
    due_report(db, "Daily revenue", ["cfo@org1.example.com"])
    monkeypatch.setenv("AIRFLOW_CONN_KPI_ALERTS_DB", alerts_db_url + READ_ONLY)
    for task_id in ("find_due_alerts", "summarize"):  # their tries 1 s apart too (not minutes)
        monkeypatch.setattr(fast_retries.task_dict[task_id], "retry_delay", timedelta(seconds=1))
        monkeypatch.setattr(fast_retries.task_dict[task_id], "retry_exponential_backoff", False)

    run = fast_retries.test(logical_date=LOGICAL_TIME)

    out = "".join(capfd.readouterr())
    readable = out.count("the alerts database refused: ReadOnlySqlTransaction")
    fault_table.record(
        fault="alerts DB read-only (default_transaction_read_only = on)",
        alerts=1,
        messages=0,
        duplicates=0,
        lost=0 if ledger(db) == [] else 1,  # nothing was claimed: the slot stays due for later ticks
        run_state=str(run.state),
    )
    assert str(run.state) == "failed"
    assert readable >= 3  # each try of the due listing says what is wrong and what to do
    assert "point kpi_alerts_db at the primary" in out
    assert "psycopg.errors.ReadOnlySqlTransaction" not in out  # no raw psycopg traceback
    assert ledger(db) == []
