"""
### KPI alerts

Every five minutes (America/Los_Angeles), find the KPI alerts due at this run's logical time and
process each one in its own mapped task instance: **claim** its slot in `cron_jobs` (exactly
once, whatever the number of schedulers, workers or retries), **fetch** the KPI from Cube.js,
**check** the gating condition or threshold, **render** the PDF / Excel / CSV attachment,
**send** it over SMTP and **record** the outcome in `cron_job_results`.

Connections: `kpi_alerts_db` (Postgres), `cube_default` (Cube.js), `smtp_default` (SMTP).
E-mail is sent only when the Variable `kpi_alerts_environment` is `production`; otherwise each
message is written to an outbox folder (see `kpi_alerts.operators.kpi_alerts`).

Parsing this file imports only Airflow and the standard library: no database, network or heavy
libraries at parse time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="kpi_alerts",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Los_Angeles"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={
        "owner": "analytics-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
    },
    tags=["kpi-alerts"],
    doc_md=__doc__,
)
def kpi_alerts() -> None:
    @task
    def find_due_alerts() -> list[dict[str, Any]]:
        from kpi_alerts.operators.kpi_alerts import find_due_alerts

        return find_due_alerts(get_current_context())

    @task(map_index_template="{{ alert_label }}")
    def process_alert(item: dict[str, Any]) -> list[dict[str, Any]]:
        from kpi_alerts.operators.kpi_alerts import process_alerts

        context = get_current_context()
        context["alert_label"] = item["label"]  # type: ignore[typeddict-unknown-key]
        return process_alerts(item, context)

    @task(trigger_rule="all_done")
    def summarize() -> dict[str, Any]:
        from kpi_alerts.operators.kpi_alerts import summarize

        return summarize(get_current_context())

    results = process_alert.expand(item=find_due_alerts())
    results >> summarize()


kpi_alerts()
