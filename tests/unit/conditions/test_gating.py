"""Gating conditions: the JSON format (parsed, refused, fuzzed) and the gate's decision."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_alerts.conditions.gating_evaluation import evaluate_gate
from kpi_alerts.conditions.gating_format import (
    MAX_DEPTH,
    MAX_LEAVES,
    AllOf,
    GateLeaf,
    GatingCondition,
    check_gate_measures,
    gating_json_schema,
    parse_gating_condition,
)
from kpi_alerts.conditions.thresholds import ThresholdCondition
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import Column, KpiData

UTC_NOON = datetime(2026, 11, 24, 12, tzinfo=ZoneInfo("UTC"))
YESTERDAY = {
    "measures": ["orders.count"],
    "timeDimensions": [{"dimension": "orders.created_at", "dateRange": "yesterday"}],
}


def leaf(
    measure: Any = "orders.total_amount", op: str = ">", value: Any = 10000, **extra: Any
) -> dict[str, Any]:
    return {"measure": measure, "op": op, "value": value, **extra}


VALID = [
    pytest.param(leaf(), id="leaf"),
    pytest.param(leaf(op="GREATER_THAN_OR_EQUAL", value="1.50"), id="condition-name-numeric-string"),
    pytest.param(leaf("orders.count", "==", 0, query=YESTERDAY), id="own-query"),
    pytest.param(leaf(aggregate="total"), id="aggregate-total"),
    pytest.param(leaf(op="INCREASED_BY_PERCENT", value=20), id="percent-change"),
    pytest.param({"all": [leaf(), {"not": leaf("orders.count", "<", 3)}]}, id="all-not"),
    pytest.param({"any": [leaf(value=-1.25), {"all": [leaf(op="!=", value=0)]}]}, id="any-all"),
]

INVALID = [
    # input, fragment of the message
    pytest.param(leaf(value="abc"), "$.value: must be a finite number", id="value-not-numeric"),
    pytest.param(leaf(value=True), "$.value: must be a finite number, not True", id="value-bool"),
    pytest.param(leaf(value=math.nan), "$.value: must be a finite number", id="value-nan"),
    pytest.param(leaf(value=math.inf), "$.value: must be a finite number", id="value-inf"),
    pytest.param(leaf(value="Infinity"), "$.value: must be a finite number", id="value-inf-string"),
    pytest.param(leaf(value=None), "$.value: must be a finite number", id="value-null"),
    pytest.param(leaf(value=1e300), "$.value: must be between 1e-30 and 1e30", id="value-huge"),
    pytest.param(leaf(value="1e-999999999"), "$.value: must be between 1e-30 and 1e30", id="value-tiny"),
    pytest.param(leaf(value="1_000"), "$.value: must be a finite number", id="value-underscores"),
    pytest.param(leaf(value="0x10"), "$.value: must be a finite number", id="value-hex"),
    pytest.param(leaf(op="=>"), "$.op: unknown condition '=>'", id="bad-op"),
    pytest.param(
        leaf(measure="revenue"), '$.measure: must be a Cube member name such as "orders', id="bad-measure"
    ),
    pytest.param(leaf(measure=7), "$.measure: input should be a valid string", id="measure-not-string"),
    pytest.param({"op": ">", "value": 1}, "$.measure: this required key is missing", id="missing-measure"),
    pytest.param({"all": [leaf(colour="red")]}, "$.all[0].colour: unknown key", id="unknown-key"),
    pytest.param({"all": []}, "$.all: must list at least one condition", id="empty-all"),
    pytest.param({"any": [leaf(), 5]}, "$.any[1]: must be a condition object", id="number-in-any"),
    pytest.param({"all": leaf()}, "$.all: input should be a valid list", id="all-not-a-list"),
    pytest.param({"not": [leaf()]}, "$.not: must be a condition object", id="not-a-list"),
    pytest.param(
        leaf(aggregate="max"), "$.aggregate: input should be 'latest' or 'total'", id="bad-aggregate"
    ),
    pytest.param(leaf(query="yesterday"), "$.query: must be a Cube query object", id="query-not-object"),
    pytest.param(leaf(query={"limit": 1}), '$.query: must have "measures"', id="query-without-measures"),
    pytest.param(
        leaf(query={"measures": ["a.b"], "x": math.nan}), "$.query: must be plain JSON", id="query-nan"
    ),
    pytest.param(
        leaf(query=YESTERDAY), "$: measure 'orders.total_amount' is not one of", id="measure-not-in-query"
    ),
    pytest.param(
        leaf(op="DECREASED_BY_PERCENT", aggregate="total"),
        "$: a percent change needs a previous period",
        id="pct-total",
    ),
    pytest.param({"all": [leaf(), {"any": [leaf(measure=1)]}]}, "$.all[1].any[0].measure", id="deep-path"),
    pytest.param([leaf()], "must be a JSON object", id="top-level-list"),
    pytest.param(42, "must be a JSON object", id="top-level-number"),
    pytest.param("{nope", "is not valid JSON", id="broken-json"),
    pytest.param("[[[[" * 5000, "is not valid JSON", id="json-too-deep"),
    pytest.param(b"\xff\xfe", "is not UTF-8", id="bad-bytes"),
    pytest.param(" " * 70_000, "longer than", id="too-long"),
]


class TestParse:
    @pytest.mark.parametrize("raw", VALID)
    def test_valid_round_trips(self, raw: dict[str, Any]) -> None:
        gate = parse_gating_condition(raw)
        assert gate is not None
        stored = gate.to_json()
        assert parse_gating_condition(stored) == gate
        assert parse_gating_condition(json.dumps(stored)) == gate
        assert parse_gating_condition(json.dumps(raw).encode()) == gate
        jsonschema.validate(raw, gating_json_schema())
        jsonschema.validate(stored, gating_json_schema())

    def test_canonical_form(self) -> None:
        raw = {"any": [leaf(op="GREATER_THAN", value="10000.50", aggregate="latest"), {"not": leaf(op="≠")}]}
        gate = parse_gating_condition(raw)
        assert gate is not None
        assert gate.to_json() == {"any": [leaf(value=10000.5), {"not": leaf(op="!=")}]}
        assert (
            isinstance(gate.root, GateLeaf | AllOf) or gate.leaves()[0].op is ThresholdCondition.GREATER_THAN
        )
        assert gate.leaves()[0].value == Decimal("10000.50")

    def test_numbers_stay_exact(self) -> None:
        gate = parse_gating_condition(leaf(value="12345678901234567.89"))
        assert gate is not None
        assert gate.to_json()["value"] == "12345678901234567.89"  # no float holds it exactly
        assert parse_gating_condition(leaf(value=0.1)).leaves()[0].value == Decimal("0.1")  # type: ignore[union-attr]

    @pytest.mark.parametrize("raw", [None, "", "  \n", "null", {}, b"", "{}"])
    def test_empty_means_ungated(self, raw: object) -> None:
        assert parse_gating_condition(raw) is None

    @pytest.mark.parametrize(("raw", "message"), INVALID)
    def test_invalid(self, raw: object, message: str) -> None:
        with pytest.raises(AlertValidationError) as caught:
            parse_gating_condition(raw)
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_several_problems_are_counted(self) -> None:
        with pytest.raises(AlertValidationError, match=r"\(and 1 more problem\)$"):
            parse_gating_condition({"measure": "orders.count"})

    def test_depth_limit(self) -> None:
        node: dict[str, Any] = leaf()
        for _ in range(MAX_DEPTH - 1):
            node = {"not": node}
        assert parse_gating_condition(node) is not None
        with pytest.raises(
            AlertValidationError, match=f"nests {MAX_DEPTH + 1} levels deep; at most {MAX_DEPTH}"
        ):
            parse_gating_condition({"all": [node]})

    def test_leaf_limit(self) -> None:
        assert parse_gating_condition({"all": [leaf(value=n) for n in range(MAX_LEAVES)]}) is not None
        with pytest.raises(AlertValidationError, match=f"has {MAX_LEAVES + 1} comparisons"):
            parse_gating_condition({"all": [leaf(value=n) for n in range(MAX_LEAVES + 1)]})

    def test_hostile_nesting_is_refused_before_validation(self) -> None:
        node: Any = leaf()
        for _ in range(2000):
            node = {"not": node}
        with pytest.raises(AlertValidationError, match="nested too deeply"):
            parse_gating_condition(node)

    def test_schema_refuses_what_the_parser_refuses(self) -> None:
        schema = gating_json_schema()
        jsonschema.validate(None, schema)
        for bad in [leaf(colour="red"), {"all": []}, leaf(op="=>"), leaf(value=True)]:
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, schema)

    def test_check_gate_measures(self) -> None:
        gate = parse_gating_condition({"all": [leaf("orders.count", query=YESTERDAY), leaf()]})
        assert gate is not None
        check_gate_measures(gate, {"measures": ["orders.total_amount"]})
        with pytest.raises(
            AlertValidationError, match=r"'orders\.total_amount', which the alert's query does not"
        ):
            check_gate_measures(gate, {"measures": ["orders.count"]})


# --- fuzzing -----------------------------------------------------------------------------------

KEYS = st.sampled_from(
    ["measure", "op", "value", "query", "aggregate", "all", "any", "not", "measures"]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        [">", ">=", "==", "!=", "<", "<=", "LESS_THAN", "orders.count", "a.b", "latest", "total", "1e5"]
    )
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)
NUMBERS = st.integers(-(10**12), 10**12) | st.decimals(
    allow_nan=False, allow_infinity=False, places=4
).filter(lambda d: abs(d) < 10**20)
LEAVES = st.builds(
    leaf,
    measure=st.sampled_from(["orders.count", "orders.total_amount", "users.active_7d"]),
    op=st.sampled_from([">", ">=", "<", "<=", "==", "!=", "EQUAL", "increased_by_percent", "≥"]),
    value=NUMBERS.map(str)
    | st.integers(-(10**6), 10**6)
    | st.floats(-1e9, 1e9).filter(lambda f: f == 0 or abs(f) > 1e-9),
    aggregate=st.sampled_from(["latest", "total"]),
).map(
    lambda d: {**d, "aggregate": "latest"} if "percent" in d["op"] else d
)  # percent needs a previous period
GATES = st.recursive(
    LEAVES,
    lambda children: (
        st.builds(lambda cs: {"all": cs}, st.lists(children, min_size=1, max_size=4))
        | st.builds(lambda cs: {"any": cs}, st.lists(children, min_size=1, max_size=4))
        | st.builds(lambda c: {"not": c}, children)
    ),
    max_leaves=25,
)


def _parse_or_refuse(raw: object) -> GatingCondition | None:
    try:
        return parse_gating_condition(raw)
    except AlertValidationError as exc:
        assert str(exc)
        return None


class TestFuzz:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.one_of(JSON_VALUES, JSON_VALUES.map(lambda v: json.dumps(v, default=str)), st.text(max_size=60))
    )
    def test_anything_is_a_gate_or_a_validation_error(self, raw: object) -> None:
        gate = _parse_or_refuse(raw)
        if gate is not None:
            assert parse_gating_condition(gate.to_json()) == gate

    @settings(max_examples=200, deadline=None)
    @given(GATES)
    def test_well_formed_gates_round_trip(self, raw: dict[str, Any]) -> None:
        gate = _parse_or_refuse(raw)
        depth_ok = (
            json.dumps(raw).count("{") <= MAX_DEPTH and json.dumps(raw).count('"measure"') <= MAX_LEAVES
        )
        if depth_ok:  # small enough that no limit can apply
            assert gate is not None
        if gate is not None:
            stored = gate.to_json()
            assert parse_gating_condition(json.dumps(stored)) == gate
            assert gate.to_json() == parse_gating_condition(stored).to_json()  # type: ignore[union-attr]
            jsonschema.validate(stored, gating_json_schema())


# --- evaluation --------------------------------------------------------------------------------

TOTAL = Column("orders.total_amount", "Revenue", "measure", "sum")
COUNT = Column("orders.count", "Orders", "measure", "count")


class FakeCube:
    """Answers the alert's own query and any leaf query, counting calls."""

    def __init__(self, own: Mapping[str, Decimal | None], leaf_count: Decimal | None = Decimal(0)) -> None:
        self.own, self.leaf_count = own, leaf_count
        self.calls: list[Mapping[str, Any] | None] = []

    def __call__(self, query: Mapping[str, Any] | None) -> KpiData:
        self.calls.append(query)
        if query is None:
            return KpiData(
                (TOTAL, COUNT), ({TOTAL.key: self.own[TOTAL.key], COUNT.key: self.own[COUNT.key]},), "UTC"
            )
        rows = () if self.leaf_count is None else ({COUNT.key: self.leaf_count},)
        return KpiData((COUNT,), rows, "UTC", query)


def gate(raw: object) -> GatingCondition:
    parsed = parse_gating_condition(raw)
    assert parsed is not None
    return parsed


class TestEvaluateGate:
    OWN = {TOTAL.key: Decimal(12000), COUNT.key: Decimal(4)}

    @pytest.mark.parametrize(
        ("raw", "passed"),
        [
            pytest.param(leaf(), True, id="leaf-pass"),
            pytest.param(leaf(value="12000"), False, id="leaf-equal-is-not-greater"),
            pytest.param({"all": [leaf(), leaf("orders.count", ">=", 5)]}, False, id="all-one-fails"),
            pytest.param(
                {"any": [leaf(value=99999), leaf("orders.count", "==", 4)]}, True, id="any-one-passes"
            ),
            pytest.param({"not": leaf()}, False, id="not"),
            pytest.param(leaf("orders.count", "==", 0, query=YESTERDAY), True, id="own-query"),
        ],
    )
    def test_decision(self, raw: object, passed: bool) -> None:
        decision = evaluate_gate(gate(raw), FakeCube(self.OWN), now=UTC_NOON)
        assert decision.passed is passed
        assert decision.description.startswith("gate passed" if passed else "gate failed")

    def test_values_and_description(self) -> None:
        decision = evaluate_gate(
            gate({"all": [leaf(), leaf("orders.count", "<", 3)]}), FakeCube(self.OWN), now=UTC_NOON
        )
        assert [(v.measure, v.value, v.op, v.threshold, v.passed) for v in decision.values] == [
            ("orders.total_amount", Decimal(12000), ">", Decimal(10000), True),
            ("orders.count", Decimal(4), "<", Decimal(3), False),
        ]
        assert decision.description == (
            "gate failed — all of (Revenue is 12,000: Revenue > 10,000 is met; Orders is 4: Orders < 3 is not met)"
        )

    def test_each_query_is_fetched_once(self) -> None:
        cube = FakeCube(self.OWN)
        other = {
            **YESTERDAY,
            "timeDimensions": [{"dateRange": "yesterday", "dimension": "orders.created_at"}],
        }
        raw = {
            "all": [
                leaf(),
                leaf("orders.count"),
                leaf("orders.count", query=YESTERDAY),
                leaf("orders.count", query=other),
            ]
        }
        evaluate_gate(gate(raw), cube, now=UTC_NOON)
        assert cube.calls == [None, YESTERDAY]  # same query with keys in another order: one fetch

    @pytest.mark.parametrize(
        ("raw", "passed"),
        [
            pytest.param(leaf(), False, id="leaf"),
            pytest.param({"not": leaf()}, False, id="not-of-no-data"),
            pytest.param({"any": [leaf(), leaf("orders.count", ">", 1)]}, True, id="any-with-a-pass"),
            pytest.param({"any": [leaf(), leaf("orders.count", ">", 100)]}, False, id="any-with-a-fail"),
            pytest.param({"all": [leaf(), leaf("orders.count", ">", 100)]}, False, id="all-with-a-fail"),
        ],
    )
    def test_no_data_never_opens_the_gate_by_itself(self, raw: object, passed: bool) -> None:
        cube = FakeCube({TOTAL.key: None, COUNT.key: Decimal(4)})
        decision = evaluate_gate(gate(raw), cube, now=UTC_NOON)
        assert decision.passed is passed
        assert "no data for Revenue (unknown)" in decision.description
        no_data = [v for v in decision.values if v.measure == TOTAL.key]
        assert [(v.value, v.passed) for v in no_data] == [(None, False)]

    def test_whole_gate_unknown_is_said(self) -> None:
        decision = evaluate_gate(
            gate(leaf("orders.count", query=YESTERDAY)), FakeCube(self.OWN, None), now=UTC_NOON
        )
        assert decision.description == "gate failed: no data — no data for Orders (unknown)"

    def test_measure_missing_from_the_result(self) -> None:
        with pytest.raises(AlertValidationError, match=r"'users\.active' is not in the query's result"):
            evaluate_gate(gate(leaf("users.active")), FakeCube(self.OWN), now=UTC_NOON)


def test_anomaly_conditions_are_not_gate_operators() -> None:
    """A gate compares a value with a number; a band needs the KPI's own history (threshold alerts)."""
    with pytest.raises(
        AlertValidationError,
        match=r"\$.op: anomaly conditions \(OUTSIDE_EXPECTED_RANGE\) are for threshold alerts",
    ):
        parse_gating_condition({"measure": "orders.count", "op": "OUTSIDE_EXPECTED_RANGE", "value": 3})
    assert "OUTSIDE_EXPECTED_RANGE" not in json.dumps(gating_json_schema())
