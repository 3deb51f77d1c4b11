"""One alert, one slot: claim → fetch → check → render → send → record.

Plain Python: the Cube.js source and the mailer are passed in (the DAG passes ``CubeHook`` and an
``SmtpHook``-backed mailer; tests may pass the same real ones). Every way this can end is written to
the ledger; the exception raised afterwards is what makes the Airflow task show failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.delivery.email_message import build_message, slot_message_key
from kpi_alerts.delivery.recipients import check_recipient_domains, outside_domains
from kpi_alerts.errors import (
    AlertValidationError,
    DeliveryUnknown,
    KpiAlertError,
    PermanentAlertError,
    RelayRefused,
    TransientAlertError,
)
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.alert_store import load_alert
from kpi_alerts.ledger.claim_terms import Claim, LostClaim, NotClaimed, claim_settings_for
from kpi_alerts.ledger.claims import claim_slot
from kpi_alerts.ledger.due_alerts import park_unusable_alert
from kpi_alerts.ledger.outcomes import (
    GroupStateUpdate,
    Outcome,
    ThresholdStateUpdate,
    cancel_sending,
    delivered_recipients,
    finish_claim,
    record_partial_delivery,
    release_for_retry,
    start_sending,
    wait_for_fresh_data,
)
from kpi_alerts.ledger.reattempts import may_retry_at_a_later_tick
from kpi_alerts.ledger.results import cron_job_of_alert, previous_status
from kpi_alerts.pipeline.evaluation import LedgerFacts, evaluate
from kpi_alerts.pipeline.failure_notices import report_failure_needs_notice, send_error_notice
from kpi_alerts.pipeline.inputs import Delivery, KpiSource, Mailer, RunSettings
from kpi_alerts.pipeline.kpi_source import CachingKpiSource
from kpi_alerts.pipeline.threshold_check import threshold_transition
from kpi_alerts.redaction import redact_url
from kpi_alerts.reports import build_report, render_attachment
from kpi_alerts.reports.context import ExpectedRange, MessageKind, ReportContext, describe_period
from kpi_alerts.reports.query_plan import expected_report_queries, period_pair

if TYPE_CHECKING:
    from kpi_alerts.conditions.gating_evaluation import GateDecision
    from kpi_alerts.reports import Attachment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertRun:
    """What happened, for the task's return value (XCom) and the summary task."""

    alert_id: int
    status: str
    detail: str = ""
    slot: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "status": self.status, "detail": self.detail, "slot": self.slot}


class AlertFailed(KpiAlertError):
    """Raised after a failure was recorded, so the task instance shows failed with the reason."""


def process_alert(
    conn: psycopg.Connection[Any],
    alert_id: int,
    *,
    source: KpiSource,
    mailer: Mailer,
    settings: RunSettings,
) -> AlertRun:
    """Load, claim, run and record the alert's due slot."""
    try:
        alert = load_alert(conn, alert_id)
    except Exception as exc:  # a row no code expected: record it and park it, the other alerts go on
        log.exception("Alert %s cannot be read", alert_id)
        return _unusable(conn, alert_id, f"{type(exc).__name__}: {exc}", settings)
    if alert is None:
        return AlertRun(alert_id, "skipped", "alert no longer exists")
    return claim_and_run(conn, alert, source=source, mailer=mailer, settings=settings)


def claim_and_run(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    *,
    source: KpiSource,
    mailer: Mailer,
    settings: RunSettings,
) -> AlertRun:
    """Claim the loaded alert's due slot, then run and record it (:func:`run_claim`)."""
    alert_id = alert.alert_id
    if not alert.is_active:
        return AlertRun(alert_id, "skipped", "alert is inactive")
    claim = claim_slot(
        conn,
        alert,
        logical_time=settings.logical_time,
        now=settings.clock(),
        claimant=settings.claimant,
        settings=settings.claim,
    )
    if isinstance(claim, NotClaimed):
        log.info("Alert %s not claimed: %s", alert_id, claim.reason)
        return AlertRun(alert_id, "skipped", claim.reason)
    return run_claim(conn, alert, claim, source=source, mailer=mailer, settings=settings)


def first_queries(alert: AlertDefinition, now: datetime) -> list[Mapping[str, Any]]:
    """The Cube queries a run of ``alert`` asks first, known before any answer (what
    :class:`ClaimedSlot` asks): a report's period pair, or its query and its previous period; a threshold
    alert's query; none for a slot held back by a snooze or quiet hours. A batch asks them for many
    alerts in one request."""
    if alert.next_run_at is not None and alert.held_slot(alert.next_run_at) is not None:
        return []  # its slot is held back (snooze, quiet hours): it asks Cube nothing
    query = alert.cube_query
    if alert.alert_type != "schedule":
        return [query]
    pair = period_pair(query, alert.timezone, now)
    return [pair.query] if pair is not None else [query, *expected_report_queries(query, alert.timezone, now)]


def run_claim(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    claim: Claim,
    *,
    source: KpiSource,
    mailer: Mailer,
    settings: RunSettings,
) -> AlertRun:
    """Fetch → check → render → send → record a claimed slot; every ending is written to the ledger."""
    alert_id = alert.alert_id
    try:
        alert.validate()
        run = ClaimedSlot(conn, alert, claim, source, mailer, settings).execute()
        # One line per alert, written when it ends (a peak tick logs ten thousand of them).
        log.info(
            "Alert %s slot %s (%s): %s — %s",
            alert_id,
            claim.slot.isoformat(),
            _attempt(claim),
            run.status,
            run.detail,
        )
        return run
    except LostClaim as exc:  # another claimant took the slot over: it finishes it, we stop quietly
        log.warning("Alert %s: %s", alert_id, exc)
        return AlertRun(alert_id, "skipped", str(exc), claim.slot.isoformat())
    except TransientAlertError as exc:
        # The next Airflow try resumes the slot; after the last one, a later tick (inside the misfire window).
        claim_settings = claim_settings_for(alert, settings.claim)  # a waiting report's window is longer
        later_tick = settings.final_attempt and may_retry_at_a_later_tick(
            claim, logical_time=settings.logical_time, now=settings.clock(), settings=claim_settings
        )
        if not settings.final_attempt or later_tick:
            release_for_retry(conn, claim, now=settings.clock(), error=str(exc))
            if later_tick:
                until = (claim.slot + claim_settings.misfire_window).isoformat()
                kind = RelayRefused if isinstance(exc, RelayRefused) else TransientAlertError
                raise kind(
                    f"{exc} (attempt {claim.attempts}; later ticks retry the slot until {until})"
                ) from exc
            raise
        reason = f"{exc} (gave up after {claim.attempts} attempt(s))"
    except DeliveryUnknown as exc:
        _fail(conn, alert, claim, str(exc), mailer=mailer, settings=settings, status="delivery_unknown")
        raise AlertFailed(f"alert {alert.alert_id} ({alert.alert_name}): {redact_url(str(exc))}") from None
    except KpiAlertError as exc:
        reason = str(exc)
    except Exception as exc:
        log.exception("Unexpected error in alert %s", alert_id)
        reason = f"internal error: {type(exc).__name__}: {exc}"
    _fail(conn, alert, claim, reason, mailer=mailer, settings=settings)
    log.warning(
        "Alert %s slot %s (%s): failed — %s", alert_id, claim.slot.isoformat(), _attempt(claim), reason
    )
    raise AlertFailed(f"alert {alert.alert_id} ({alert.alert_name}) failed: {redact_url(reason)}")


def _attempt(claim: Claim) -> str:
    return f"attempt {claim.attempts}" + (", re-attempting a failed slot" if claim.reattempt else "")


def _unusable(conn: psycopg.Connection[Any], alert_id: int, reason: str, settings: RunSettings) -> AlertRun:
    cron_job_id = cron_job_of_alert(conn, alert_id)
    if cron_job_id is None:
        return AlertRun(alert_id, "skipped", "alert no longer exists")
    park_unusable_alert(
        conn,
        alert_id=alert_id,
        cron_job_id=cron_job_id,
        reason=reason,
        logical_time=settings.logical_time,
        now=settings.clock(),
        dag_run_id=settings.claimant.dag_run_id,
    )
    raise AlertFailed(f"alert {alert_id} could not be read (parked for a day): {reason[:300]}")


def _fail(
    conn: psycopg.Connection[Any],
    alert: AlertDefinition,
    claim: Claim,
    reason: str,
    *,
    mailer: Mailer,
    settings: RunSettings,
    status: str = "failed",
) -> None:
    """Record the slot as failed (or ``delivery_unknown``) and a threshold alert's ERROR state, then
    notify if due."""
    notify: tuple[str, ...] = ()
    state = None
    if alert.threshold is not None:
        transition = threshold_transition(alert, "error", claim.slot)
        if transition.notify == "error":
            notify = alert.owners or alert.recipients
        clock = transition.last_notified_at if notify else alert.threshold.last_notified_at
        state = ThresholdStateUpdate(str(transition.new_state), None, clock, transition.streak)
    elif not claim.reattempt and report_failure_needs_notice(
        alert, previous_status(conn, alert.cron_job_id, claim.slot)
    ):
        notify = alert.owners  # a re-attempt failing again tells no one twice: the slot's first failure did
    finish_claim(
        conn, alert, claim, Outcome(status, error=reason), now=settings.clock(), threshold_state=state
    )
    outside = outside_domains(notify, alert.recipient_domains)
    notify = tuple(a for a in notify if a not in outside)  # the allow-list holds for notices too
    if notify:
        detailed = set(notify) <= set(alert.owners)  # recipients who are not owners get a generic notice
        send_error_notice(alert, claim, reason, notify, mailer=mailer, settings=settings, detailed=detailed)


class ClaimedSlot:
    """A claimed slot's run: the decision (:func:`~kpi_alerts.pipeline.evaluation.evaluate`), then the
    ledger writes and the message it calls for."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        alert: AlertDefinition,
        claim: Claim,
        source: KpiSource,
        mailer: Mailer,
        settings: RunSettings,
    ) -> None:
        self.conn, self.alert, self.claim = conn, alert, claim
        self.mailer, self.settings = mailer, settings
        cache = source if isinstance(source, CachingKpiSource) else CachingKpiSource(source)
        self.queries = cache.for_run()

    def fetch(self, query: Mapping[str, Any] | None = None) -> KpiData:
        query = query if query is not None else self.alert.cube_query
        context = {"organization_id": self.alert.organization_id}
        return self.queries.load(query, security_context=context, timezone=self.alert.timezone)

    def execute(self) -> AlertRun:
        held = self.alert.held_slot(self.claim.slot)
        if held is not None:  # a snooze or quiet hours set after the slot was planned
            details: dict[str, Any] = {"reason": held.reason}
            if held.next_run_at is not None:
                details["moved_to"] = held.next_run_at.isoformat()
            if self.alert.snoozed_until is not None and held.reason == "snoozed":
                details["until"] = self.alert.snoozed_until.isoformat()
            return self._finish(
                Outcome("skipped", details=details, error=held.detail),
                detail=held.detail,
                next_run_at=held.next_run_at,
            )
        now = self.settings.clock()
        decided = evaluate(
            self.alert,
            self.claim.slot,
            queries=self.queries,
            now=now,
            logical_time=self.settings.logical_time,
            facts=LedgerFacts(self.conn),
            assets=self.settings.assets,
        )
        if (
            decided.wait is not None
        ):  # nothing sent: the slot is given back as waiting, the next tick looks again
            wait_for_fresh_data(
                self.conn, self.claim, now=now, reason=decided.detail, details=decided.details
            )
            return AlertRun(self.alert.alert_id, "waiting", decided.detail, self.claim.slot.isoformat())
        if decided.sends:
            assert decided.data is not None
            return self._send(
                decided.kind,
                decided.data,
                details=decided.details,
                threshold_state=decided.threshold_state,
                group_states=decided.group_states,
                **decided.message.as_kwargs(),
            )
        outcome = Outcome(
            decided.status,
            value=decided.message.value,
            previous_value=decided.message.previous,
            details=decided.details,
            error=decided.detail if decided.status == "skipped" else None,
        )
        return self._finish(
            outcome,
            detail=decided.detail,
            threshold_state=decided.threshold_state,
            group_states=decided.group_states,
        )

    # --- sending and recording ------------------------------------------------------------------

    def _send(
        self,
        kind: MessageKind,
        data: KpiData,
        *,
        details: dict[str, Any],
        value: Any = None,
        previous: Any = None,
        condition: str | None = None,
        threshold_value: Decimal | None = None,
        decision: str | None = None,
        expected: ExpectedRange | None = None,
        threshold_state: ThresholdStateUpdate | None = None,
        gate: GateDecision | None = None,
        group_states: Sequence[GroupStateUpdate] = (),
        stale: tuple[str, str] | None = None,
    ) -> AlertRun:
        # An alert made by plain SQL, or before its organization's allow-list was set: nothing leaves for
        # a domain outside the list (the slot fails, naming them), before anything is composed.
        check_recipient_domains(
            self.alert.recipients, self.alert.recipient_domains, self.alert.organization_id
        )
        # Recipients an earlier attempt of the slot reached (a partial delivery) never get it twice.
        already = delivered_recipients(self.conn, self.claim)
        pending = _without(self.alert.recipients, already)
        if not pending:
            return self._finish(
                Outcome("sent", value=value, previous_value=previous, details=details,
                        recipients=self.alert.recipients),
                detail=f"{kind} reached every recipient in an earlier attempt",
                threshold_state=threshold_state,
            )  # fmt: skip
        message, attachment = compose_message(
            self.alert,
            data,
            kind=kind,
            slot=self.claim.slot,
            settings=self.settings,
            recipients=pending,
            message_key=slot_message_key(self.claim.cron_job_id, self.claim.slot, self.claim.message_token),
            value=value,
            previous=previous,
            condition=condition,
            threshold_value=threshold_value,
            decision=decision,
            expected=expected,
            fetch=self.fetch,
            gate=gate,
            stale=stale,
        )
        delivery = self._deliver(message, pending, already)
        attached = attachment is not None and attachment.size <= self.settings.envelope.max_attachment_bytes
        if already:
            details = {**details, "delivered_to": [*already, *pending]}
        outcome = Outcome(
            "sent",
            value=value,
            previous_value=previous,
            details={**details, "delivery": delivery.detail},
            recipients=self.alert.recipients,
            attachment=attachment.filename if attached and attachment else None,
            attachment_bytes=attachment.size if attachment else None,
            delivery=delivery.kind,
            message_id=str(message["Message-ID"]),
        )
        earlier = f" ({len(already)} more in an earlier attempt)" if already else ""
        return self._finish(
            outcome,
            detail=f"{kind} sent to {len(pending)} recipient(s){earlier} via {delivery.kind}",
            threshold_state=threshold_state,
            group_states=group_states,
        )

    def _deliver(self, message: EmailMessage, pending: Sequence[str], already: Sequence[str]) -> Delivery:
        """Hand the message to the mailer, the slot marked ``sending`` meanwhile; a refusal for some
        recipients is recorded (who has it) and raised: transient when one was a 4xx."""
        start_sending(self.conn, self.claim, now=self.settings.clock(), settings=self.settings.claim)
        try:
            delivery = self.mailer.deliver(message)
        except DeliveryUnknown:
            raise  # the slot stays 'sending' until recorded as delivery_unknown: never resent
        except KpiAlertError as exc:
            cancel_sending(self.conn, self.claim)  # refused: nothing went out, so it may be tried again
            if already:
                raise type(exc)(_partial_reason(already, str(exc), len(self.alert.recipients))) from None
            raise
        except Exception as exc:  # a mailer's bug: we cannot tell whether anything went out
            raise DeliveryUnknown(f"delivery failed unexpectedly: {type(exc).__name__}: {exc}") from exc
        if delivery.refused:
            # Taken for some, refused for others: recorded, so that a retry (a 4xx recipient may accept
            # later) or an operator's replay sends to the refused ones only.
            reached = (*already, *_without(pending, [r.address for r in delivery.refused]))
            record_partial_delivery(self.conn, self.claim, reached[len(already) :], now=self.settings.clock())
            refused = "; ".join(str(r) for r in delivery.refused)
            reason = _partial_reason(
                reached, f"the SMTP server refused {refused}", len(self.alert.recipients)
            )
            if any(r.transient for r in delivery.refused):
                raise TransientAlertError(reason)
            raise PermanentAlertError(reason)
        return delivery

    def _finish(
        self,
        outcome: Outcome,
        *,
        detail: str,
        threshold_state: ThresholdStateUpdate | None = None,
        group_states: Sequence[GroupStateUpdate] = (),
        next_run_at: datetime | None = None,
    ) -> AlertRun:
        finish_claim(
            self.conn,
            self.alert,
            self.claim,
            outcome,
            now=self.settings.clock(),
            threshold_state=threshold_state,
            group_states=group_states,
            next_run_at=next_run_at,
        )
        return AlertRun(self.alert.alert_id, outcome.status, detail, self.claim.slot.isoformat())


def compose_message(
    alert: AlertDefinition,
    data: KpiData,
    *,
    kind: MessageKind,
    slot: datetime,
    settings: RunSettings,
    recipients: Sequence[str],
    message_key: str,
    value: Any = None,
    previous: Any = None,
    condition: str | None = None,
    threshold_value: Decimal | None = None,
    decision: str | None = None,
    expected: ExpectedRange | None = None,
    fetch: Callable[[Mapping[str, Any]], KpiData] | None = None,
    gate: GateDecision | None = None,
    stale: tuple[str, str] | None = None,
) -> tuple[EmailMessage, Attachment | None]:
    """The message (and its attachment) that recipients get: the one code path for a run, a test send
    and a preview (:mod:`kpi_alerts.pipeline.trial`).

    The report model is built once here (:func:`kpi_alerts.reports.model.build_report`; ``fetch`` asks
    Cube for the period's figure and the previous period's) and rendered by the attachment and the
    message alike. ``stale``: a report sent at its freshness deadline — the data's age (``Data as of 07:40
    (1 h 20 min old)``, in the subject) and the sentence that explains it (a note in the body).
    """
    kpi = data.measures[0] if data.measures else None
    if alert.threshold is not None and alert.threshold.kpi_measure:
        kpi = data.column(alert.threshold.kpi_measure)
    ctx = ReportContext(
        alert_name=alert.alert_name,
        organization_id=alert.organization_id,
        timezone=alert.timezone,
        slot=slot,
        period=describe_period(alert.cube_query),
        generated_at=settings.clock(),
        kind=kind,
        kpi=kpi,
        kpi_value=value,  # None for reports: the renderers show the latest complete period's value
        previous_value=previous,
        condition=condition,
        threshold_value=threshold_value,
        decision=decision,
        expected=expected,
        dashboard_url=alert.dashboard_url,
        message=alert.message,
        data_age=stale[0] if stale else None,
        data_age_note=stale[1] if stale else None,
    )
    report = build_report(data, ctx, display=alert.display, fetch=fetch, gate=gate)
    attachment = None
    if kind == "report" and alert.attachment_type:
        attachment = render_attachment(alert.attachment_type, report)
    message = build_message(
        ctx=ctx,
        data=data,
        recipients=list(recipients),
        envelope=settings.envelope,
        attachment=attachment,
        message_key=message_key,
        report=report,
    )
    return message, attachment


def _without(recipients: Sequence[str], removed: Sequence[str]) -> list[str]:
    gone = {a.casefold() for a in removed}
    return [r for r in recipients if r.casefold() not in gone]


def _partial_reason(reached: Sequence[str], failure: str, total: int) -> str:
    """A partial delivery's reason: who has the message, then what refused the others."""
    if not reached:
        return failure
    return f"delivered to {len(reached)} of {total} recipient(s) ({', '.join(reached)}), not to the others: {failure}"


__all__ = [
    "AlertFailed",
    "AlertRun",
    "AlertValidationError",
    "Delivery",
    "KpiSource",
    "Mailer",
    "RunSettings",
    "TransientAlertError",
    "process_alert",
]
