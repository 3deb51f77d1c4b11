"""Telling people that an alert failed — once per failure streak, not once per tick.

Scheduled reports notify their ``owners`` (when set) on the first failed slot after a success.
Threshold alerts follow their state machine (``on_error``: entering ERROR notifies, repeats wait for
the re-arm interval), and notify owners, or the recipients when the alert has no owners. A notice
is best effort: the failure is already recorded, so a notice that cannot be sent is only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.delivery.email_message import build_message
from kpi_alerts.ledger.claims import slot_message_key
from kpi_alerts.redaction import redact_url
from kpi_alerts.reports.context import ReportContext, describe_period
from kpi_alerts.vocabulary import LedgerStatus

if TYPE_CHECKING:
    from kpi_alerts.delivery.mailers import Mailer
    from kpi_alerts.ledger.claims import Claim
    from kpi_alerts.pipeline.inputs import RunSettings

log = logging.getLogger(__name__)

#: What recipients who are not the alert's owners read about a failure; the detail is for owners and logs.
GENERIC_REASON = (
    "the data could not be retrieved or checked this time (the alert's operators have the details)"
)


def report_failure_needs_notice(alert: AlertDefinition, previous: LedgerStatus | None) -> bool:
    """A scheduled report's owners hear of the first failure after a success (or ever): ``previous`` is
    the status of the slot before (:func:`kpi_alerts.ledger.results.previous_status`)."""
    return bool(alert.owners) and previous != LedgerStatus.FAILED


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

    @classmethod
    def for_alert(cls, alert: AlertDefinition, claim: Claim, reason: str) -> FailureNotice:
        return cls(
            name=alert.alert_name,
            reason=reason,
            when=claim.slot,
            key=slot_message_key(alert, claim, ":error"),
            timezone=alert.timezone,
            period=describe_period(alert.cube_query),
            organization_id=alert.organization_id,
            dashboard_url=alert.dashboard_url,
        )


def compose_failure_notice(
    notice: FailureNotice,
    to: Sequence[str],
    *,
    sender: str,
    now: datetime,
    max_attachment_bytes: int,
    message_id_domain: str = "kpi-alerts.local",
    recipient_privacy: str = "bcc",
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
        sender=sender,
        attachment=None,
        max_attachment_bytes=max_attachment_bytes,
        message_key=notice.key,
        message_id_domain=message_id_domain,
        recipient_privacy=recipient_privacy,
    )


def send_error_notice(
    alert: AlertDefinition,
    claim: Claim,
    reason: str,
    to: Sequence[str],
    *,
    mailer: Mailer,
    settings: RunSettings,
    detailed: bool = True,
) -> None:
    """Tell ``to`` that ``alert`` failed for ``claim``'s slot; best effort, never raises.

    :param detailed: the reason goes to the alert's owners (and the ledger and logs), credentials
        redacted; recipients who are not owners (a threshold alert without owners) get
        :data:`GENERIC_REASON` — no Cube host, request id or query detail.
    """
    try:  # a failure path never raises: whatever is wrong with the alert, the notice is attempted
        shown = redact_url(reason)[:500] if detailed else GENERIC_REASON
        message = compose_failure_notice(
            FailureNotice.for_alert(alert, claim, shown),
            to,
            sender=settings.sender,
            now=settings.clock(),
            max_attachment_bytes=settings.max_attachment_bytes,
            message_id_domain=settings.message_domain,
            recipient_privacy=settings.recipient_privacy,
        )
        mailer.deliver(message)
    except Exception as exc:  # the failure is recorded; the notice is a courtesy
        log.warning("Could not send the failure notice of alert %s: %s", alert.alert_id, exc)
