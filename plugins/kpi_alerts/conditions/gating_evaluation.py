"""Evaluating a gating condition (see :mod:`kpi_alerts.conditions.gating_format` for the format) against Cube data.

Leaves read "the KPI" exactly as threshold alerts do (:func:`~kpi_alerts.conditions.thresholds.kpi_value`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from kpi_alerts.conditions.gating_format import (
    AllOf,
    GateLeaf,
    GateNode,
    GatingCondition,
    NotOf,
    operator_json,
)
from kpi_alerts.conditions.thresholds import evaluate_threshold, kpi_value
from kpi_alerts.kpi_data import KpiData


@dataclass(frozen=True)
class GateValue:
    """What one leaf saw; ``value`` None means no data (and ``passed`` is False)."""

    measure: str
    value: Decimal | None
    op: str
    threshold: Decimal
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    """Whether the report goes out, with every leaf's value and a sentence for the ledger."""

    passed: bool
    values: list[GateValue]
    description: str


Fetch = Callable[[Mapping[str, Any] | None], KpiData]


def evaluate_gate(condition: GatingCondition, fetch: Fetch, *, now: datetime) -> GateDecision:
    """Evaluate every leaf (so the ledger shows all values), fetching each distinct query once.

    A leaf without data is *unknown*: ``all`` with an unknown and no failure is unknown, ``any``
    with an unknown and no pass is unknown, ``not`` of unknown is unknown, and only a known pass
    opens the gate: missing data never sends a report by accident.

    :param fetch: ``fetch(None)`` returns the alert's own query result, ``fetch(query)`` a leaf's.
    :param now: the slot being processed; decides which periods are complete.
    """
    results: dict[str, KpiData] = {}
    values: list[GateValue] = []

    def fetch_once(query: Mapping[str, Any] | None) -> KpiData:
        key = "" if query is None else json.dumps(query, sort_keys=True)
        if key not in results:
            results[key] = fetch(query)
        return results[key]

    def visit(node: GateNode) -> tuple[bool | None, str]:
        if isinstance(node, GateLeaf):
            data = fetch_once(node.query)
            reading = kpi_value(data, node.measure, now=now, aggregate=node.aggregate)
            title = data.column(node.measure).title
            result = evaluate_threshold(node.op, node.value, reading, measure_title=title)
            outcome = None if result.status == "no_data" else result.status == "breached"
            values.append(
                GateValue(node.measure, result.value, operator_json(node.op), node.value, bool(outcome))
            )
            return outcome, result.description + (" (unknown)" if outcome is None else "")
        if isinstance(node, NotOf):
            outcome, text = visit(node.condition)
            return (None if outcome is None else not outcome), f"not ({text})"
        parts = [visit(child) for child in node.conditions]
        outcomes = {outcome for outcome, _ in parts}
        decisive, word = (False, "all of") if isinstance(node, AllOf) else (True, "any of")
        outcome = decisive if decisive in outcomes else (None if None in outcomes else not decisive)
        return outcome, f"{word} ({'; '.join(text for _, text in parts)})"

    outcome, text = visit(condition.root)
    verdict = "passed" if outcome is True else ("failed: no data" if outcome is None else "failed")
    return GateDecision(outcome is True, values, f"gate {verdict} — {text}")
