"""
### KPI alerts

Every five minutes (America/Los_Angeles), find the KPI alerts due at this run's logical time and
process each one in its own mapped task instance: **claim** its slot in `cron_jobs` (exactly
once, whatever the number of schedulers, workers or retries), **fetch** the KPI from Cube.js,
**check** the gating condition or threshold, **render** the PDF / Excel / CSV attachment,
**send** it over SMTP and **record** the outcome in `cron_job_results`.

Connections: `kpi_alerts_db` (Postgres), `cube_default` (Cube.js), `smtp_default` (SMTP).
E-mail is sent only when the Variable `kpi_alerts_environment` is `production`; otherwise each
message is written to an outbox folder. Every setting is a templated argument of the operators
(`kpi_alerts.operators.kpi_alerts`) whose default reads its Variable: see each task's "Rendered Template".

Parsing this file imports only Airflow, the standard library and the operator classes: no database,
network or heavy libraries at parse time.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from kpi_alerts.operators.kpi_alerts import DueAlertsOperator, KpiAlertOperator, KpiAlertsSummaryOperator
from kpi_alerts.settings import TICK_MINUTES

with DAG(
    dag_id="kpi_alerts",
    schedule=f"*/{TICK_MINUTES} * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Los_Angeles"),
    catchup=False,
    max_active_runs=1,
    # sized with the lease (30 min) and the misfire window (60 min): 5 min tick + 20 + 30 < 60, so the
    # claims of a run stopped at its timeout expire while their slots may still be sent (README: Peak ticks)
    dagrun_timeout=timedelta(minutes=20),
    default_args={
        "owner": "analytics-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
    },
    tags=["kpi-alerts"],
    doc_md=__doc__,
):
    due = DueAlertsOperator(task_id="find_due_alerts")
    processed = KpiAlertOperator.partial(
        task_id="process_alert", map_index_template="{{ alert_label }}"
    ).expand(item=due.output)
    processed >> KpiAlertsSummaryOperator(task_id="summarize", trigger_rule="all_done")
