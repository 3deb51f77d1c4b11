"""The Airflow shell: what the ``kpi_alerts`` DAG's tasks do, given their Airflow context and settings.

The operators (:mod:`kpi_alerts.operators.alerts`) call these functions from ``execute`` with a
:class:`TaskSettings` built from their rendered template fields. The fields' defaults read Airflow
Variables (``AIRFLOW_VAR_*`` works too) through Jinja at run time, never at parse time, so each task
instance's "Rendered Template" view shows the values it ran with:

- ``kpi_alerts_environment``: ``production`` sends e-mail; anything else writes ``.eml`` files to
  ``kpi_alerts_outbox_dir`` (default ``$AIRFLOW_HOME/kpi_alerts_outbox``) — a dry run.
- ``kpi_alerts_sender``, ``kpi_alerts_misfire_minutes`` (60), ``kpi_alerts_lease_minutes`` (30),
  ``kpi_alerts_batch_threshold`` (500), ``kpi_alerts_max_attachment_mb`` (10),
  ``kpi_alerts_retention_days`` (90).
- ``kpi_alerts_recipient_privacy``: ``bcc`` (default) — a message to several recipients has
  ``To: undisclosed-recipients:;`` and everyone in Bcc, so no one sees the others' addresses; ``to``
  puts them all in ``To:``.
- ``kpi_alerts_message_id_domain``: the right-hand side of Message-IDs (default: the sender's domain),
  so two deployments never share one; the left-hand side is random per slot, kept across its retries.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_alerts.errors import KpiAlertError, TransientAlertError
from kpi_alerts.ledger.claims import Claimant, ClaimSettings
from kpi_alerts.ledger.database import DB_CONN_ID

log = logging.getLogger(__name__)

MAX_MAP_LENGTH = 1024  # Airflow's [core] max_map_length default; mapped lists must stay below it
DEFAULT_SENDER = "KPI Alerts <kpi-alerts@localhost>"


@dataclass(frozen=True)
class TaskSettings:
    """The settings of the DAG's tasks (the operators' rendered template fields, typed).

    :param environment: ``production`` sends e-mail over ``smtp_default``; anything else is a dry run
        writing ``.eml`` files to ``outbox_dir``.
    :param outbox_dir: the dry run's folder; empty means ``$AIRFLOW_HOME/kpi_alerts_outbox``.
    """

    environment: str = "development"
    sender: str = DEFAULT_SENDER
    outbox_dir: str = ""
    misfire_minutes: float = 60
    lease_minutes: float = 30
    max_attachment_mb: float = 10
    batch_threshold: int = 500
    retention_days: float = 90
    recipient_privacy: str = "bcc"
    message_id_domain: str = ""

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def outbox(self) -> Path:
        return Path(self.outbox_dir or Path(os.environ.get("AIRFLOW_HOME", ".")) / "kpi_alerts_outbox")

    @property
    def claim(self) -> ClaimSettings:
        return ClaimSettings(
            lease=timedelta(minutes=self.lease_minutes),
            misfire_window=timedelta(minutes=self.misfire_minutes),
        )

    @property
    def max_attachment_bytes(self) -> int:
        return int(self.max_attachment_mb * 1024 * 1024)

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)


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


def map_items(alerts: Sequence[dict[str, Any]], threshold: int) -> list[dict[str, Any]]:
    """The due alerts as map items: one alert per item up to ``threshold`` alerts, else at most
    ``threshold`` batches of nearly equal size (``ceil(n / threshold)`` alerts each, the last smaller).

    ``threshold`` is capped below Airflow's ``max_map_length`` so the mapped list is always accepted.
    """
    threshold = max(1, min(threshold, MAX_MAP_LENGTH - 1))
    if len(alerts) <= threshold:
        return [{"alerts": [a], "label": f"alert {a['alert_id']}: {a['alert_name']}"[:200]} for a in alerts]
    size = math.ceil(len(alerts) / threshold)
    batches = [list(alerts[i : i + size]) for i in range(0, len(alerts), size)]
    return [
        {"alerts": b, "label": f"batch {n + 1}/{len(batches)} ({len(b)} alerts)"}
        for n, b in enumerate(batches)
    ]


def find_due_alerts(context: Any, settings: TaskSettings | None = None) -> list[dict[str, Any]]:
    """List due alerts as map items: one alert per item, or batches when there are many."""
    from kpi_alerts.ledger.alert_changes import record_paused_slots
    from kpi_alerts.ledger.due_alerts import initialise_first_runs, list_due_alerts, park_inactive_alerts

    settings = settings or TaskSettings()
    logical_time = logical_time_of(context)
    with _db_connection() as conn:
        park_inactive_alerts(conn, logical_time=logical_time)
        paused = record_paused_slots(conn, logical_time=logical_time, dag_run_id=context["run_id"])
        if paused:
            log.info("%d paused alert(s) had a slot due: recorded as skipped (paused by an operator)", paused)
        initialised = initialise_first_runs(
            conn, logical_time=logical_time, misfire_window=settings.claim.misfire_window
        )
        due = list_due_alerts(conn, logical_time=logical_time, limit=100_000)
        ti = context.get("ti")
        if ti is not None and ti.try_number > 1:  # a later try: the run was cleared, or this task retried
            from kpi_alerts.ledger.due_alerts import list_unsent_in_run

            listed = {d.alert_id for d in due}
            unsent = [
                d
                for d in list_unsent_in_run(conn, dag_run_id=context["run_id"], limit=100_000)
                if d.alert_id not in listed
            ]
            if unsent:
                log.info(
                    "%d alert(s) of this run left a slot unsent: listed again to re-attempt it", len(unsent)
                )
            due += unsent
    log.info("%d alert(s) due at %s (%d newly initialised)", len(due), logical_time.isoformat(), initialised)
    alerts = [{"alert_id": d.alert_id, "alert_name": d.alert_name} for d in due]
    return map_items(alerts, settings.batch_threshold)


def process_alerts(
    item: dict[str, Any], context: Any, settings: TaskSettings | None = None
) -> list[dict[str, Any]]:
    """Process one map item; every alert is attempted, then the task fails if any alert failed."""
    import psycopg

    from kpi_alerts.delivery.mailers import OutboxMailer, SmtpMailer
    from kpi_alerts.hooks.cube import CubeHook
    from kpi_alerts.pipeline.alert_run import RunSettings, process_alert

    task_settings = settings or TaskSettings()
    ti = context["ti"]
    mailer = SmtpMailer() if task_settings.production else OutboxMailer(task_settings.outbox)
    run_settings = RunSettings(
        logical_time=logical_time_of(context),
        claimant=Claimant(
            dag_run_id=context["run_id"],
            task_instance=f"{ti.task_id}[{ti.map_index}]",
            try_number=ti.try_number,
        ),
        final_attempt=ti.try_number > ti.max_tries,
        sender=task_settings.sender,
        max_attachment_bytes=task_settings.max_attachment_bytes,
        claim=task_settings.claim,
        recipient_privacy=task_settings.recipient_privacy,
        message_id_domain=task_settings.message_id_domain,
    )
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    transient = False
    with CubeHook() as source, _db_connection() as conn:
        for alert in item["alerts"]:
            try:
                results.append(
                    process_alert(
                        conn, alert["alert_id"], source=source, mailer=mailer, settings=run_settings
                    ).as_dict()
                )
            except TransientAlertError as exc:
                transient = True
                failures.append(f"alert {alert['alert_id']}: {exc} (will retry)")
            except KpiAlertError as exc:
                failures.append(str(exc))
            except psycopg.Error:
                raise  # the database is in trouble: Airflow's next try resumes the claims (claims.py)
            except Exception as exc:  # one alert's bug never stops the others in this item
                log.exception("alert %s: unexpected error", alert["alert_id"])
                failures.append(
                    f"alert {alert['alert_id']}: internal error: {type(exc).__name__}: {exc}"[:500]
                )
    for result in results:
        log.info("alert %s: %s — %s", result["alert_id"], result["status"], result["detail"])
    from kpi_alerts.pipeline.task_outcome import judge_item

    verdict = judge_item(item["label"], len(item["alerts"]), results, failures, transient=transient)
    context["alert_label"] = verdict.label  # a batch's label says how its alerts ended
    if (
        verdict.state == "retry"
    ):  # Airflow retries the item; finished alerts are no longer due and are skipped
        log.error("%s", verdict.headline)
        raise TransientAlertError(verdict.headline)
    if verdict.state == "failed":
        from airflow.sdk.exceptions import AirflowFailException

        # Recorded in the ledger already; retrying cannot help, so fail now without retries. The reason comes
        # first, in one line; the failure carries no traceback of ours (it is expected and recorded).
        log.error("%s", verdict.headline)
        raise AirflowFailException(verdict.headline) from None
    if verdict.state == "skipped":
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(verdict.headline)
    log.info("%s", verdict.headline)
    return results


def summarize(context: Any, settings: TaskSettings | None = None) -> dict[str, Any]:
    """Count this run's ledger rows by status (reads the ledger, so failed tasks are counted too), prune
    finished ledger rows older than ``kpi_alerts_retention_days``, and fail — so the run shows red — when
    anything went wrong: a failed slot, a delivery never confirmed, a claim left unfinished, or a task
    of the run that did not succeed (the due listing itself, a map item that crashed)."""
    from kpi_alerts.ledger import queries
    from kpi_alerts.ledger.claims import UNFINISHED
    from kpi_alerts.ledger.retention import prune_results

    retention = (settings or TaskSettings()).retention
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
