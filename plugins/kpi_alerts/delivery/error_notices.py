"""A failure notice — what failed, why and when — as an e-mail, for an alert or any Airflow task.

Which failures are told, and to whom, is the pipeline's (:mod:`kpi_alerts.pipeline.failure_notices`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from kpi_alerts.delivery.email_message import Envelope, build_message
from kpi_alerts.reports.context import ReportContext


@dataclass(frozen=True)
class FailureNotice:
    """What failed, why and when: the content of a failure notice, for an alert or any Airflow task.

    :param name: what failed, as its owners know it (user text: escaped wherever it is rendered).
    :param reason: why, in one line.
    :param when: the slot (or the run's logical time) that failed.
    :param key: what makes the notice unique (its Message-ID): a notice sent twice is one message.
    :param note: context shown above the reason (e.g. the Airflow task instance); user text.
    :param organization_id: the alert's organization; 0 for notices about Airflow tasks.
    """

    name: str
    reason: str
    when: datetime
    key: str
    timezone: str = "UTC"
    period: str = "all time"
    note: str | None = None
    organization_id: int = 0
    dashboard_url: str | None = None


def compose_failure_notice(
    notice: FailureNotice,
    to: Sequence[str],
    *,
    envelope: Envelope,
    now: datetime,
) -> EmailMessage:
    """The notice as an e-mail (the ``alert_error`` message: ``[KPI alert] Failed: <name> - <date>``).

    Shared by the pipeline's notices to an alert's owners and by
    :class:`~kpi_alerts.notifications.failure.FailureNotifier` (any DAG's or task's failure callback).
    """
    ctx = ReportContext(
        alert_name=notice.name,
        organization_id=notice.organization_id,
        timezone=notice.timezone,
        slot=notice.when,
        period=notice.period,
        generated_at=now,
        kind="alert_error",
        condition=notice.reason,
        dashboard_url=notice.dashboard_url,
        message=notice.note,
    )
    return build_message(
        ctx=ctx,
        data=None,
        recipients=list(to),
        envelope=envelope,
        attachment=None,
        message_key=notice.key,
    )
