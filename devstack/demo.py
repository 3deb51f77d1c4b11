"""``make demo``: the product end to end on the local stack.

Creates demo alerts for two organizations (scheduled reports in CSV, Excel and PDF, a gated one,
threshold alerts, and one alert per condition kind of docs/conditions.md: a pending period, a report
sent only if its data changed, a recovery threshold, a per-group check, an anomaly band), runs
``airflow dags test kpi_alerts <T>`` at a logical time T when they are due — after two earlier ticks
for the alerts that need a history: T - 1 day (the recovery threshold's alert breaches the day before
and holds yesterday), T - 5 minutes (the pending period's first breached check, the report whose data
then has not changed) — and prints the ledger and the messages the mail catcher received,
each with its subject, the "Why:" line that explains a threshold alert's decision, and its attachments.

The demo has a database and an Airflow home of its own (``kpi_alerts_demo``, ``.devstack/demo-airflow``),
recreated on each run, so alerts made by hand in ``kpi_alerts`` (what ``make env`` points at) are never
wiped; the shared mailbox is not emptied either: the demo lists only the messages that arrived during it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from devstack import STATE_DIR, ForeignServerError
from devstack.mail import read_message
from devstack.postgres import ForeignDatabaseError, ensure_database
from devstack.stack import airflow_env, up

DEMO_DB = "kpi_alerts_demo"  # not ALERTS_DB: `make env` and alerts made by hand use that one

REVENUE_LAST_7_DAYS: dict[str, Any] = {
    "measures": ["orders.total_amount", "orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 7 days"}],
}
REVENUE_BY_CATEGORY: dict[str, Any] = {
    "measures": ["orders.total_amount", "orders.average_amount"],
    "dimensions": ["orders.category"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": "last 7 days"}],
}
ORDERS_YESTERDAY: dict[str, Any] = {
    "measures": ["orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 2 days"}],
}
ORDERS_YESTERDAY_UTC: dict[str, Any] = {
    "measures": ["orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 3 days"}],
}
ORDERS_BY_CATEGORY_DAILY: dict[str, Any] = {
    "measures": ["orders.count"],
    "dimensions": ["orders.category"],
    "timeDimensions": [{"dimension": "orders.created_at", "granularity": "day", "dateRange": "last 3 days"}],
}
#: The demo dataset's first day and categories (devstack/analytics_data.sql): organization 1's 4 orders of
#: day d (in UTC) go to categories (d + 2k) % 3, k = 1..4, so one category has 2 orders that day, in turn.
DATA_FIRST_DAY = date(2026, 1, 1)
CATEGORIES = ("books", "electronics", "garden")


def busy_category(day: date) -> str:
    """The category with two of organization 1's orders on ``day`` (UTC); the others have one each. On the
    same weekday of the last 8 weeks it had two orders twice and one six times: a median of 1 and a MAD of
    0, so two is outside the band."""
    return CATEGORIES[((day - DATA_FIRST_DAY).days + 2) % 3]


def checked_day(created: datetime) -> date:
    """The UTC day an hourly threshold alert created at ``created`` checks first: the latest complete day
    at its first check, the hour on or before ``created`` (docs/conditions.md)."""
    return created.astimezone(UTC).replace(minute=0, second=0, microsecond=0).date() - timedelta(days=1)


def hysteresis_alert(due_at: datetime) -> dict[str, Any]:
    """Checked daily at ``due_at``'s time, first the day before: a category with two orders the day before
    yesterday (a breach of "above 1") and one yesterday, which would be a recovery without the recovery
    threshold; with it ("recovers below 1") the breach holds, and its re-arm sends a reminder."""
    category = busy_category(due_at.astimezone(UTC).date() - timedelta(days=2))
    return {
        "organization_id": 1,
        "alert_name": f"{category.capitalize()} orders above 1, recover below 1 (hysteresis)",
        "cube_query": {
            **ORDERS_YESTERDAY_UTC,
            "filters": [{"member": "orders.category", "operator": "equals", "values": [category]}],
        },
        "recipients": ["ops@org1.example.com"],
        "threshold": {
            "condition": "GREATER_THAN",
            "threshold_value": "1",
            "recovery_threshold": "1",
            "check_daily_at": f"{due_at.astimezone(UTC):%H:%M}",
            "timezone": "UTC",
        },
    }


def early_alerts(due_at: datetime) -> list[dict[str, Any]]:
    """Alerts whose first slot is the tick before ``due_at`` and whose second is ``due_at``: a breach
    notified after two checks in a row, and a report the second slot skips because its data is the same."""
    return [
        {
            "organization_id": 1,
            "alert_name": "Orders above 3 for 2 checks in a row (pending period)",
            "cube_query": ORDERS_YESTERDAY_UTC,
            "recipients": ["ops@org1.example.com"],
            "threshold": {
                "condition": "GREATER_THAN",
                "threshold_value": "3",
                "pending_checks": 2,
                "check_every_minutes": 5,
                "timezone": "UTC",
            },
        },
        {
            "organization_id": 2,
            "alert_name": "Revenue by category every 5 minutes, only if changed",
            "cube_query": REVENUE_BY_CATEGORY,
            "recipients": ["sales@org2.example.com"],
            "schedule": {
                "frequency_interval": "cron",
                "cron_expression": "*/5 * * * *",
                "timezone": "UTC",
                "attachment_type": "csv",
                "only_if_changed": True,
            },
        },
    ]


def condition_alerts(due_at: datetime) -> list[dict[str, Any]]:
    """A per-group and an anomaly alert, each notifying at its first check (the hour before ``due_at``)."""
    category = busy_category(checked_day(due_at - timedelta(minutes=1)))
    return [
        {
            "organization_id": 1,
            "alert_name": "Orders per category above 1 (per group)",
            "cube_query": ORDERS_BY_CATEGORY_DAILY,
            "recipients": ["ops@org1.example.com"],
            "threshold": {
                "condition": "GREATER_THAN",
                "threshold_value": "1",
                "group_by": "orders.category",
                "timezone": "UTC",
            },
        },
        {
            "organization_id": 1,
            "alert_name": f"Orders of {category} outside their expected range (anomaly)",
            "cube_query": {
                **ORDERS_YESTERDAY_UTC,
                "filters": [{"member": "orders.category", "operator": "equals", "values": [category]}],
            },
            "recipients": ["ops@org1.example.com"],
            "threshold": {
                "condition": "OUTSIDE_EXPECTED_RANGE",
                "threshold_value": "3",
                "anomaly_method": "median_mad",
                "history_weeks": 8,
                "min_history": 4,
                "timezone": "UTC",
            },
        },
    ]


def demo_alerts(due_at: datetime) -> list[dict[str, Any]]:
    """Alerts whose first slot is ``due_at``, each in its own timezone."""

    def at(tz: str) -> dict[str, Any]:
        local = due_at.astimezone(ZoneInfo(tz))
        return {
            "schedule_hour": local.hour,
            "schedule_minute": local.minute,
            "timezone": tz,
            "weekday": (local.isoweekday() % 7),
        }

    la, london, kolkata = at("America/Los_Angeles"), at("Europe/London"), at("Asia/Kolkata")
    common = {"dashboard_url": "https://analytics.example.com/dashboards/7"}
    return [
        {
            **common,
            "organization_id": 1,
            "alert_name": "Daily revenue (CSV)",
            "cube_query": REVENUE_LAST_7_DAYS,
            "recipients": ["finance@org1.example.com", "ceo@org1.example.com"],
            "schedule": {"frequency_interval": "day", **_without(la, "weekday"), "attachment_type": "csv"},
        },
        {
            **common,
            "organization_id": 2,
            "alert_name": "Weekly revenue by category (Excel)",
            "cube_query": REVENUE_BY_CATEGORY,
            "recipients": ["sales@org2.example.com"],
            "schedule": {
                "frequency_interval": "week",
                **_without(london, "weekday"),
                "selected_days": [london["weekday"]],
                "attachment_type": "excel",
            },
        },
        {
            **common,
            "organization_id": 1,
            "alert_name": "Revenue board pack (PDF, gated: revenue > 100)",
            "cube_query": REVENUE_LAST_7_DAYS,
            "recipients": ["board@org1.example.com"],
            "schedule": {
                "frequency_interval": "day",
                **_without(kolkata, "weekday"),
                "attachment_type": "pdf",
                "gating_condition": {
                    "measure": "orders.total_amount",
                    "op": ">",
                    "value": 100,
                    "aggregate": "total",
                },
            },
        },
        {
            **common,
            "organization_id": 2,
            "alert_name": "Only if revenue > 1 trillion (gated out)",
            "cube_query": REVENUE_LAST_7_DAYS,
            "recipients": ["sales@org2.example.com"],
            "schedule": {
                "frequency_interval": "day",
                **_without(la, "weekday"),
                "attachment_type": "csv",
                "gating_condition": {
                    "measure": "orders.total_amount",
                    "op": ">",
                    "value": 1_000_000_000_000,
                    "aggregate": "total",
                },
            },
        },
        {
            "organization_id": 1,
            "alert_name": "Orders yesterday above 1",
            "cube_query": ORDERS_YESTERDAY,
            "recipients": ["ops@org1.example.com"],
            "threshold": {
                "condition": "GREATER_THAN",
                "threshold_value": "1",
                "timezone": "America/Los_Angeles",
            },
        },
        {
            "organization_id": 2,
            "alert_name": "Orders yesterday below zero",
            "cube_query": ORDERS_YESTERDAY,
            "recipients": ["ops@org2.example.com"],
            "threshold": {"condition": "LESS_THAN", "threshold_value": "0", "timezone": "Europe/London"},
        },
    ]


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def next_tick(after: datetime) -> datetime:
    """The first 5-minute tick at least five minutes after ``after`` (the DAG's */5 schedule)."""
    base = after.replace(second=0, microsecond=0) + timedelta(minutes=5)
    return base + timedelta(minutes=(-base.minute) % 5)


def main() -> int:
    from kpi_alerts.ledger.database import connect
    from kpi_alerts.ledger.migrations import migrate

    try:
        stack = up()
        url = ensure_database(stack.pg, DEMO_DB, recreate=True)
    except (ForeignServerError, ForeignDatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    migrate(url)
    stack = dataclasses.replace(stack, alerts_db_url=url)
    stack.mail_dir.mkdir(parents=True, exist_ok=True)
    earlier_mail = {p.name for p in stack.mail_dir.glob("*.eml")}
    due_at = next_tick(datetime.now(UTC))
    early = due_at - timedelta(minutes=5)
    airflow_home = STATE_DIR / "demo-airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **airflow_env(stack, airflow_home)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)

    day_before = due_at - timedelta(days=1)
    create_all(url, [hysteresis_alert(due_at)], now=day_before - timedelta(minutes=1))
    code = dags_test(airflow, env, day_before, "demo-dags-test-day-before.log")
    if code == 0:
        create_all(url, early_alerts(due_at), now=early - timedelta(minutes=1))
        code = dags_test(airflow, env, early, "demo-dags-test-early.log")
    if code == 0:
        create_all(url, [*demo_alerts(due_at), *condition_alerts(due_at)], now=due_at - timedelta(minutes=1))
        code = dags_test(airflow, env, due_at, "demo-dags-test.log")

    with connect(url) as conn:
        print("\nLedger (cron_job_results):")
        for row in conn.execute(
            "SELECT ka.id, ka.alert_name, r.slot, r.status, r.delivery, r.attachment, r.value, r.error, "
            "r.details->>'transition' AS transition "
            "FROM cron_job_results r JOIN kpi_alerts ka ON ka.cron_job_id = r.cron_job_id ORDER BY ka.id, r.slot"
        ).fetchall():
            extra = (
                row["attachment"]
                or row["error"]
                or (f"value {row['value']}" if row["value"] is not None else "")
            )
            if row["status"] == "suppressed" and row["transition"]:
                extra = f"{extra}; {row['transition']}" if extra else row["transition"]
            print(
                f"  alert {row['id']:>2}  {row['slot']:%m-%d %H:%M}Z {row['status']:<13} {row['alert_name'][:60]:<60} {extra}"
            )
    print_mailbox(stack.mail_dir, skip=earlier_mail)
    return code


def create_all(url: str, specs: list[dict[str, Any]], *, now: datetime) -> None:
    from kpi_alerts.ledger.alert_store import create_alert
    from kpi_alerts.ledger.database import connect

    with connect(url) as conn:
        for spec in specs:
            created = create_alert(conn, spec, now=now)
            print(
                f"created alert {created.alert_id:>2} {spec['alert_name']!r}, next run {created.next_run_at:%Y-%m-%d %H:%M}Z"
            )


def dags_test(airflow: str, env: dict[str, str], logical_time: datetime, log_name: str) -> int:
    """One tick of the ``kpi_alerts`` DAG at ``logical_time``; its output goes to a log file."""
    print(f"\n$ airflow dags test kpi_alerts {logical_time.isoformat()}")
    run = subprocess.run(
        [airflow, "dags", "test", "kpi_alerts", logical_time.isoformat()],
        env=env,
        capture_output=True,
        text=True,
    )
    (STATE_DIR / log_name).write_text(run.stdout + run.stderr)
    print(f"  exit code {run.returncode}; full log in {STATE_DIR / log_name}\n")
    return run.returncode


def print_mailbox(mail_dir: Path, skip: AbstractSet[str] = frozenset()) -> None:
    attachments = mail_dir / "attachments"
    attachments.mkdir(exist_ok=True)
    messages = sorted(p for p in mail_dir.glob("*.eml") if p.name not in skip)
    print(f"\nThe mail catcher received {len(messages)} message(s) during the demo, in {mail_dir}:")
    for path in messages:
        message = read_message(path)
        print(f"  {path.name}\n    To: {message['To']}\n    Subject: {message['Subject']}")
        why = decision_line(message)
        if why:
            print(f"    {why}")
        for part in message.iter_attachments():
            name = part.get_filename() or "attachment"
            target = attachments / f"{path.stem}-{name}"
            payload = part.get_payload(decode=True)
            target.write_bytes(payload if isinstance(payload, bytes) else b"")
            print(f"    Attachment: {name} ({part.get_content_type()}) -> {target}")
    print("\nOpen a message with any mail client (they are plain .eml files), or the attachments directly.")


def decision_line(message: Any) -> str | None:
    """The "Why:" line of a message's plain-text body: the sentence that explains a threshold alert's
    decision (reports have none)."""
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return None
    return next((line.strip() for line in body.get_content().splitlines() if line.startswith("Why: ")), None)


if __name__ == "__main__":
    raise SystemExit(main())
