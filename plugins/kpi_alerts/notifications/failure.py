"""``FailureNotifier``: a failure notice by e-mail over ``smtp_default``, for any DAG's or task's callback.

    from kpi_alerts.notifications.failure import FailureNotifier

    BashOperator(..., on_failure_callback=FailureNotifier(to=["owner@example.com"]))
    DAG(..., on_failure_callback=FailureNotifier(to="{{ var.value.kpi_alerts_owners }}"))

The message is the one the pipeline sends an alert's owners when the alert fails
(:func:`kpi_alerts.delivery.error_notices.compose_failure_notice`), sent the same way
(:class:`kpi_alerts.hooks.smtp.SmtpMailer`: one SMTP transaction, failures classified). A notice is best
effort: one that cannot be sent is logged, never raised into the callback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from kpi_alerts import settings

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kpi_alerts.delivery.error_notices import FailureNotice

log = logging.getLogger(__name__)

SENDER = settings.SENDER.template
MAX_ATTACHMENT_MB = "{{ var.value.get('kpi_alerts_max_attachment_mb', '10') }}"


class FailureNotifier(BaseNotifier):
    """Send a failure notice to ``to`` when a DAG run or a task instance fails.

    :param to: recipients: a list, or one string of comma-separated addresses (templated).
    :param sender: the ``From`` address (templated; default: Variable ``kpi_alerts_sender``).
    :param reason: why it failed (templated; default: the task's exception, else the run's reason).
    :param smtp_conn_id: the SMTP connection.
    """

    template_fields: Sequence[str] = ("to", "sender", "reason")

    def __init__(
        self,
        *,
        to: str | Sequence[str],
        sender: str = SENDER,
        reason: str | None = None,
        smtp_conn_id: str = settings.SMTP_CONN_ID,
    ) -> None:
        super().__init__()
        self.to = to
        self.sender = sender
        self.reason = reason
        self.smtp_conn_id = smtp_conn_id

    def notify(self, context: Context) -> None:
        # Lazy: the message builder (Jinja templates) and the mailer load when a notice is sent, not
        # when the DAG file that names this notifier is parsed.
        from kpi_alerts.delivery.email_message import Envelope
        from kpi_alerts.delivery.error_notices import compose_failure_notice
        from kpi_alerts.hooks.smtp import SmtpMailer

        to = self.recipients()
        if not to:
            log.warning("Failure notice not sent: no recipients")
            return
        notice = notice_from_context(context, self.reason)
        try:
            message = compose_failure_notice(
                notice,
                to,
                envelope=Envelope(settings.SENDER.value(self.sender), max_attachment_bytes=0),
                now=datetime.now(UTC),
            )
            delivery = SmtpMailer(self.smtp_conn_id).deliver(message)
        except Exception as exc:  # the failure is Airflow's to record; the notice is a courtesy
            log.warning("Could not send the failure notice of %s: %s", notice.name, exc)
            return
        log.info("Failure notice of %s: %s", notice.name, delivery.detail)

    def recipients(self) -> list[str]:
        values = [self.to] if isinstance(self.to, str) else list(self.to)
        return [address.strip() for value in values for address in str(value).split(",") if address.strip()]


def notice_from_context(context: Any, reason: str | None = None) -> FailureNotice:
    """The notice of the failed task instance (task callbacks) or DAG run (DAG callbacks) in ``context``."""
    from kpi_alerts.delivery.error_notices import FailureNotice

    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "") or "")
    when = context.get("logical_date") or getattr(dag_run, "run_after", None) or datetime.now(UTC)
    when = datetime.fromisoformat(when.isoformat()).astimezone(UTC)
    task = getattr(ti, "task_id", None)
    if task is not None and getattr(ti, "map_index", -1) not in (None, -1):
        task = f"{task}[{ti.map_index}]"
    name = f"{dag_id} / {task}" if task else f"DAG {dag_id}"
    if reason is None:
        exception = context.get("exception")
        reason = str(exception) if exception else str(context.get("reason") or "failed")
    note = f"Airflow run {run_id}" + (f", task {task}, try {getattr(ti, 'try_number', '?')}" if task else "")
    return FailureNotice(
        name=name,
        reason=reason.splitlines()[0][:500] if reason else "failed",
        when=when,
        key=f"airflow:{dag_id}:{run_id}:{task or ''}:{getattr(ti, 'try_number', 0)}:failed",
        note=note,
    )
