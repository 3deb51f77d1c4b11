"""Per-group checks: a threshold alert whose query has a dimension (region, product) checks each group's
value, keeps a state per group, and sends one notice listing the groups that changed.

Each group goes through the same condition (:func:`~kpi_alerts.conditions.thresholds.evaluate_threshold`,
recovery threshold included) and the same state machine (:func:`~kpi_alerts.conditions.threshold_state.decide`,
re-arm and pending period included) as a whole alert does. A group that was not OK and has no row any
more is observed as no data (the alert's no-data policy decides). The rules are documented for users
in ``docs/conditions.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from kpi_alerts.conditions.threshold_state import (
    AlertState,
    Notice,
    Settings,
    StoredState,
    Transition,
    decide,
)
from kpi_alerts.conditions.thresholds import (
    ANOMALY_CONDITIONS,
    ThresholdCondition,
    ThresholdResult,
    evaluate_threshold,
    kpi_value,
)
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import CellValue, KpiData

#: At most this many groups per alert: a dimension with more values is a table, not a list of groups.
MAX_GROUPS = 200
#: How a missing group value (SQL NULL) is named.
NO_VALUE = "(none)"


@dataclass(frozen=True)
class GroupCheck:
    """One group's check and decision."""

    group: str
    result: ThresholdResult
    transition: Transition


@dataclass(frozen=True)
class GroupsDecision:
    """All groups' checks, and what the alert as a whole says.

    :param notify: the notice to send (None: nobody is told): ``triggered`` when a group is newly (or,
        once re-armed, still) breaching or any notice goes out while a group breaches, else
        ``recovered`` when one recovered, else ``no_data``.
    :param state: the alert's own state: TRIGGERED while any group is, else NO_DATA while any group
        is, else OK.
    """

    checks: tuple[GroupCheck, ...]
    notify: Notice | None
    state: AlertState

    def describe(self) -> str:
        """The groups the notice is about, with their numbers, e.g. ``breaching: east (Orders is 12);
        recovered: west (Orders is 3)``; then how many groups were checked."""
        parts = []
        for label, notices in (
            ("breaching", ("triggered",)),
            ("still breaching", ("still_triggered",)),
            ("recovered", ("recovered",)),
            ("no data", ("no_data",)),
        ):
            listed = [c for c in self.checks if c.transition.notify in notices]
            if listed:
                parts.append(f"{label}: " + ", ".join(f"{c.group} ({c.result.description})" for c in listed))
        standing = [
            c.group
            for c in self.checks
            if c.transition.notify is None and c.transition.new_state is AlertState.TRIGGERED
        ]
        if standing:
            parts.append("breaching, already notified: " + ", ".join(standing))
        summary = "; ".join(parts) or "no group changed"
        return f"{summary} ({len(self.checks)} group(s) checked)"


def check_group_by(query: Mapping[str, object], group_by: str, condition: ThresholdCondition) -> None:
    """:raises AlertValidationError: when ``group_by`` is not one of the query's dimensions, or the
    condition is an anomaly condition (a band per group is not offered)."""
    dimensions = query.get("dimensions")
    if not isinstance(dimensions, list) or group_by not in dimensions:
        raise AlertValidationError(f"group_by {group_by[:100]!r} is not one of the query's dimensions")
    if condition in ANOMALY_CONDITIONS:
        raise AlertValidationError(f"per-group checks (group_by) do not apply to {condition}")


def split_by_group(data: KpiData, group_by: str) -> dict[str, KpiData]:
    """The result's rows per value of ``group_by`` (the other columns as they are).

    :raises AlertValidationError: the dimension is not in the result, or it has too many values.
    """
    if not any(c.key == group_by for c in data.columns):
        raise AlertValidationError(f"group_by {group_by[:100]!r} is not in the query's result")
    rows: dict[str, list[Mapping[str, CellValue]]] = {}
    for row in data.rows:
        value = row.get(group_by)
        rows.setdefault(NO_VALUE if value is None else str(value), []).append(row)
    if len(rows) > MAX_GROUPS:
        raise AlertValidationError(
            f"{group_by} has {len(rows)} values; per-group checks handle at most {MAX_GROUPS}"
        )
    return {group: replace(data, rows=tuple(r)) for group, r in rows.items()}


def decide_groups(
    data: KpiData,
    *,
    group_by: str,
    measure: str,
    measure_title: str,
    condition: ThresholdCondition,
    threshold: Decimal,
    recovery: Decimal | None,
    stored: Mapping[str, StoredState],
    now: datetime,
    settings: Settings,
) -> GroupsDecision:
    """Check every group present now and every stored group that is not OK; decide each one's state."""
    checks = []
    groups = split_by_group(data, group_by)
    for group in sorted(set(groups) | {g for g, s in stored.items() if s.state is not AlertState.OK}):
        before = stored.get(group)
        if group in groups:
            reading = kpi_value(groups[group], measure, now=now)
            in_breach = before is not None and before.state is AlertState.TRIGGERED
            result = evaluate_threshold(
                condition,
                threshold,
                reading,
                measure_title=measure_title,
                recovery=recovery,
                in_breach=in_breach,
            )
        else:
            result = ThresholdResult("no_data", None, None, None, f"no row for {group}")
        checks.append(GroupCheck(group, result, decide(before, result.status, now=now, settings=settings)))
    state = _overall_state(checks)
    return GroupsDecision(tuple(checks), _notice(checks, state), state)


def _notice(checks: list[GroupCheck], state: AlertState) -> Notice | None:
    """One notice for the alert: a breach while any group breaches (a recovery of one group is not the
    end of the alert's problem), else a recovery, else no data."""
    notices = {c.transition.notify for c in checks} - {None}
    if not notices:
        return None
    if notices & {"triggered", "still_triggered"} or state is AlertState.TRIGGERED:
        return "triggered"
    return "recovered" if "recovered" in notices else "no_data"


def _overall_state(checks: list[GroupCheck]) -> AlertState:
    states = {c.transition.new_state for c in checks}
    for state in (AlertState.TRIGGERED, AlertState.NO_DATA):
        if state in states:
            return state
    return AlertState.OK
