"""Hostile or unusual ``create-alert`` input that used to be stored wrong (issue 9, item 7, part).

``"condition": "greater_than"`` (the docs say both spellings work) ended in a CheckViolation; negative
percent thresholds and a ``kpi_measure`` outside the query were accepted; gates were stored as given.
Real PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kpi_alerts.cli import main
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_store import create_alert
from tests.fault_table import FaultTable

pytestmark = [pytest.mark.faults, pytest.mark.services]

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def threshold(**overrides: Any) -> dict[str, Any]:
    return {
        "organization_id": 1,
        "alert_name": "Orders",
        "recipients": ["ops@example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "1", "timezone": "UTC", **overrides},
    }


def test_both_condition_spellings_are_stored_as_the_column_spelling(db: psycopg.Connection[Any]) -> None:
    create_alert(db, threshold(condition="greater_than"), now=NOW)
    create_alert(db, {**threshold(condition=">="), "alert_name": "Other"}, now=NOW)
    stored = [r["condition"] for r in db.execute("SELECT condition FROM kpi_thresholds ORDER BY id")]
    assert stored == ["GREATER_THAN", "GREATER_THAN_OR_EQUAL"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"condition": "INCREASED_BY_PERCENT", "threshold_value": "-5"}, "0 or more", id="neg-pct"
        ),
        pytest.param({"kpi_measure": "orders.total_amount"}, "kpi_measure", id="kpi-not-in-query"),
    ],
)
def test_wrong_thresholds_are_refused(
    db: psycopg.Connection[Any], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(AlertValidationError, match=message):
        create_alert(db, threshold(**overrides), now=NOW)
    assert db.execute("SELECT count(*) AS n FROM kpi_alerts").fetchone()["n"] == 0


def test_gates_are_stored_canonical(db: psycopg.Connection[Any]) -> None:
    spec = {
        "organization_id": 1,
        "alert_name": "Gated",
        "recipients": ["ops@example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "schedule": {
            "frequency_interval": "day",
            "gating_condition": {"measure": "orders.count", "op": "greater_than", "value": "10.0",
                                 "aggregate": "latest"},
        },
    }  # fmt: skip
    create_alert(db, spec, now=NOW)
    stored = db.execute("SELECT gating_condition FROM kpi_schedules").fetchone()["gating_condition"]
    assert stored == {"measure": "orders.count", "op": ">", "value": 10}


# --- the command line's contract: one readable line, exit 2, nothing written (create and update) -------


def report(**overrides: Any) -> dict[str, Any]:
    return {
        "organization_id": 1,
        "alert_name": "Orders",
        "recipients": ["ops@example.com"],
        "cube_query": {"measures": ["orders.count"]},
        "schedule": {"frequency_interval": "day", "schedule_hour": 9, "timezone": "UTC"},
        **overrides,
    }


def with_threshold(**overrides: Any) -> dict[str, Any]:
    return {**threshold(), "threshold": {**threshold()["threshold"], **overrides}}


HOSTILE_SPECS: list[Any] = [
    pytest.param(b"[1, 2, 3]", id="non-object"),
    pytest.param(b'"a string"', id="json-string"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100k"),
    pytest.param(bytes(range(256)) * 4, id="binary"),
    pytest.param(b"\xef\xbb\xbf{" + b" " * 2_000_000 + b"}", id="over-1-mb"),
    pytest.param(with_threshold(threshold_value="1e200000"), id="threshold-1e200000"),
    pytest.param(with_threshold(threshold_value="1e-200000"), id="threshold-1e-200000"),
    pytest.param(with_threshold(rearm_minutes=10**12), id="rearm-10e12"),
    pytest.param(report(organization_id=2**63), id="org-2^63"),
    pytest.param(report(graph_id=2**64), id="graph-2^64"),
    pytest.param(report(dashboard_id=-(2**63) - 1), id="dashboard-negative"),
    pytest.param(report(organization_id=True), id="org-true"),
    pytest.param(report(message="before\u0000after"), id="nul-in-message"),
    pytest.param(report(cube_query={"measures": ["orders.count\u0000"]}), id="nul-in-query"),
    pytest.param(report(dashboard_url="https://dash.example.com/\r\nBcc: all@example.com"), id="crlf-url"),
    pytest.param(report(dashboard_url="https://admin:hunter2@dash.example.com/d/1"), id="credentials-url"),
    pytest.param(report(dashboard_url="javascript:alert(1)"), id="javascript-url"),
    pytest.param(
        report(schedule={"frequency_interval": "week", "selected_days": [1] * 10_000}), id="10k-days"
    ),
    pytest.param(report(alert_name="Revenue \u202egnp.exe"), id="bidi-override-name"),
    pytest.param(report(alert_name="Revenue \u001b[31mRED\u001b[0m"), id="esc-in-name"),
    pytest.param(report(message="hello \u202e reversed"), id="bidi-in-message"),
    pytest.param(report(alert_name="x" * 70_000), id="70kb-name"),
    pytest.param(report(recipients=["a" * 70_000 + "@example.com"]), id="70kb-recipient"),
    pytest.param(report(schedule={"frequency_interval": "day", "schedule_hour": True}), id="hour-true"),
]


def _spec_file(tmp_path: Path, spec: Any) -> str:
    path = tmp_path / "spec.json"
    path.write_bytes(spec if isinstance(spec, bytes) else json.dumps(spec).encode())
    return str(path)


def _written(db: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM kpi_alerts) AS a, (SELECT count(*) FROM cron_jobs) AS j, "
        "(SELECT count(*) FROM kpi_alert_events) AS e"
    ).fetchone()
    assert row is not None
    return row["a"], row["j"], row["e"]


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.endswith("\n")
    assert err.count("\n") == 1 and len(err) <= 320, err[:400]  # one readable line, capped
    assert "Traceback" not in err and "\u202e" not in err and "\u001b" not in err
    return err


@pytest.mark.parametrize("spec", HOSTILE_SPECS)
def test_create_alert_refuses_in_one_line_and_writes_nothing(
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: Any,
) -> None:
    db.execute("TRUNCATE kpi_alert_events")
    _refused(capsys, ["create-alert", _spec_file(tmp_path, spec), "--db", alerts_db_url])
    assert _written(db) == (0, 0, 0)


@pytest.mark.parametrize("spec", HOSTILE_SPECS)
def test_update_alert_applies_the_same_rules(
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: Any,
) -> None:
    base = threshold() if isinstance(spec, dict) and "threshold" in spec else report()
    created = create_alert(db, base, now=NOW)
    before = db.execute("SELECT * FROM kpi_alerts").fetchall(), _written(db)
    _refused(
        capsys, ["update-alert", str(created.alert_id), _spec_file(tmp_path, spec), "--db", alerts_db_url]
    )
    assert (db.execute("SELECT * FROM kpi_alerts").fetchall(), _written(db)) == before


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["create-alert", "/nonexistent/spec.json"], id="missing-file"),
        pytest.param(["create-alert", "/dev/zero"], id="dev-zero"),
        pytest.param(["create-alert", "/"], id="a-directory"),
        pytest.param(["update-alert", str(2**63), "/dev/null"], id="alert-id-2^63"),
        pytest.param(["show", "99999999999999999999"], id="show-huge-id"),
    ],
)
def test_unreadable_input_and_impossible_ids_are_refused(
    db: psycopg.Connection[Any], alerts_db_url: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    capsys.readouterr()
    try:
        code = main([*argv, "--db", alerts_db_url])
    except SystemExit as exit_:  # argparse refuses an impossible id itself (usage + one error line)
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.splitlines()[-1]) <= 320
    assert _written(db)[:2] == (0, 0)


def test_an_unreachable_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_table: FaultTable
) -> None:
    err = _refused(
        capsys,
        [
            "create-alert",
            _spec_file(tmp_path, report()),
            "--db",
            "postgresql://kpi:s3cret@127.0.0.1:1/nowhere",
        ],
    )
    assert "cannot use the database" in err and "s3cret" not in err
    fault_table.record(
        fault=f"create-alert / update-alert: {len(HOSTILE_SPECS) + 6} hostile inputs (exit 2, one line)",
        alerts=0,
        messages=0,
        duplicates=0,
        lost=0,
        run_state="n/a: nothing written",
    )
