"""What a run of an alert decides for a slot, before anything is written or sent: the one evaluation step
of a run (:mod:`kpi_alerts.pipeline.alert_run`), a test send and a preview (:mod:`kpi_alerts.pipeline.trial`).

A scheduled report: fresh enough (or waits), its gate, only-if-changed. A threshold alert: its value
(per group or as one), the condition, the state machine's transition, quiet hours. The answer is an
:class:`Evaluation`: send (which message, with what) or the ledger status it ends with, and a sentence of
what a run would do now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.conditions.freshness import (
    Freshness,
    FreshnessVerdict,
    data_age,
    judge_freshness,
    stale_note,
    waiting_reason,
)
from kpi_alerts.conditions.gating_evaluation import evaluate_gate
from kpi_alerts.conditions.gating_format import parse_gating_condition
from kpi_alerts.errors import KpiAlertError, PermanentAlertError
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.outcomes import GroupStateUpdate, ThresholdStateUpdate
from kpi_alerts.ledger.results import group_states, last_sent_digest
from kpi_alerts.pipeline.inputs import AssetEvents
from kpi_alerts.pipeline.kpi_source import RunQueries
from kpi_alerts.pipeline.threshold_check import check_groups, check_threshold
from kpi_alerts.reports.context import ExpectedRange, MessageKind
from kpi_alerts.reports.query_plan import expected_report_queries, period_pair

if TYPE_CHECKING:
    from kpi_alerts.conditions.gating_evaluation import GateDecision

#: The message a threshold notice is sent as (any other notice: a breach).
MESSAGE_KINDS: dict[str | None, MessageKind] = {
    "recovered": "threshold_recovered",
    "no_data": "threshold_no_data",
}
#: :attr:`Evaluation.status` of a slot whose message goes out.
SEND = "send"


@dataclass(frozen=True)
class MessageFacts:
    """What the message says beyond the data (:func:`~kpi_alerts.pipeline.alert_run.compose_message`'s
    keyword arguments)."""

    value: Any = None
    previous: Any = None
    condition: str | None = None
    threshold_value: Decimal | None = None
    decision: str | None = None
    expected: ExpectedRange | None = None
    gate: GateDecision | None = None
    #: a report sent at its freshness deadline: the data's age and the sentence that explains it
    stale: tuple[str, str] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Evaluation:
    """The decision for one alert and slot.

    :param status: :data:`SEND`, or the ledger status the slot ends with when nothing is sent (``gated``,
        ``skipped``, ``suppressed``, ``not_triggered``; ``waiting`` for fresh data).
    :param kind: the message a send is (for a threshold alert that stays quiet: the breach notice).
    :param detail: why, in one line (the ledger's and the log's).
    :param verdict: what a run would do now, in words (a test send's and a preview's line).
    """

    status: str
    kind: MessageKind
    detail: str
    verdict: str
    data: KpiData | None = None
    details: dict[str, Any] = field(default_factory=dict)
    message: MessageFacts = field(default_factory=MessageFacts)
    threshold_state: ThresholdStateUpdate | None = None
    group_states: tuple[GroupStateUpdate, ...] = ()
    #: a report that waits for fresh data: what it waits for, and how it stands
    wait: tuple[Freshness, FreshnessVerdict] | None = None

    @property
    def sends(self) -> bool:
        return self.status == SEND


@dataclass(frozen=True)
class LedgerFacts:
    """What the ledger knows that a decision reads: a per-group alert's group states, the last report
    sent (only if changed). Without a connection (a trial without a database): no groups, no last report."""

    conn: psycopg.Connection[Any] | None

    def group_states(self, alert: AlertDefinition) -> Mapping[str, Any]:
        return group_states(self.conn, alert.alert_id) if self.conn is not None else {}

    def unchanged_since(self, alert: AlertDefinition, data: KpiData, slot: datetime) -> str | None:
        """Why a report sent only if its data changed is skipped at ``slot``; None: send it."""
        if self.conn is None:
            return None
        last = last_sent_digest(self.conn, alert.cron_job_id, slot)
        if last is None or last[1] != data.digest():
            return None
        return f"skipped: the data equals the report sent for {last[0].isoformat()} (only if changed)"


def evaluate(
    alert: AlertDefinition,
    slot: datetime,
    *,
    queries: RunQueries,
    now: datetime,
    logical_time: datetime,
    facts: LedgerFacts,
    assets: AssetEvents | None,
) -> Evaluation:
    """Decide what a run of ``alert`` does for ``slot`` (``queries``: the alert's Cube answers, kept)."""
    step = _Step(alert, slot, queries, now, logical_time, facts, assets)
    return step.report() if alert.alert_type == "schedule" else step.threshold()


@dataclass(frozen=True)
class _Step:
    alert: AlertDefinition
    slot: datetime
    queries: RunQueries
    now: datetime
    logical_time: datetime
    facts: LedgerFacts
    assets: AssetEvents | None

    def fetch(self, query: Mapping[str, Any] | None = None) -> KpiData:
        query = query if query is not None else self.alert.cube_query
        context = {"organization_id": self.alert.organization_id}  # the Cube token's tenant
        return self.queries.load(query, security_context=context, timezone=self.alert.timezone)

    def _ask_first_queries(self) -> None:
        """The report's period and the previous one in one query (the period pair) or one request; a
        query Cube refuses is then asked alone by :meth:`fetch`, which names it."""
        query, tz = self.alert.cube_query, self.alert.timezone
        context = {"organization_id": self.alert.organization_id}
        pair = period_pair(query, tz, self.now)
        if pair is not None:
            try:
                data = self.queries.load(pair.query, security_context=context, timezone=tz)
            except PermanentAlertError:  # too many rows for one answer, say: two queries then
                pair = None
            else:
                for asked, part in zip(
                    (pair.current_query, pair.previous_query), pair.split(data), strict=True
                ):
                    self.queries.remember(asked, part, security_context=context, timezone=tz)
        if pair is None:
            with contextlib.suppress(PermanentAlertError):  # a query Cube refuses is asked alone, named
                self.queries.load_many(
                    [query, *expected_report_queries(query, tz, self.now)],
                    security_context=context,
                    timezone=tz,
                )

    # --- scheduled reports -------------------------------------------------------------------

    def report(self) -> Evaluation:
        freshness, verdict = self.alert.freshness, None
        if freshness is not None and freshness.source == "asset":  # asked before Cube: waiting costs no query
            verdict = self._judge(freshness, self._asset_updated_at(freshness))
            if verdict.wait:
                return self._waiting(freshness, verdict, None)
        self._ask_first_queries()
        data = self.fetch()
        if freshness is not None and freshness.source == "cube":
            verdict = self._judge(freshness, data.refreshed_at)
            if verdict.wait:
                return self._waiting(freshness, verdict, data)
        details: dict[str, Any] = {}
        stale: tuple[str, str] | None = None
        if freshness is not None and verdict is not None:
            details["freshness"] = verdict.details(freshness, self.slot, self.now)
            if not verdict.fresh:  # the deadline came: sent anyway, saying how old the data is
                tz = self.alert.timezone
                stale = (
                    data_age(verdict.data_as_of, now=self.now, timezone=tz),
                    stale_note(freshness, verdict, now=self.now, timezone=tz),
                )
        gate = parse_gating_condition(self.alert.gating_condition)
        decision = None
        if gate is not None:
            decision = evaluate_gate(gate, self.fetch, now=self.slot)
            details["gate"] = {
                "passed": decision.passed,
                "description": decision.description,
                "values": [_plain(v) for v in decision.values],
            }
        message = MessageFacts(gate=decision, stale=stale)
        if decision is not None and not decision.passed:
            verdict_words = f"gated out (a run would not send it now): {decision.description}"
            return Evaluation("gated", "report", decision.description, verdict_words, data, details, message)
        if self.alert.only_if_changed:
            details["data_digest"] = data.digest()
            unchanged = self.facts.unchanged_since(self.alert, data, self.slot)
            if unchanged is not None:
                verdict_words = f"{unchanged} — a run would not send it now"
                return Evaluation("skipped", "report", unchanged, verdict_words, data, details, message)
        verdict_words = (
            f"gate passed: {decision.description}" if decision is not None else "a run would send this report"
        )
        return Evaluation(SEND, "report", "report", verdict_words, data, details, message)

    def _asset_updated_at(self, freshness: Freshness) -> datetime | None:
        """The asset's latest event, read through the run's asset reader (the Task SDK in a DAG run)."""
        if self.assets is None:
            raise PermanentAlertError(
                "this report waits for an Airflow asset, which only a task of the kpi_alerts DAG can read"
            )
        assert freshness.asset is not None
        return self.assets.last_updated(freshness.asset)

    def _judge(self, freshness: Freshness, data_as_of: datetime | None) -> FreshnessVerdict:
        try:
            next_slot: datetime | None = self.alert.next_slot_after(self.slot)
        except KpiAlertError:  # a schedule that never fires again: the maximum wait alone bounds it
            next_slot = None
        return judge_freshness(
            freshness,
            slot=self.slot,
            logical_time=self.logical_time,
            data_as_of=data_as_of,
            next_slot=next_slot,
        )

    def _waiting(self, freshness: Freshness, verdict: FreshnessVerdict, data: KpiData | None) -> Evaluation:
        reason = waiting_reason(freshness, verdict, self.alert.timezone)
        details = {"freshness": verdict.details(freshness, self.slot, self.now)}
        words = f"{reason} — a run would wait for fresh data now"
        return Evaluation("waiting", "report", reason, words, data, details, wait=(freshness, verdict))

    # --- threshold alerts ---------------------------------------------------------------------

    def threshold(self) -> Evaluation:
        data = self.fetch()
        threshold = self.alert.threshold
        assert threshold is not None
        if threshold.group_by is not None:
            return self._per_group(data)
        # re-arm and pending periods are measured in slots (logical time), so runs are reproducible
        check = check_threshold(self.alert, data, now=self.slot, fetch=self.fetch)
        result, transition = check.result, check.transition
        notify, reason = transition.notify, transition.reason
        details: dict[str, Any] = {
            "observation": result.status,
            "description": result.description,
            "transition": reason,
            "streak": transition.streak,
            "change_percent": str(result.change_percent) if result.change_percent is not None else None,
        }
        notice = notify or "no notice"
        words = f"threshold {result.status}: {check.decision} — a run now would send {notice} ({reason})"
        message = MessageFacts(
            value=result.value,
            previous=result.previous,
            condition=check.condition,
            threshold_value=check.threshold_value,
            decision=check.decision,
            expected=check.expected,
        )
        state = check.state_update
        held = self._held_by_quiet_hours(notify, details)
        if held is not None:  # nothing sent, the state stays; the first check after their end decides
            reason, state, notify = held, self._unchanged_state(result.value), None
            words = f"threshold {result.status}: {check.decision} — {held}"
        kind = MESSAGE_KINDS.get(notify, "threshold_triggered")
        if notify is None:
            status = "suppressed" if result.status == "breached" else "not_triggered"
            return Evaluation(status, kind, reason, words, data, details, message, threshold_state=state)
        return Evaluation(SEND, kind, reason, words, data, details, message, threshold_state=state)

    def _per_group(self, data: KpiData) -> Evaluation:
        check = check_groups(self.alert, data, now=self.slot, stored=self.facts.group_states(self.alert))
        decision = check.decision
        sentence = decision.describe()
        details: dict[str, Any] = {
            "description": sentence,
            "groups": {
                c.group: {
                    "observation": c.result.status,
                    "value": str(c.result.value) if c.result.value is not None else None,
                    "description": c.result.description,
                    "transition": c.transition.reason,
                    "streak": c.transition.streak,
                }
                for c in decision.checks
            },
        }
        words = f"groups: {sentence} — a run now would send {decision.notify or 'no notice'}"
        message = MessageFacts(
            condition=check.condition, threshold_value=check.threshold_value, decision=sentence
        )
        held = self._held_by_quiet_hours(decision.notify, details)
        kind = MESSAGE_KINDS.get(decision.notify, "threshold_triggered")
        if decision.notify is None or held is not None:
            breached = any(c.result.status == "breached" for c in decision.checks)
            return Evaluation(  # held: the alert's and its groups' states stay as they were
                "suppressed" if breached else "not_triggered",
                kind,
                held or sentence,
                words if held is None else f"groups: {sentence} — {held}",
                data,
                details,
                message,
                threshold_state=check.state_update if held is None else self._unchanged_state(None),
                group_states=tuple(check.group_updates) if held is None else (),
            )
        return Evaluation(
            SEND,
            kind,
            sentence,
            words,
            data,
            details,
            message,
            threshold_state=check.state_update,
            group_states=tuple(check.group_updates),
        )

    def _held_by_quiet_hours(self, notify: str | None, details: dict[str, Any]) -> str | None:
        """A notification due inside quiet hours is held (:mod:`kpi_alerts.scheduling.quiet_hours`): the
        reason, also recorded in ``details``; None when nothing is held."""
        until = self.alert.hold.quiet_end(self.slot) if notify is not None else None
        if until is None:
            return None
        details["quiet_hours"] = {"until": until.isoformat(), "held": notify}
        return f"{notify} held by quiet hours until {until.isoformat()}"

    def _unchanged_state(self, value: Decimal | None) -> ThresholdStateUpdate:
        t = self.alert.threshold
        assert t is not None
        return ThresholdStateUpdate(
            t.state, value if value is not None else t.last_value, t.last_notified_at, t.streak
        )


def _plain(value: Any) -> Any:
    return (
        {k: str(v) if v is not None else None for k, v in asdict(value).items()}
        if is_dataclass(value) and not isinstance(value, type)
        else value
    )
