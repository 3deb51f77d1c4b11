"""Telling people that an alert failed — once per failure streak, not once per tick.

Scheduled reports notify their ``owners`` (when set) on the first failed slot after a success.
Threshold alerts follow their state machine (``on_error``: entering ERROR notifies, repeats wait for
the re-arm interval), and notify owners, or the recipients when the alert has no owners. A notice
is best effort: the failure is already recorded, so a notice that cannot be sent is only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.ledger import queries
from kpi_alerts.reports.context import ReportContext

if TYPE_CHECKING:
    from kpi_alerts.ledger.claims import Claim
    from kpi_alerts.pipeline.inputs import Mailer, RunSettings

log = logging.getLogger(__name__)

#: What recipients who are not the alert's owners read about a failure; the detail is for owners and logs.
GENERIC_REASON = (
    "the data could not be retrieved or checked this time (the alert's operators have the details)"
)


def report_failure_needs_notice(conn: psycopg.Connection[Any], alert: AlertDefinition, claim: Claim) -> bool:
    """A scheduled report's owners hear of the first failure after a success (or ever)."""
    previous = conn.execute(
        queries.PREVIOUS_RESULT, {"cron_job_id": alert.cron_job_id, "slot": claim.slot}
    ).fetchone()
    return bool(alert.owners) and (previous is None or previous["status"] != "failed")


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
    """Send the failure notice.

    :param detailed: the reason goes to the alert's owners (and the ledger and logs), credentials
        redacted; recipients who are not owners (a threshold alert without owners) get
        :data:`GENERIC_REASON` — no Cube host, request id or query detail.
    """
    from kpi_alerts.delivery.email_message import build_message
    from kpi_alerts.pipeline.alert_run import slot_message_key
    from kpi_alerts.redaction import redact_url
    from kpi_alerts.reports.context import describe_period

    try:  # a failure path never raises: whatever is wrong with the alert, the notice is attempted
        ctx = ReportContext(
            alert_name=alert.alert_name,
            organization_id=alert.organization_id,
            timezone=alert.timezone,
            slot=claim.slot,
            period=describe_period(alert.cube_query),
            generated_at=settings.clock(),
            kind="alert_error",
            condition=redact_url(reason)[:500] if detailed else GENERIC_REASON,
            dashboard_url=alert.dashboard_url,
        )
        message = build_message(
            ctx=ctx,
            data=None,
            recipients=list(to),
            sender=settings.sender,
            attachment=None,
            max_attachment_bytes=settings.max_attachment_bytes,
            message_key=slot_message_key(alert, claim, ":error"),
            message_id_domain=settings.message_domain,
            recipient_privacy=settings.recipient_privacy,
        )
        mailer.deliver(message)
    except Exception as exc:  # the failure is recorded; the notice is a courtesy
        log.warning("Could not send the failure notice of alert %s: %s", alert.alert_id, exc)
