"""A threshold alert's check of one Cube result: the value, the condition (with its recovery threshold)
and the state machine's decision (with its pending period).

One function for a run, a test send and a preview (:mod:`kpi_alerts.pipeline.trial`): what a trial
says a run would do is what a run does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kpi_alerts.alerts.definition import AlertDefinition, ThresholdDefinition
from kpi_alerts.conditions.anomaly import (
    AnomalyMethod,
    evaluate_anomaly,
    expected_band,
    history_query,
    season_label,
    seasonal_granularity,
    seasonal_history,
)
from kpi_alerts.conditions.groups import GroupsDecision, decide_groups
from kpi_alerts.conditions.threshold_state import (
    AlertState,
    ErrorPolicy,
    NoDataPolicy,
    Observation,
    Settings,
    StoredState,
    Transition,
    decide,
)
from kpi_alerts.conditions.thresholds import (
    ANOMALY_CONDITIONS,
    PERCENT_CONDITIONS,
    KpiReading,
    ThresholdCondition,
    ThresholdResult,
    describe_threshold,
    evaluate_threshold,
    kpi_value,
    parse_condition,
    period_values,
)
from kpi_alerts.errors import PermanentAlertError
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.outcomes import GroupStateUpdate, ThresholdStateUpdate
from kpi_alerts.reports.context import ExpectedRange
from kpi_alerts.reports.units import format_plain, headline_places, unit_for

#: Asks Cube for one of the alert's queries (the run's cache, or a trial's live fetch).
Fetch = Callable[[Mapping[str, Any]], KpiData]


@dataclass(frozen=True)
class ThresholdCheck:
    """What one check found and decided.

    :param condition: the condition in words (``Orders > 2``), for the subject and the e-mail.
    :param threshold_value: the level drawn on the chart; None for percent-change conditions.
    :param decision: the sentence that explains the decision, with its numbers (e-mail, ledger, trials).
    :param expected: an anomaly condition's band for the checked period (drawn on the chart); None for
        other conditions and when the history was too short to learn one.
    """

    result: ThresholdResult
    transition: Transition
    condition: str
    threshold_value: Decimal | None
    decision: str
    expected: ExpectedRange | None = None

    @property
    def state_update(self) -> ThresholdStateUpdate:
        t = self.transition
        return ThresholdStateUpdate(str(t.new_state), self.result.value, t.last_notified_at, t.streak)


def check_threshold(alert: AlertDefinition, data: KpiData, *, now: datetime, fetch: Fetch) -> ThresholdCheck:
    """Read the KPI out of ``data``, evaluate the alert's condition and decide what its state becomes.

    :param now: the slot being checked (logical time): the KPI's period and re-arm are measured in slots.
    :param fetch: asks Cube for the history an anomaly condition learns its band from.
    """
    threshold = alert.threshold
    assert threshold is not None
    condition = parse_condition(threshold.condition)
    measure = data.column(reading_measure(data, threshold.kpi_measure))
    title = measure.short_title or measure.title
    reading = kpi_value(data, measure.key, now=now)
    expected = None
    if condition in ANOMALY_CONDITIONS:
        result, expected = _anomaly(alert, condition, reading, data, measure.key, title, fetch)
    else:
        result = evaluate_threshold(
            condition,
            threshold.threshold_value,
            reading,
            measure_title=title,
            recovery=threshold.recovery_threshold,
            in_breach=threshold.state == AlertState.TRIGGERED,
        )
    transition = threshold_transition(alert, result.status, now)
    return ThresholdCheck(
        result,
        transition,
        describe_threshold(condition, threshold.threshold_value, title),
        None if condition in PERCENT_CONDITIONS | ANOMALY_CONDITIONS else threshold.threshold_value,
        _decision(result, transition, alert),
        expected,
    )


def _anomaly(
    alert: AlertDefinition,
    condition: ThresholdCondition,
    reading: KpiReading,
    data: KpiData,
    measure: str,
    title: str,
    fetch: Fetch,
) -> tuple[ThresholdResult, ExpectedRange | None]:
    """The value against the band learned from the same weekday (and hour) of past weeks in Cube, and
    that band (None without enough history)."""
    threshold = alert.threshold
    assert threshold is not None
    period = reading.bucket_start
    if reading.value is None or period is None:
        return ThresholdResult("no_data", reading.value, None, None, f"no data for {title}"), None
    weeks = threshold.history_weeks
    past = fetch(history_query(alert.cube_query, measure=measure, period_start=period, weeks=weeks))
    history = seasonal_history(period_values(past, measure), period, weeks)
    enough = len(history) >= threshold.min_history
    method = AnomalyMethod(threshold.anomaly_method)
    unit = unit_for(data.column(measure), data, alert.display)
    locale = alert.display.locale
    band = expected_band(history, threshold.threshold_value, method) if enough else None
    result = evaluate_anomaly(
        condition,
        reading.value,
        band,
        samples=len(history),
        min_history=threshold.min_history,
        season=season_label(period, seasonal_granularity(alert.cube_query)),
        measure_title=title,
        show=lambda v: format_plain(v, unit, locale, places=headline_places(v, unit)),
    )
    return result, None if band is None else ExpectedRange(band.low, band.high, period)


def threshold_transition(alert: AlertDefinition, observation: Observation, now: datetime) -> Transition:
    """The state machine's decision for one observation of ``alert`` (also for errors, which have no value)."""
    threshold = alert.threshold
    assert threshold is not None
    stored = StoredState(AlertState(threshold.state), threshold.last_notified_at, threshold.streak)
    return decide(stored, observation, now=now, settings=_settings(threshold))


@dataclass(frozen=True)
class GroupsCheck:
    """A per-group alert's check: every group's decision, and what the alert as a whole stores and says."""

    decision: GroupsDecision
    condition: str
    threshold_value: Decimal | None
    state_update: ThresholdStateUpdate

    @property
    def group_updates(self) -> list[GroupStateUpdate]:
        return [
            GroupStateUpdate(
                c.group,
                str(c.transition.new_state),
                c.result.value,
                c.transition.last_notified_at,
                c.transition.streak,
            )
            for c in self.decision.checks
        ]


def check_groups(
    alert: AlertDefinition, data: KpiData, *, now: datetime, stored: Mapping[str, Mapping[str, Any]]
) -> GroupsCheck:
    """Check each group of ``alert.threshold.group_by`` (per-group checks) against the alert's condition.

    :param stored: the groups' stored states (:func:`kpi_alerts.ledger.results.group_states`).
    """
    threshold = alert.threshold
    assert threshold is not None and threshold.group_by is not None
    condition = parse_condition(threshold.condition)
    measure = data.column(reading_measure(data, threshold.kpi_measure))
    title = measure.short_title or measure.title
    decision = decide_groups(
        data,
        group_by=threshold.group_by,
        measure=measure.key,
        measure_title=title,
        condition=condition,
        threshold=threshold.threshold_value,
        recovery=threshold.recovery_threshold,
        stored={
            g: StoredState(AlertState(s["state"]), s["last_notified_at"], s["streak"])
            for g, s in stored.items()
        },
        now=now,
        settings=_settings(threshold),
    )
    group_title = _title(data, threshold.group_by)
    clock = now if decision.notify else threshold.last_notified_at
    return GroupsCheck(
        decision,
        f"{describe_threshold(condition, threshold.threshold_value, title)} per {group_title}",
        None if condition in PERCENT_CONDITIONS else threshold.threshold_value,
        ThresholdStateUpdate(str(decision.state), None, clock, 0),
    )


def _title(data: KpiData, key: str) -> str:
    try:
        column = data.column(key)
    except KeyError:
        return key
    return column.short_title or column.title


def _settings(threshold: ThresholdDefinition) -> Settings:
    return Settings(
        rearm=timedelta(minutes=threshold.rearm_minutes),
        notify_on_recovery=threshold.notify_on_recovery,
        on_no_data=NoDataPolicy(threshold.on_no_data),
        on_error=ErrorPolicy(threshold.on_error),
        pending_checks=threshold.pending_checks,
        recovery_checks=threshold.recovery_checks,
    )


def reading_measure(data: KpiData, measure: str | None) -> str:
    if measure:
        return measure
    if not data.measures:
        raise PermanentAlertError("the query returned no measure")
    return data.measures[0].key


def _decision(result: ThresholdResult, transition: Transition, alert: AlertDefinition) -> str:
    """The check's outcome, then how the pending period counted it when one is set."""
    threshold = alert.threshold
    assert threshold is not None
    sentence = result.description
    if transition.notify == "triggered" and threshold.pending_checks > 1:
        sentence += f"; breached for {threshold.pending_checks} checks in a row"
    elif transition.notify == "recovered" and threshold.recovery_checks > 1:
        sentence += f"; OK for {threshold.recovery_checks} checks in a row"
    elif transition.streak:
        sentence += f"; {transition.reason}"
    return sentence
