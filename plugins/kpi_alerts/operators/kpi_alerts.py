"""The KPI alert operators: the due-alert listing, one alert (or batch) per task, the run's summary.

Usable in any DAG; the ``kpi_alerts`` DAG is::

    due = DueAlertsOperator(task_id="find_due_alerts")
    processed = KpiAlertOperator.partial(
        task_id="process_alert", map_index_template="{{ alert_label }}"
    ).expand(item=due.output)
    processed >> KpiAlertsSummaryOperator(task_id="summarize", trigger_rule="all_done")

Every setting is a templated argument whose default reads the package's Airflow Variable through
Jinja (``{{ var.value.get('kpi_alerts_sender', ...) }}``) when the task runs, never when the DAG is
parsed; the values a task ran with show in its "Rendered Template" view. Importing this module loads
only the Airflow Task SDK: the pipeline (psycopg, requests, the report libraries) is imported in
``execute``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from kpi_alerts.settings import (
    ALERTS_DB_CONN_ID,
    BATCH_SECONDS,
    BATCH_THREADS,
    BATCH_THRESHOLD,
    CUBE_CONN_ID,
    ENVIRONMENT,
    LEASE_MINUTES,
    MAX_ATTACHMENT_MB,
    MESSAGE_ID_DOMAIN,
    MISFIRE_MINUTES,
    OUTBOX_DIR,
    PARALLELISM,
    RECIPIENT_PRIVACY,
    RETENTION_DAYS,
    SECONDS_PER_ALERT,
    SENDER,
    SMTP_CONN_ID,
    Setting,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kpi_alerts.pipeline.inputs import TaskSettings


class _KpiAlertsOperator(BaseOperator):
    """What the package's operators share: their ``settings`` (rows of :data:`kpi_alerts.settings.SETTINGS`)
    are arguments and template fields whose default (``Setting.template``) reads the setting's Variable
    when the task runs, never when the DAG is parsed."""

    settings: ClassVar[tuple[Setting, ...]] = ()
    #: The ``*_conn_id`` arguments the operator takes (each defaults to its hook's ``default_conn_name``).
    connections: ClassVar[tuple[str, ...]] = ("alerts_db_conn_id",)

    def task_settings(self) -> TaskSettings:
        """The rendered template fields, typed (the pipeline's modules load here, not at DAG parsing)."""
        from kpi_alerts.pipeline.inputs import TaskSettings

        return TaskSettings.parse(
            {s.name: getattr(self, s.name) for s in self.settings},
            **{name: getattr(self, name) for name in self.connections},
        )


class DueAlertsOperator(_KpiAlertsOperator):
    """List the alerts due at the run's logical time as map items for :class:`KpiAlertOperator`.

    Before listing, it parks alerts that can no longer run, records paused alerts' due slots as
    skipped and gives new alerts their first slot. Returns (XCom) the map items: batches of about
    ``batch_seconds`` of work each, at least one per parallel slot and whole waves of ``parallelism``
    (:func:`kpi_alerts.pipeline.batch.plan_batches`); one alert per item when there are no more alerts
    than slots.

    :param misfire_minutes: how late a slot may still run (Variable ``kpi_alerts_misfire_minutes``).
    :param batch_threshold: up to this many due alerts, one item per alert whatever the plan (Variable
        ``kpi_alerts_batch_threshold``, default 0).
    :param batch_seconds: the target duration of one item (Variable ``kpi_alerts_batch_seconds``, 60).
    :param seconds_per_alert: the estimate batches are cut by (Variable ``kpi_alerts_seconds_per_alert``).
    :param parallelism: task instances running at once; 0 reads ``[core] parallelism`` (Variable
        ``kpi_alerts_parallelism``).
    """

    settings = (MISFIRE_MINUTES, BATCH_THRESHOLD, BATCH_SECONDS, SECONDS_PER_ALERT, PARALLELISM)
    template_fields: Sequence[str] = tuple(s.name for s in settings)
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        misfire_minutes: str | float = MISFIRE_MINUTES.template,
        batch_threshold: str | int = BATCH_THRESHOLD.template,
        batch_seconds: str | float = BATCH_SECONDS.template,
        seconds_per_alert: str | float = SECONDS_PER_ALERT.template,
        parallelism: str | int = PARALLELISM.template,
        alerts_db_conn_id: str = ALERTS_DB_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alerts_db_conn_id = alerts_db_conn_id
        self.misfire_minutes = misfire_minutes
        self.batch_threshold = batch_threshold
        self.batch_seconds = batch_seconds
        self.seconds_per_alert = seconds_per_alert
        self.parallelism = parallelism

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from kpi_alerts.operators.tasks import find_due_alerts

        return find_due_alerts(context, self.task_settings())


class KpiAlertOperator(_KpiAlertsOperator):
    """Process one alert, or one batch of alerts, at the run's logical time: claim its slot in the
    ledger → fetch the KPI from Cube → check the gating condition or threshold → render the
    attachment → send it → record the outcome. Every alert of the item is attempted; the task then
    fails if any failed (retried by Airflow when the failure is transient).

    :param item: a map item of :class:`DueAlertsOperator` (``{"alerts": [{"alert_id": ...}], "label": ...}``);
        ``{{ alert_label }}`` in ``map_index_template`` is its label.
    :param environment: ``production`` sends over ``smtp_default``; anything else writes ``.eml`` files
        to ``outbox_dir`` (Variable ``kpi_alerts_environment``).
    :param sender: the ``From`` address (Variable ``kpi_alerts_sender``).
    :param outbox_dir: the dry run's folder; empty: ``$AIRFLOW_HOME/kpi_alerts_outbox`` (Variable
        ``kpi_alerts_outbox_dir``).
    :param misfire_minutes: how late a slot may still run (Variable ``kpi_alerts_misfire_minutes``).
    :param lease_minutes: how long a claim is held (Variable ``kpi_alerts_lease_minutes``).
    :param max_attachment_mb: larger attachments are refused (Variable ``kpi_alerts_max_attachment_mb``).
    :param recipient_privacy: ``bcc`` (default): several recipients never see each other (``To:
        undisclosed-recipients:;``, all in Bcc); ``to``: all in ``To:`` (Variable
        ``kpi_alerts_recipient_privacy``).
    :param message_id_domain: the Message-IDs' domain; empty: the sender's (Variable
        ``kpi_alerts_message_id_domain``).
    :param batch_threads: alerts of a batch in flight at once (Variable ``kpi_alerts_batch_threads``, 4).
    """

    settings = (
        ENVIRONMENT,
        SENDER,
        OUTBOX_DIR,
        MISFIRE_MINUTES,
        LEASE_MINUTES,
        MAX_ATTACHMENT_MB,
        RECIPIENT_PRIVACY,
        MESSAGE_ID_DOMAIN,
        BATCH_THREADS,
    )
    connections = ("alerts_db_conn_id", "cube_conn_id", "smtp_conn_id")
    template_fields: Sequence[str] = tuple(s.name for s in settings)
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        item: dict[str, Any],
        environment: str = ENVIRONMENT.template,
        sender: str = SENDER.template,
        outbox_dir: str = OUTBOX_DIR.template,
        misfire_minutes: str | float = MISFIRE_MINUTES.template,
        lease_minutes: str | float = LEASE_MINUTES.template,
        max_attachment_mb: str | float = MAX_ATTACHMENT_MB.template,
        recipient_privacy: str = RECIPIENT_PRIVACY.template,
        message_id_domain: str = MESSAGE_ID_DOMAIN.template,
        batch_threads: str | int = BATCH_THREADS.template,
        alerts_db_conn_id: str = ALERTS_DB_CONN_ID,
        cube_conn_id: str = CUBE_CONN_ID,
        smtp_conn_id: str = SMTP_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alerts_db_conn_id = alerts_db_conn_id
        self.cube_conn_id = cube_conn_id
        self.smtp_conn_id = smtp_conn_id
        self.item = item
        self.recipient_privacy = recipient_privacy
        self.message_id_domain = message_id_domain
        self.batch_threads = batch_threads
        self.environment = environment
        self.sender = sender
        self.outbox_dir = outbox_dir
        self.misfire_minutes = misfire_minutes
        self.lease_minutes = lease_minutes
        self.max_attachment_mb = max_attachment_mb

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from kpi_alerts.operators.tasks import process_alerts

        context["alert_label"] = self.item.get("label", "")  # type: ignore[typeddict-unknown-key]
        return process_alerts(self.item, context, self.task_settings())


class KpiAlertsSummaryOperator(_KpiAlertsOperator):
    """Count the run's ledger rows by status, prune old ledger rows, and fail (so the run shows red)
    when a slot failed, a delivery was never confirmed, a claim was left unfinished or another task of
    the run did not succeed. Give it ``trigger_rule="all_done"`` so it runs whatever happened upstream.

    :param retention_days: finished ledger rows older than this are pruned (Variable
        ``kpi_alerts_retention_days``).
    :param misfire_minutes: named when alerts are left due (Variable ``kpi_alerts_misfire_minutes``).
    """

    settings = (RETENTION_DAYS, MISFIRE_MINUTES)
    template_fields: Sequence[str] = tuple(s.name for s in settings)
    ui_color = "#e9f5e9"

    def __init__(
        self,
        *,
        retention_days: str | float = RETENTION_DAYS.template,
        misfire_minutes: str | float = MISFIRE_MINUTES.template,
        alerts_db_conn_id: str = ALERTS_DB_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alerts_db_conn_id = alerts_db_conn_id
        self.retention_days = retention_days
        self.misfire_minutes = misfire_minutes

    def execute(self, context: Context) -> dict[str, Any]:
        from kpi_alerts.operators.tasks import summarize

        return summarize(context, self.task_settings())
