"""The real DAG (`dag.test()`, real Airflow metadata DB) against real Postgres, Cube.js and SMTP."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg
import pytest

from devstack.mail import MailCatcher
from kpi_alerts.ledger.alert_store import create_alert
from tests.factories import report_spec

pytestmark = [pytest.mark.slow, pytest.mark.services]

LOGICAL_TIME = datetime(2026, 12, 7, 17, 5, tzinfo=UTC)  # 09:05 in Los Angeles, 17:05 in London
FIRST_WEEK_OF_NOVEMBER = {
    "measures": ["orders.total_amount", "orders.count"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-07"]}
    ],
}


def run_dag(kpi_dag: Any, logical_time: datetime = LOGICAL_TIME) -> Any:
    return kpi_dag.test(logical_date=logical_time)


def schedule_alert(
    org: int, name: str, recipients: list[str], tz: str, hour: int, minute: int, **schedule: Any
) -> dict[str, Any]:
    return report_spec(
        name,
        org=org,
        recipients=recipients,
        hour=hour,
        minute=minute,
        tz=tz,
        cube_query=FIRST_WEEK_OF_NOVEMBER,
        schedule=schedule,
    )


def ledger(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT r.*, ka.alert_name FROM cron_job_results r "
        "JOIN kpi_alerts ka ON ka.cron_job_id = r.cron_job_id ORDER BY ka.id, r.slot"
    ).fetchall()


def task_states(dag_run: Any) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances()}


def daily_revenue_sql(pg_url: str, org: int, tz: str) -> dict[str, Decimal]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT to_char((created_at AT TIME ZONE %(tz)s)::date, 'YYYY-MM-DD') AS day, sum(total_amount) "
            "FROM orders WHERE organization_id = %(org)s AND (created_at AT TIME ZONE %(tz)s)::date "
            "BETWEEN '2026-11-01' AND '2026-11-07' GROUP BY 1 ORDER BY 1",
            {"tz": tz, "org": org},
        ).fetchall()
    return {day: total for day, total in rows}


def test_due_alerts_are_sent_once_with_csv_and_recorded(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    pg: Any,
) -> None:
    created_at = LOGICAL_TIME - timedelta(minutes=4)
    la = create_alert(
        db,
        schedule_alert(
            1,
            "Org 1 daily revenue",
            ["cfo@org1.example.com", "ops@org1.example.com"],
            "America/Los_Angeles",
            9,
            5,
        ),
        now=created_at,
    )
    london = create_alert(
        db,
        schedule_alert(2, "Org 2 daily revenue", ["cfo@org2.example.com"], "Europe/London", 17, 3),
        now=created_at,
    )
    later = create_alert(
        db, schedule_alert(1, "Not due yet", ["x@org1.example.com"], "UTC", 18, 0), now=created_at
    )
    threshold = create_alert(
        db,
        {
            "organization_id": 2,
            "alert_name": "Org 2 orders above 10",
            "recipients": ["ops@org2.example.com"],
            "cube_query": {"measures": ["orders.count"]},
            "threshold": {"condition": "GREATER_THAN", "threshold_value": "10", "timezone": "UTC"},
        },
        now=created_at,
    )

    dag_run = run_dag(kpi_dag)

    assert str(dag_run.state) == "success", task_states(dag_run)
    states = task_states(dag_run)
    assert sorted(s for (task, _), s in states.items() if task == "process_alert") == ["success"] * 3
    messages = {m["X-Envelope-To"]: m for m in mailbox.messages()}  # several recipients: Bcc (private)
    assert set(messages) == {
        "cfo@org1.example.com, ops@org1.example.com",
        "cfo@org2.example.com",
        "ops@org2.example.com",
    }

    report = messages["cfo@org1.example.com, ops@org1.example.com"]
    assert str(report["To"]) == "undisclosed-recipients:;" and report["Bcc"] is None
    assert "Org 1 daily revenue" in report["Subject"] and "2026-12-07" in report["Subject"]
    (attachment,) = list(report.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename() == "org-1-daily-revenue-2026-12-07.csv"
    frame = pd.read_csv(io.BytesIO(attachment.get_payload(decode=True)), encoding="utf-8-sig", dtype=str)
    assert "orders.total_amount" not in frame.columns  # titles, not member names
    revenue_column = next(c for c in frame.columns if "Revenue" in c)
    day_column = frame.columns[0]
    got = {row[day_column]: Decimal(row[revenue_column]) for _, row in frame.iterrows()}
    assert got == daily_revenue_sql(pg.url("analytics"), 1, "America/Los_Angeles")
    assert "Org 2 orders above 10" in messages["ops@org2.example.com"]["Subject"]

    rows = {r["alert_name"]: r for r in ledger(db)}
    assert set(rows) == {"Org 1 daily revenue", "Org 2 daily revenue", "Org 2 orders above 10"}
    for row in rows.values():
        assert row["status"] == "sent" and row["delivery"] == "smtp"
        assert row["dag_run_id"] == dag_run.run_id and row["finished_at"] is not None
    assert rows["Org 1 daily revenue"]["slot"] == datetime(2026, 12, 7, 17, 5, tzinfo=UTC)
    assert rows["Org 1 daily revenue"]["attachment"] == "org-1-daily-revenue-2026-12-07.csv"
    assert rows["Org 1 daily revenue"]["recipients"] == ["cfo@org1.example.com", "ops@org1.example.com"]
    assert rows["Org 2 orders above 10"]["value"] > 10

    next_runs = {r["id"]: r["next_run_at"] for r in db.execute("SELECT id, next_run_at FROM cron_jobs")}
    assert next_runs[la.cron_job_id] == datetime(2026, 12, 8, 17, 5, tzinfo=UTC)
    assert next_runs[london.cron_job_id] == datetime(2026, 12, 8, 17, 3, tzinfo=UTC)
    assert next_runs[later.cron_job_id] == later.next_run_at  # untouched
    assert next_runs[threshold.cron_job_id] == datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    assert db.execute("SELECT bool_or(locked) AS any FROM cron_jobs").fetchone()["any"] is False

    # Same logical time again: nothing is due, nothing is sent, the ledger is unchanged.
    mailbox.clear()
    again = run_dag(kpi_dag)
    assert str(again.state) == "success"
    assert mailbox.messages() == []
    assert len(ledger(db)) == 3


def test_one_alerts_failure_never_stops_the_others(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
) -> None:
    created_at = LOGICAL_TIME - timedelta(minutes=3)
    good = create_alert(
        db, schedule_alert(1, "Good", ["good@org1.example.com"], "UTC", 17, 5), now=created_at
    )
    unknown_measure = create_alert(
        db,
        {
            **schedule_alert(1, "Unknown measure", ["a@org1.example.com"], "UTC", 17, 5),
            "cube_query": {"measures": ["orders.nope"]},
        },
        now=created_at,
    )
    bad_gate = create_alert(
        db, schedule_alert(2, "Bad gate", ["b@org2.example.com"], "UTC", 17, 5), now=created_at
    )
    # A malformed gating condition written by plain SQL (the API would refuse it).
    db.execute(
        "UPDATE kpi_schedules SET gating_condition = %s WHERE kpi_alert_id = %s",
        (json.dumps({"measure": "orders.total_amount", "op": "≈", "value": "lots"}), bad_gate.alert_id),
    )

    dag_run = run_dag(kpi_dag)

    assert str(dag_run.state) == "failed"  # the summary makes failures visible on the run
    assert sorted(s for (t, _), s in task_states(dag_run).items() if t == "process_alert") == [
        "failed",
        "failed",
        "success",
    ]
    assert [m["To"] for m in mailbox.messages()] == ["good@org1.example.com"]
    rows = {r["kpi_alert_id"]: r for r in ledger(db)}
    assert rows[good.alert_id]["status"] == "sent"
    assert rows[unknown_measure.alert_id]["status"] == "failed"
    assert "orders.nope" in rows[unknown_measure.alert_id]["error"]
    assert "stack" not in rows[unknown_measure.alert_id]["error"].lower()
    assert rows[bad_gate.alert_id]["status"] == "failed"
    assert "gating" in rows[bad_gate.alert_id]["error"].lower()
    # Failed slots are finished and the alerts moved on: nothing stays locked or half-written.
    assert (
        db.execute(
            "SELECT count(*) AS n FROM cron_jobs WHERE locked OR next_run_at <= %s", (LOGICAL_TIME,)
        ).fetchone()["n"]
        == 0
    )


def test_alert_created_by_plain_sql_is_picked_up(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
) -> None:
    """The seed's documented way: cron_jobs, then kpi_alerts, then kpi_schedules, no next_run_at."""
    cron_job_id = db.execute(
        "INSERT INTO cron_jobs (job_name, locked, master_locked) "
        "VALUES ('kpi_alert_123', false, false) RETURNING id"
    ).fetchone()["id"]
    alert_id = db.execute(
        "INSERT INTO kpi_alerts (cron_job_id, organization_id, dashboard_id, graph_id, alert_type, alert_name, "
        "recipients, is_active, cube_query) VALUES (%s, 1, 1, 1, 'schedule', 'Seeded by SQL', "
        "ARRAY['seed@org1.example.com'], true, %s) RETURNING id",
        (cron_job_id, json.dumps(FIRST_WEEK_OF_NOVEMBER)),
    ).fetchone()["id"]
    db.execute(
        "INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_hour, schedule_minute, "
        "selected_days, timezone, attachment_type) VALUES (%s, 'day', 9, 0, '{}', "
        "'America/Los_Angeles', 'csv')",
        (alert_id,),
    )

    dag_run = run_dag(kpi_dag)

    assert str(dag_run.state) == "success"
    assert [m["To"] for m in mailbox.messages()] == ["seed@org1.example.com"]
    (row,) = ledger(db)
    assert row["status"] == "sent" and row["slot"] == datetime(2026, 12, 7, 17, 0, tzinfo=UTC)


def test_many_due_alerts_are_mapped_in_batches(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More due alerts than parallel slots: the map items are batches (one per slot here), labelled with
    their positions in the due list, so the map stays short."""
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_PARALLELISM", "2")
    for n in range(5):
        create_alert(
            db,
            schedule_alert(1, f"Batch alert {n}", [f"r{n}@org1.example.com"], "UTC", 17, 5),
            now=LOGICAL_TIME - timedelta(minutes=4),
        )

    dag_run = run_dag(kpi_dag)

    assert str(dag_run.state) == "success"
    mapped = [ti for ti in dag_run.get_task_instances() if ti.task_id == "process_alert"]
    assert sorted(ti.rendered_map_index for ti in mapped) == [  # each batch says how its alerts ended
        "batch 1/2: alerts 1-3: 3 sent",
        "batch 2/2: alerts 4-5: 2 sent",
    ]
    assert sorted(m["To"] for m in mailbox.messages()) == [f"r{n}@org1.example.com" for n in range(5)]
    assert [r["status"] for r in ledger(db)] == ["sent"] * 5


def test_one_task_per_alert_is_labelled_with_its_id_and_name(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
) -> None:
    created = create_alert(
        db,
        schedule_alert(1, "Labelled", ["l@org1.example.com"], "UTC", 17, 5),
        now=LOGICAL_TIME - timedelta(minutes=4),
    )
    dag_run = run_dag(kpi_dag)
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "process_alert"]
    assert ti.rendered_map_index == f"alert {created.alert_id}: Labelled"


def test_the_alert_authors_note_is_in_both_bodies_escaped(
    kpi_dag: Any, db: psycopg.Connection[Any], mailbox: MailCatcher, airflow_connections: dict[str, str]
) -> None:
    note = 'Numbers for the <b>board</b> & "finance".\nCall Ana before forwarding.'
    spec = {**schedule_alert(1, "With a note", ["n@org1.example.com"], "UTC", 17, 5), "message": note}
    create_alert(db, spec, now=LOGICAL_TIME - timedelta(minutes=4))

    assert str(run_dag(kpi_dag).state) == "success"

    (message,) = mailbox.messages()
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert note.replace("\n", "\r\n") in text  # SMTP line ends
    assert (
        "Numbers for the &lt;b&gt;board&lt;/b&gt; &amp; &#34;finance&#34;." in html and "<b>board" not in html
    )


def test_settings_are_rendered_template_fields_read_from_variables(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator's settings are Jinja-read Variables: what a task ran with is in "Rendered Template"."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_SENDER", "Finance KPIs <kpi@finance.example.com>")
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_LEASE_MINUTES", "45")
    create_alert(
        db,
        schedule_alert(1, "Rendered", ["r@org1.example.com"], "UTC", 17, 5),
        now=LOGICAL_TIME - timedelta(minutes=4),
    )

    dag_run = run_dag(kpi_dag)

    assert str(dag_run.state) == "success"
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "process_alert"]
    rendered = RenderedTaskInstanceFields.get_templated_fields(ti)
    assert rendered is not None
    assert rendered["sender"] == "Finance KPIs <kpi@finance.example.com>"
    assert rendered["lease_minutes"] == "45"
    assert rendered["misfire_minutes"] == "60"  # the Variable's default
    assert rendered["environment"] == "production"
    (message,) = mailbox.messages()
    assert message["From"] == "Finance KPIs <kpi@finance.example.com>"


def test_a_cron_report_every_quarter_hour_runs_each_slot_under_the_per_hour_trigger(
    kpi_dag: Any, db: psycopg.Connection[Any], mailbox: MailCatcher, airflow_connections: dict[str, str]
) -> None:
    """Two slots of one UTC hour through the real DAG: both sent; cron_jobs stamped once for the hour."""
    every_quarter = {
        "frequency_interval": "cron",
        "cron_expression": "*/15 * * * *",
        "timezone": "Asia/Kolkata",
    }
    spec = report_spec("Quarter-hourly orders", cube_query=FIRST_WEEK_OF_NOVEMBER, schedule=every_quarter)
    spec["schedule"] = {**every_quarter, "attachment_type": "csv"}
    created = create_alert(db, spec, now=LOGICAL_TIME - timedelta(minutes=10))  # 16:55 -> first slot 17:00
    assert created.next_run_at == datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
    for tick in (LOGICAL_TIME, LOGICAL_TIME + timedelta(minutes=15)):  # 17:05 runs 17:00, 17:20 runs 17:15
        dag_run = run_dag(kpi_dag, tick)
        assert str(dag_run.state) == "success", task_states(dag_run)
    rows = ledger(db)
    assert [(r["slot"].astimezone(UTC).strftime("%H:%M"), r["status"]) for r in rows] == [
        ("17:00", "sent"),
        ("17:15", "sent"),
    ]
    job = db.execute(
        "SELECT last_ran_at_hour, last_ran_at_minute, next_run_at FROM cron_jobs WHERE id = %s",
        (created.cron_job_id,),
    ).fetchone()
    assert job == {
        "last_ran_at_hour": 17,
        "last_ran_at_minute": 0,
        "next_run_at": datetime(2026, 12, 7, 17, 30, tzinfo=UTC),
    }
    assert len(mailbox.messages()) == 2


def test_a_threshold_checked_every_five_minutes_across_an_hour_boundary(
    kpi_dag: Any, db: psycopg.Connection[Any], mailbox: MailCatcher, airflow_connections: dict[str, str]
) -> None:
    """Three ticks of the real DAG (17:55, 18:00, 18:05): three checks, one notice (re-arm), cron_jobs stamped
    once per UTC hour; the sub-hourly state is in kpi_thresholds and the ledger."""
    spec = {
        "organization_id": 2,
        "alert_name": "Org 2 orders above 0, every 5 minutes",
        "recipients": ["ops@org2.example.com"],
        "cube_query": FIRST_WEEK_OF_NOVEMBER,
        "threshold": {"condition": "GREATER_THAN", "threshold_value": "0", "check_every_minutes": 5},
    }
    first = datetime(2026, 12, 7, 17, 55, tzinfo=UTC)
    created = create_alert(db, spec, now=first + timedelta(minutes=1))
    assert created.next_run_at == first
    stamps = []
    for tick in (first, first + timedelta(minutes=5), first + timedelta(minutes=10)):
        dag_run = run_dag(kpi_dag, tick)
        assert str(dag_run.state) == "success", task_states(dag_run)
        job = db.execute(
            "SELECT last_ran_at_hour, last_ran_at_minute FROM cron_jobs WHERE id = %s", (created.cron_job_id,)
        ).fetchone()
        stamps.append((job["last_ran_at_hour"], job["last_ran_at_minute"]))
    assert [(r["slot"].astimezone(UTC).strftime("%H:%M"), r["status"]) for r in ledger(db)] == [
        ("17:55", "sent"),
        ("18:00", "suppressed"),
        ("18:05", "suppressed"),
    ]
    assert stamps == [(17, 55), (18, 0), (18, 0)]
    state = db.execute(
        "SELECT state FROM kpi_thresholds WHERE kpi_alert_id = %s", (created.alert_id,)
    ).fetchone()
    assert state["state"] == "TRIGGERED"
    assert len(mailbox.messages()) == 1
