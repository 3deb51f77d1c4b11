"""The Airflow shell: what the ``kpi_alerts`` DAG's tasks do, given their Airflow context and settings.

The operators (:mod:`kpi_alerts.operators.kpi_alerts`) call these functions from ``execute`` with a
:class:`~kpi_alerts.pipeline.inputs.TaskSettings` built from their rendered template fields, whose
defaults read the package's Airflow Variables at run time (each one's name, default and meaning:
:data:`kpi_alerts.settings.SETTINGS`; README "Settings").
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from kpi_alerts import metrics
from kpi_alerts.delivery.mailers import OutboxMailer, SessionMailer
from kpi_alerts.errors import TransientAlertError
from kpi_alerts.hooks.alerts_db import AlertsDbHook
from kpi_alerts.hooks.assets import TaskAssetEvents
from kpi_alerts.hooks.cube import CubeHook
from kpi_alerts.hooks.metrics import airflow_stats_sink
from kpi_alerts.hooks.smtp import smtp_session
from kpi_alerts.ledger.alert_changes import record_paused_slots
from kpi_alerts.ledger.claim_terms import UNFINISHED, Claimant, ClaimSettings
from kpi_alerts.ledger.database import describe_database_error
from kpi_alerts.ledger.due_alerts import (
    close_abandoned_waits,
    initialise_first_runs,
    list_due_alerts,
    list_unsent_in_run,
    park_inactive_alerts,
)
from kpi_alerts.ledger.results import run_lateness, run_status_counts, still_due_alerts
from kpi_alerts.ledger.retention import prune_results
from kpi_alerts.pipeline.batch import plan_batches, run_batch
from kpi_alerts.pipeline.inputs import RunSettings, TaskSettings
from kpi_alerts.pipeline.task_outcome import judge_item
from kpi_alerts.settings import TICK_MINUTES

if TYPE_CHECKING:
    from kpi_alerts.pipeline.batch import BatchPlan

log = logging.getLogger(__name__)

# Under Airflow, the ledger's outcome counters go to Airflow's metrics client.
metrics.set_sink(airflow_stats_sink)

TICK = timedelta(minutes=TICK_MINUTES)
MAX_MAP_LENGTH = 1024  # Airflow's [core] max_map_length default; mapped lists must stay below it


def _db_connection(conn_id: str) -> Any:
    return AlertsDbHook(postgres_conn_id=conn_id).get_conn()


@contextlib.contextmanager
def readable_database_errors() -> Iterator[None]:
    """A database failure ends the task with one readable line (retried by Airflow like any transient
    failure), not psycopg's traceback: a read-only database says so and what to do."""
    try:
        yield
    except psycopg.Error as exc:
        reason = describe_database_error(exc)
        log.error("%s", reason)
        raise TransientAlertError(reason) from None


def logical_time_of(context: Any) -> datetime:
    value = context.get("logical_date") or context["dag_run"].run_after
    return datetime.fromisoformat(value.isoformat()).astimezone(UTC)


def is_backfill(context: Any) -> bool:
    """The run was made by ``airflow backfill create`` (Airflow 3: ``dag_run.run_type`` is ``backfill``, also
    for an existing run a backfill reprocesses)."""
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return getattr(run_type, "value", run_type) == "backfill"


def claim_settings_of(context: Any, settings: TaskSettings) -> ClaimSettings:
    """The run's claim settings: a backfill run measures lateness from the wall clock
    (:meth:`~kpi_alerts.ledger.claim_terms.ClaimSettings.oldest_sendable_slot`)."""
    return replace(settings.claim, backfill=is_backfill(context))


def map_items(
    alerts: Sequence[dict[str, Any]], plan: BatchPlan, *, single_up_to: int = 0
) -> list[dict[str, Any]]:
    """The due alerts as map items: one alert per item when the plan says so (no more alerts than
    parallel slots) or up to ``single_up_to`` alerts, else the plan's batches, labelled
    ``batch 3/40: alerts 1201-1240`` (positions in the due list)."""
    if len(alerts) <= single_up_to or plan.batches == len(alerts):
        return [{"alerts": [a], "label": f"alert {a['alert_id']}: {a['alert_name']}"[:200]} for a in alerts]
    return [
        {"alerts": list(alerts[start:end]), "label": plan.label(n)}
        for n, (start, end) in enumerate(plan.ranges)
    ]


def plan_for(due: int, settings: TaskSettings) -> BatchPlan:
    return plan_batches(
        due,
        parallelism=settings.parallelism or _configured_parallelism(),
        target_seconds=settings.batch_seconds,
        seconds_per_alert=settings.seconds_per_alert,
        max_items=MAX_MAP_LENGTH - 1,
    )


def _configured_parallelism() -> int:
    return max(1, conf.getint("core", "parallelism", fallback=32))


def _say_if_overloaded(plan: BatchPlan, context: Any, settings: TaskSettings) -> None:
    """Overload is never silent: when the tick is estimated to outlast the run's timeout, say what happens
    (the run is stopped; what it did not reach stays due and later ticks continue it while its slot is
    inside the misfire window; older slots are recorded ``missed``)."""
    timeout = getattr(context.get("dag"), "dagrun_timeout", None)
    if timeout is None:
        return
    claim = settings.claim
    if TICK + timeout + claim.lease >= claim.misfire_window:
        log.warning(
            "dagrun_timeout (%s) + lease (%s) + one tick (%s) reach the misfire window (%s): claims held by a "
            "run stopped at its timeout may expire only after their slots' window closed (recorded missed)",
            timeout,
            claim.lease,
            TICK,
            claim.misfire_window,
        )
    if plan.estimated_seconds <= timeout.total_seconds():
        return
    log.warning(
        "%d due alerts need an estimated %.0f s, more than the run's timeout (%s): the rest stays due and "
        "later ticks continue it within the %s misfire window; raise kpi_alerts_parallelism with [core] "
        "parallelism, or add workers",
        plan.due,
        plan.estimated_seconds,
        timeout,
        settings.claim.misfire_window,
    )


@readable_database_errors()
def find_due_alerts(context: Any, settings: TaskSettings | None = None) -> list[dict[str, Any]]:
    """List due alerts as map items: batches sized from a target duration and the parallelism (one alert
    per item when there are few)."""
    settings = settings or TaskSettings()
    logical_time = logical_time_of(context)
    with _db_connection(settings.alerts_db_conn_id) as conn:
        park_inactive_alerts(conn, logical_time=logical_time)
        paused = record_paused_slots(conn, logical_time=logical_time, dag_run_id=context["run_id"])
        if paused:
            log.info("%d paused alert(s) had a slot due: recorded as skipped (paused by an operator)", paused)
        abandoned = close_abandoned_waits(conn, now=datetime.now(UTC))
        if abandoned:
            log.info("%d slot(s) waiting for fresh data whose alert moved on: recorded as skipped", abandoned)
        claim = claim_settings_of(context, settings)
        oldest_slot = claim.oldest_sendable_slot(logical_time=logical_time, now=datetime.now(UTC))
        initialised = initialise_first_runs(conn, logical_time=logical_time, oldest_slot=oldest_slot)
        due = list_due_alerts(conn, logical_time=logical_time, limit=100_000)
        ti = context.get("ti")
        if ti is not None and ti.try_number > 1:  # a later try: the run was cleared, or this task retried
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
    if claim.backfill:
        log.info(
            "A backfill run: slots older than %s (the misfire window, from the wall clock) are recorded missed, "
            "not sent",
            oldest_slot.isoformat(),
        )
    alerts = [{"alert_id": d.alert_id, "alert_name": d.alert_name} for d in due]
    plan = plan_for(len(alerts), settings)
    _say_if_overloaded(plan, context, settings)
    items = map_items(alerts, plan, single_up_to=settings.batch_threshold)
    if len(items) < len(alerts):
        sizes = [len(item["alerts"]) for item in items]
        log.info(
            "%d batch(es) of %d-%d alerts; estimated %.0f s for the tick",
            len(items),
            min(sizes),
            max(sizes),
            plan.estimated_seconds,
        )
    return items


@readable_database_errors()
def process_alerts(
    item: dict[str, Any], context: Any, settings: TaskSettings | None = None
) -> list[dict[str, Any]]:
    """Process one map item; every alert is attempted, then the task fails if any alert failed."""
    task_settings = settings or TaskSettings()
    ti = context["ti"]
    run_settings = RunSettings(
        logical_time=logical_time_of(context),
        claimant=Claimant(
            dag_run_id=context["run_id"],
            task_instance=f"{ti.task_id}[{ti.map_index}]",
            try_number=ti.try_number,
        ),
        final_attempt=ti.try_number > ti.max_tries,
        envelope=task_settings.envelope,
        claim=claim_settings_of(context, task_settings),
        assets=TaskAssetEvents(),
    )
    with CubeHook(task_settings.cube_conn_id) as source:
        batch = run_batch(
            [a["alert_id"] for a in item["alerts"]],
            connect=functools.partial(_db_connection, task_settings.alerts_db_conn_id),
            open_mailer=lambda: (
                SessionMailer(functools.partial(smtp_session, task_settings.smtp_conn_id))
                if task_settings.production
                else OutboxMailer(task_settings.outbox)
            ),
            source=source,
            settings=run_settings,
            threads=task_settings.batch_threads,
        )
    results = [run.as_dict() for run in batch.runs]  # each alert's line is logged as it ends (alert_run)
    if len(item["alerts"]) > 1:
        log.info(
            "%d alert(s) in %.1f s: %d Cube request(s) (%d more answered from the batch), %d SMTP session(s), "
            "%d at a time",
            len(item["alerts"]),
            batch.seconds,
            batch.cube_requests,
            batch.cube_shared,
            batch.smtp_sessions,
            batch.threads,
        )

    verdict = judge_item(
        item["label"], len(item["alerts"]), results, batch.failures, transient=batch.transient
    )
    context["alert_label"] = verdict.label  # a batch's label says how its alerts ended
    if (
        verdict.state == "retry"
    ):  # Airflow retries the item; finished alerts are no longer due and are skipped
        log.error("%s", verdict.headline)
        raise TransientAlertError(verdict.headline)
    if verdict.state == "failed":
        # Recorded in the ledger already; retrying cannot help, so fail now without retries. The reason comes
        # first, in one line; the failure carries no traceback of ours (it is expected and recorded).
        log.error("%s", verdict.headline)
        raise AirflowFailException(verdict.headline) from None
    if verdict.state == "skipped":
        raise AirflowSkipException(verdict.headline)
    log.info("%s", verdict.headline)
    return results


@readable_database_errors()
def summarize(context: Any, settings: TaskSettings | None = None) -> dict[str, Any]:
    """Count this run's ledger rows by status (reads the ledger, so failed tasks are counted too), prune
    finished ledger rows older than ``kpi_alerts_retention_days``, and fail — so the run shows red — when
    anything went wrong: a failed slot, a delivery never confirmed, a claim left unfinished, or a task
    of the run that did not succeed (the due listing itself, a map item that crashed)."""
    settings = settings or TaskSettings()
    with _db_connection(settings.alerts_db_conn_id) as conn:
        counts = run_status_counts(conn, context["run_id"])
        lateness = run_lateness(conn, context["run_id"])
        still_due = still_due_alerts(conn, logical_time_of(context))
        pruned = prune_results(conn, retention=settings.retention, keep_dag_run_id=context["run_id"])
    if pruned:
        log.info("Pruned %d ledger row(s) older than %s", pruned, settings.retention)
    log.info("KPI alerts run %s: %s", context["run_id"], dict(counts) or "nothing was due")
    if lateness and lateness["latest"] is not None:
        log.info(
            "Sends after their slot: latest %s, median %s",
            _duration(lateness["latest"]),
            _duration(lateness["median"]),
        )
    if still_due and still_due["n"]:
        misfire = (settings or TaskSettings()).claim.misfire_window
        log.warning(
            "%d alert(s) are still due (oldest slot %s): this run did not reach them; later ticks continue "
            "them until %s (the %s misfire window), then record them missed",
            still_due["n"],
            still_due["oldest_slot"].isoformat(),
            (still_due["oldest_slot"] + misfire).isoformat(),
            misfire,
        )
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
        # The other alerts were processed; failing here makes the run itself show red in the UI.
        raise AirflowFailException("; ".join(problems))
    return dict(counts)


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    return f"{seconds:.0f} s" if abs(seconds) < 120 else f"{seconds / 60:.1f} min"


def _tasks_not_succeeded(context: Any) -> list[str]:
    """This run's other task instances that failed (or never ran because an upstream one failed)."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return sorted(
        key
        for key, state in states.items()
        if key != ti.task_id and str(state) in {"failed", "upstream_failed"}
    )
