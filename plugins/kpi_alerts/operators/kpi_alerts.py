"""The Airflow shell: what the ``kpi_alerts`` DAG's tasks do, given their Airflow context.

Settings are Airflow Variables (``AIRFLOW_VAR_*`` works too), read at run time, never at parse time:

- ``kpi_alerts_environment``: ``production`` sends e-mail; anything else writes ``.eml`` files to
  ``kpi_alerts_outbox_dir`` (default ``$AIRFLOW_HOME/kpi_alerts_outbox``) — a dry run.
- ``kpi_alerts_sender``, ``kpi_alerts_misfire_minutes`` (60), ``kpi_alerts_lease_minutes`` (30),
  ``kpi_alerts_max_attachment_mb`` (10), ``kpi_alerts_retention_days`` (90).
- Batches (:func:`kpi_alerts.pipeline.batch.plan_batches`): ``kpi_alerts_batch_seconds`` (60, the target
  duration of one map item), ``kpi_alerts_seconds_per_alert`` (0.15, the estimate it is cut by),
  ``kpi_alerts_parallelism`` (default ``[core] parallelism``), ``kpi_alerts_batch_threads`` (4, alerts in
  flight per map item), ``kpi_alerts_batch_threshold`` (0: up to this many due alerts, one map item each
  regardless of the plan).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_alerts.errors import TransientAlertError
from kpi_alerts.ledger.claims import Claimant, ClaimSettings
from kpi_alerts.ledger.database import DB_CONN_ID

log = logging.getLogger(__name__)

MAX_MAP_LENGTH = 1024  # Airflow's [core] max_map_length default; mapped lists must stay below it


def _variable(name: str, default: str) -> str:
    from airflow.sdk import Variable

    return str(Variable.get(name, default=default))


def _db_connection() -> Any:
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from psycopg.rows import dict_row

    conn: Any = PostgresHook(postgres_conn_id=DB_CONN_ID).get_conn()
    conn.autocommit = True  # each conn.transaction() block is then a real, short transaction
    conn.row_factory = dict_row
    return conn


def logical_time_of(context: Any) -> datetime:
    value = context.get("logical_date") or context["dag_run"].run_after
    return datetime.fromisoformat(value.isoformat()).astimezone(UTC)


def claim_settings() -> ClaimSettings:
    return ClaimSettings(
        lease=timedelta(minutes=float(_variable("kpi_alerts_lease_minutes", "30"))),
        misfire_window=timedelta(minutes=float(_variable("kpi_alerts_misfire_minutes", "60"))),
    )


def find_due_alerts(context: Any) -> list[dict[str, Any]]:
    """List due alerts as map items: batches sized from a target duration and the parallelism (one alert
    per item when there are few)."""
    from kpi_alerts.ledger.alert_changes import record_paused_slots
    from kpi_alerts.ledger.due_alerts import initialise_first_runs, list_due_alerts, park_inactive_alerts
    from kpi_alerts.pipeline.batch import plan_batches

    logical_time = logical_time_of(context)
    settings = claim_settings()
    with _db_connection() as conn:
        park_inactive_alerts(conn, logical_time=logical_time)
        paused = record_paused_slots(conn, logical_time=logical_time, dag_run_id=context["run_id"])
        if paused:
            log.info("%d paused alert(s) had a slot due: recorded as skipped (paused by an operator)", paused)
        initialised = initialise_first_runs(
            conn, logical_time=logical_time, misfire_window=settings.misfire_window
        )
        due = list_due_alerts(conn, logical_time=logical_time, limit=100_000)
    log.info("%d alert(s) due at %s (%d newly initialised)", len(due), logical_time.isoformat(), initialised)
    alerts = [{"alert_id": d.alert_id, "alert_name": d.alert_name} for d in due]
    if len(alerts) <= int(_variable("kpi_alerts_batch_threshold", "0")):
        return [_single(a) for a in alerts]
    parallelism = _parallelism()
    plan = plan_batches(
        len(alerts),
        parallelism=parallelism,
        target_seconds=float(_variable("kpi_alerts_batch_seconds", "60")),
        seconds_per_alert=float(_variable("kpi_alerts_seconds_per_alert", "0.15")),
        max_items=MAX_MAP_LENGTH - 1,
    )
    _warn_if_overloaded(plan, parallelism, context, settings)
    if plan.batches == len(alerts):
        return [_single(a) for a in alerts]
    log.info(
        "%d batch(es) of %d-%d alerts for %d parallel slot(s); estimated %.0f s",
        plan.batches,
        min(e - s for s, e in plan.ranges),
        max(e - s for s, e in plan.ranges),
        parallelism,
        plan.estimated_seconds,
    )
    return [
        {"alerts": alerts[start:end], "label": plan.label(n)} for n, (start, end) in enumerate(plan.ranges)
    ]


def _single(alert: dict[str, Any]) -> dict[str, Any]:
    return {"alerts": [alert], "label": f"alert {alert['alert_id']}: {alert['alert_name']}"[:200]}


def _parallelism() -> int:
    configured = _variable("kpi_alerts_parallelism", "")
    if configured:
        return max(1, int(configured))
    from airflow.sdk.configuration import conf

    return max(1, conf.getint("core", "parallelism", fallback=32))


def _warn_if_overloaded(plan: Any, parallelism: int, context: Any, settings: ClaimSettings) -> None:
    """Say so when the tick is estimated to outlast its DAG run timeout: what is left stays due, and later
    ticks continue it while its slot is inside the misfire window (older slots are recorded missed)."""
    timeout = getattr(context.get("dag"), "dagrun_timeout", None)
    if timeout is None or plan.estimated_seconds <= timeout.total_seconds():
        return
    log.warning(
        "%d due alerts need an estimated %.0f s at parallelism %d, more than the run's timeout (%s): the run will "
        "be stopped and later ticks continue the rest within the %s misfire window; raise "
        "kpi_alerts_parallelism (and [core] parallelism) or add workers",
        plan.due,
        plan.estimated_seconds,
        parallelism,
        timeout,
        settings.misfire_window,
    )


def process_alerts(item: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    """Process one map item; every alert is attempted, then the task fails if any alert failed."""
    from kpi_alerts.delivery.mailers import OutboxMailer, SessionMailer
    from kpi_alerts.hooks.cube import CubeHook
    from kpi_alerts.pipeline.alert_run import RunSettings
    from kpi_alerts.pipeline.batch import run_batch

    ti = context["ti"]
    production = _variable("kpi_alerts_environment", "development") == "production"
    outbox = Path(
        _variable(
            "kpi_alerts_outbox_dir", str(Path(os.environ.get("AIRFLOW_HOME", ".")) / "kpi_alerts_outbox")
        )
    )
    settings = RunSettings(
        logical_time=logical_time_of(context),
        claimant=Claimant(
            dag_run_id=context["run_id"],
            task_instance=f"{ti.task_id}[{ti.map_index}]",
            try_number=ti.try_number,
        ),
        final_attempt=ti.try_number > ti.max_tries,
        sender=_variable("kpi_alerts_sender", "KPI Alerts <kpi-alerts@localhost>"),
        max_attachment_bytes=int(float(_variable("kpi_alerts_max_attachment_mb", "10")) * 1024 * 1024),
        claim=claim_settings(),
    )
    with CubeHook() as source:
        batch = run_batch(
            [a["alert_id"] for a in item["alerts"]],
            connect=_db_connection,
            open_mailer=lambda: SessionMailer(_smtp_session) if production else OutboxMailer(outbox),
            source=source,
            settings=settings,
            threads=int(_variable("kpi_alerts_batch_threads", "4")),
        )
    results = [run.as_dict() for run in batch.runs]
    for result in results:
        log.info("alert %s: %s — %s", result["alert_id"], result["status"], result["detail"])
    if len(item["alerts"]) > 1:
        log.info(
            "%d alert(s) in %.1f s: %d Cube request(s) (%d answered from the batch), %d SMTP session(s)",
            len(item["alerts"]),
            batch.seconds,
            batch.cube_requests,
            batch.cube_shared,
            batch.smtp_sessions,
        )
    if batch.failures:
        if batch.transient:  # Airflow retries the item; finished alerts are no longer due and are skipped
            raise TransientAlertError("; ".join(batch.failures))
        from airflow.sdk.exceptions import AirflowFailException

        # Recorded in the ledger already; retrying cannot help, so fail now without retries.
        raise AirflowFailException("; ".join(batch.failures))
    return results


def _smtp_session() -> Any:
    """A connected ``smtplib`` client for ``smtp_default`` (SmtpHook reads the connection, TLS, login)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from kpi_alerts.delivery.mailers import SMTP_CONN_ID

    hook = SmtpHook(smtp_conn_id=SMTP_CONN_ID)
    hook.get_conn()
    return hook._smtp_client


def summarize(context: Any) -> dict[str, Any]:
    """Count this run's ledger rows by status (reads the ledger, so failed tasks are counted too), prune
    finished ledger rows older than ``kpi_alerts_retention_days``, and fail — so the run shows red — when
    anything went wrong: a failed slot, a delivery never confirmed, a claim left unfinished, or a task
    of the run that did not succeed (the due listing itself, a map item that crashed)."""
    from kpi_alerts.ledger import queries
    from kpi_alerts.ledger.claims import UNFINISHED
    from kpi_alerts.ledger.retention import prune_results

    retention = timedelta(days=float(_variable("kpi_alerts_retention_days", "90")))
    with _db_connection() as conn:
        rows = conn.execute(queries.RUN_SUMMARY, {"run_id": context["run_id"]}).fetchall()
        pruned = prune_results(conn, retention=retention, keep_dag_run_id=context["run_id"])
    if pruned:
        log.info("Pruned %d ledger row(s) older than %s", pruned, retention)
    counts = Counter({r["status"]: r["n"] for r in rows})
    log.info("KPI alerts run %s: %s", context["run_id"], dict(counts) or "nothing was due")
    problems = []
    if counts["failed"]:
        problems.append(f"{counts['failed']} alert(s) failed (see cron_job_results.error)")
    if counts["delivery_unknown"]:
        problems.append(
            f"{counts['delivery_unknown']} message(s) were transmitted but never confirmed by the SMTP server; "
            "not resent (status delivery_unknown: check and replay if needed)"
        )
    unfinished = {status: counts[status] for status in sorted(UNFINISHED) if counts[status]}
    if unfinished:
        problems.append(f"{sum(unfinished.values())} slot(s) left unfinished {unfinished}")
    not_succeeded = _tasks_not_succeeded(context)
    if not_succeeded:
        problems.append(f"task(s) that did not succeed: {', '.join(not_succeeded)}")
    if problems:
        from airflow.sdk.exceptions import AirflowFailException

        # The other alerts were processed; failing here makes the run itself show red in the UI.
        raise AirflowFailException("; ".join(problems))
    return dict(counts)


def _tasks_not_succeeded(context: Any) -> list[str]:
    """This run's other task instances that failed (or never ran because an upstream one failed)."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return sorted(
        key
        for key, state in states.items()
        if key != ti.task_id and str(state) in {"failed", "upstream_failed"}
    )
