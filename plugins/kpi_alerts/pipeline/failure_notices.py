"""Telling people that an alert failed — once per failure streak, not once per tick.

Scheduled reports notify their ``owners`` (when set) on the first failed slot after a success.
Threshold alerts follow their state machine (``on_error``: entering ERROR notifies, repeats wait for
the re-arm interval), and notify owners, or the recipients when the alert has no owners. A notice
is best effort: the failure is already recorded, so a notice that cannot be sent is only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.delivery.email_message import slot_message_key
from kpi_alerts.delivery.error_notices import FailureNotice, compose_failure_notice
from kpi_alerts.delivery.mailers import Mailer
from kpi_alerts.ledger.claim_terms import Claim
from kpi_alerts.pipeline.inputs import RunSettings
from kpi_alerts.redaction import redact_url
from kpi_alerts.reports.context import describe_period
from kpi_alerts.vocabulary import LedgerStatus

log = logging.getLogger(__name__)

#: What recipients who are not the alert's owners read about a failure; the detail is for owners and logs.
GENERIC_REASON = (
    "the data could not be retrieved or checked this time (the alert's operators have the details)"
)


def report_failure_needs_notice(alert: AlertDefinition, previous: LedgerStatus | None) -> bool:
    """A scheduled report's owners hear of the first failure after a success (or ever): ``previous`` is
    the status of the slot before (:func:`kpi_alerts.ledger.results.previous_status`)."""
    return bool(alert.owners) and previous != LedgerStatus.FAILED


def notice_for_alert(alert: AlertDefinition, claim: Claim, reason: str) -> FailureNotice:
    return FailureNotice(
        name=alert.alert_name,
        reason=reason,
        when=claim.slot,
        key=slot_message_key(claim.cron_job_id, claim.slot, claim.message_token, ":error"),
        timezone=alert.timezone,
        period=describe_period(alert.cube_query),
        organization_id=alert.organization_id,
        dashboard_url=alert.dashboard_url,
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
            notice_for_alert(alert, claim, shown),
            to,
            envelope=settings.envelope,
            now=settings.clock(),
        )
        mailer.deliver(message)
    except Exception as exc:  # the failure is recorded; the notice is a courtesy
        log.warning("Could not send the failure notice of alert %s: %s", alert.alert_id, exc)
