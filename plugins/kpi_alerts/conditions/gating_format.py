"""Gating conditions: the JSON in ``kpi_schedules.gating_condition`` that decides if a report goes out.

The pydantic models below are the single source of truth for the format: parsing, the JSON
Schema and the documentation's examples all come from them. A gate is a tree of leaves
(``{"measure": "orders.total_amount", "op": ">", "value": 10000}``) under ``all`` / ``any`` /
``not``; :mod:`kpi_alerts.conditions.gating_evaluation` evaluates it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    RootModel,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from kpi_alerts.conditions.thresholds import (
    ANOMALY_CONDITIONS,
    OPERATOR_SYMBOLS,
    PERCENT_CONDITIONS,
    ThresholdCondition,
    parse_condition,
)
from kpi_alerts.errors import AlertValidationError

MAX_DEPTH = 5
MAX_LEAVES = 20
_MAX_JSON_CHARS = 65_536
_MAX_RAW_NESTING = 32
_MAX_RAW_NODES = 5_000
_NUMERIC_TEXT = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_SHAPES = '{"measure", "op", "value"} or {"all": [...]}, {"any": [...]}, {"not": {...}}'
#: Pydantic error types reworded for people writing gates.
_MESSAGES = {
    "missing": "this required key is missing",
    "extra_forbidden": f"unknown key; a condition is {_SHAPES}",
    "union_tag_not_found": f"must be a condition object: {_SHAPES}",
    "model_type": f"must be a condition object: {_SHAPES}",
    "string_pattern_mismatch": 'must be a Cube member name such as "orders.total_amount"',
    "too_short": "must list at least one condition",
}


def _operator(raw: object) -> ThresholdCondition:
    if isinstance(raw, ThresholdCondition):
        return raw
    try:
        condition = parse_condition(raw)
    except AlertValidationError as exc:
        raise ValueError(str(exc)) from None
    if condition in ANOMALY_CONDITIONS:  # a gate compares values; a band needs the KPI's own history
        raise ValueError(f"anomaly conditions ({condition}) are for threshold alerts, not gating conditions")
    return condition


def operator_json(condition: ThresholdCondition) -> str:
    return OPERATOR_SYMBOLS.get(condition, condition.value)


def _finite_number(raw: object) -> Decimal:
    """Numbers and numeric strings; never bools (JSON ``true`` is not 1), NaN or infinities.

    Magnitudes stay within 1e-30..1e30 and 50 digits, so arithmetic and display stay cheap.
    """
    number: Decimal | None = None
    if isinstance(raw, Decimal | int) and not isinstance(raw, bool):
        number = Decimal(raw)
    elif isinstance(raw, float):
        number = Decimal(repr(raw))  # 0.1 stays 0.1, not the binary 0.1000000000000000055...
    elif isinstance(raw, str) and len(raw) <= 100 and re.fullmatch(_NUMERIC_TEXT, raw):
        number = Decimal(raw.strip())
    if number is None or not number.is_finite():
        raise ValueError(f"must be a finite number, not {_short(raw)}")
    if number.is_zero():
        return Decimal(0)
    if not -30 <= number.adjusted() < 30 or len(number.as_tuple().digits) > 50:
        raise ValueError("must be between 1e-30 and 1e30 in magnitude, with at most 50 digits")
    return number


def _number_json(number: Decimal) -> int | float | str:
    """The JSON number that reads back as exactly ``number`` (a numeric string if no float is exact)."""
    if number == number.to_integral_value():
        return int(number)
    as_float = float(number)
    return as_float if Decimal(repr(as_float)) == number else str(number)


Operator = Annotated[
    ThresholdCondition,
    PlainValidator(_operator),
    PlainSerializer(operator_json, when_used="json"),
    WithJsonSchema(
        {
            "enum": [
                *OPERATOR_SYMBOLS.values(),
                *(c for c in ThresholdCondition if c not in ANOMALY_CONDITIONS),
            ]
        }
    ),
]
Number = Annotated[
    Decimal,
    PlainValidator(_finite_number),
    PlainSerializer(_number_json, when_used="json"),
    WithJsonSchema({"oneOf": [{"type": "number"}, {"type": "string", "pattern": _NUMERIC_TEXT}]}),
]
MemberName = Annotated[str, Field(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$", max_length=200)]


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=False)


class GateLeaf(_Node):
    """One comparison of a measure's KPI value with a number.

    :param measure: a measure of the alert's query, or of ``query`` when given.
    :param query: an own small Cube query (e.g. ``dateRange: "yesterday"``) instead of the alert's.
    :param aggregate: ``latest`` = the KPI rule (latest complete period); ``total`` = sum of all rows.
    """

    measure: MemberName
    op: Operator
    value: Number
    query: dict[str, Any] | None = None
    aggregate: Literal["latest", "total"] = "latest"

    @field_validator("query", mode="before")
    @classmethod
    def _query_is_json(cls, query: object) -> object:
        if query is None:
            return None
        if not isinstance(query, dict):
            raise ValueError("must be a Cube query object")
        try:
            size = len(json.dumps(query, allow_nan=False))
        except (TypeError, ValueError, RecursionError, OverflowError):
            raise ValueError("must be plain JSON (no NaN, infinities or other values)") from None
        measures = query.get("measures")
        if size > 16_384:
            raise ValueError("is too large (16 KB at most)")
        if not isinstance(measures, list) or not measures or not all(isinstance(m, str) for m in measures):
            raise ValueError('must have "measures": a non-empty list of member names')
        return query

    @model_validator(mode="after")
    def _consistent(self) -> GateLeaf:
        if self.query is not None and self.measure not in self.query["measures"]:
            raise ValueError(f"measure {self.measure!r} is not one of the query's measures")
        if self.aggregate == "total" and self.op in PERCENT_CONDITIONS:
            raise ValueError('a percent change needs a previous period: use "aggregate": "latest"')
        return self


class AllOf(_Node):
    """Passes when every condition passes."""

    conditions: list[GateNode] = Field(alias="all", min_length=1)


class AnyOf(_Node):
    """Passes when at least one condition passes."""

    conditions: list[GateNode] = Field(alias="any", min_length=1)


class NotOf(_Node):
    """Passes when its condition fails (but not when it has no data)."""

    condition: GateNode = Field(alias="not")


_TAGS = {GateLeaf: "<leaf>", AllOf: "<all>", AnyOf: "<any>", NotOf: "<not>"}


def _node_kind(raw: object) -> str | None:
    """Tell the node kind by its keys, so errors speak of the shape the user meant."""
    if isinstance(raw, dict):
        return next((f"<{key}>" for key in ("all", "any", "not") if key in raw), "<leaf>")
    return _TAGS.get(type(raw))  # type: ignore[call-overload]


GateNode = Annotated[
    Annotated[GateLeaf, Tag("<leaf>")]
    | Annotated[AllOf, Tag("<all>")]
    | Annotated[AnyOf, Tag("<any>")]
    | Annotated[NotOf, Tag("<not>")],
    Discriminator(_node_kind),
]


class GatingCondition(RootModel[GateNode]):
    """A whole gate, at most :data:`MAX_DEPTH` levels deep with at most :data:`MAX_LEAVES` leaves."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _bounded(self) -> GatingCondition:
        depth, leaves = _shape(self.root)
        if depth > MAX_DEPTH:
            raise ValueError(f"nests {depth} levels deep; at most {MAX_DEPTH} are allowed")
        if leaves > MAX_LEAVES:
            raise ValueError(f"has {leaves} comparisons; at most {MAX_LEAVES} are allowed")
        return self

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON to store: defaults left out, canonical operators, exact numbers."""
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return dumped

    def leaves(self) -> list[GateLeaf]:
        """Every comparison, left to right."""
        found: list[GateLeaf] = []
        pending: list[GateNode] = [self.root]
        while pending:
            node = pending.pop()
            if isinstance(node, GateLeaf):
                found.append(node)
            else:
                pending.extend(reversed(node.conditions) if not isinstance(node, NotOf) else [node.condition])
        return found


def _shape(node: GateNode) -> tuple[int, int]:
    """(depth, leaf count) of a tree; a lone leaf has depth 1."""
    if isinstance(node, GateLeaf):
        return 1, 1
    children = [node.condition] if isinstance(node, NotOf) else node.conditions
    shapes = [_shape(child) for child in children]
    return 1 + max(depth for depth, _ in shapes), sum(leaves for _, leaves in shapes)


for _model in (AllOf, AnyOf, NotOf, GatingCondition):
    _model.model_rebuild()


def gating_json_schema() -> dict[str, Any]:
    """JSON Schema of ``kpi_schedules.gating_condition`` (null means "always send")."""
    schema = GatingCondition.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gating condition"
    schema["oneOf"].append({"type": "null", "description": "no gate: the report is always sent"})
    return schema


def parse_gating_condition(raw: Any) -> GatingCondition | None:
    """Read a stored gate: a dict, a JSON string or bytes; ``None``, ``""``, ``null``, ``{}`` → ungated.

    :raises AlertValidationError: for anything else, with one sentence naming the JSON path.
    """
    if isinstance(raw, GatingCondition):
        return raw
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AlertValidationError("gating condition is not UTF-8 text") from None
    if isinstance(raw, str):
        if len(raw) > _MAX_JSON_CHARS:
            raise AlertValidationError(f"gating condition is longer than {_MAX_JSON_CHARS} characters")
        if not raw.strip():
            return None
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise AlertValidationError(f"gating condition is not valid JSON: {str(exc)[:80]}") from None
    if raw is None or (isinstance(raw, Mapping) and not raw):
        return None
    if not isinstance(raw, Mapping):
        raise AlertValidationError(f"gating condition must be a JSON object ({_SHAPES}), not {_short(raw)}")
    raw = dict(raw)
    _check_size(raw)
    try:
        return GatingCondition.model_validate(raw)
    except ValidationError as exc:
        raise AlertValidationError(_explain(exc)) from None


def check_gate_measures(condition: GatingCondition, alert_query: Mapping[str, Any]) -> None:
    """Refuse leaves without an own query whose measure the alert's query does not select.

    :raises AlertValidationError: naming the measure, at alert creation rather than at send time.
    """
    measures = alert_query.get("measures") or []
    for leaf in condition.leaves():
        if leaf.query is None and leaf.measure not in measures:
            raise AlertValidationError(
                f"gating condition uses {leaf.measure!r}, which the alert's query does not select "
                f"(measures: {', '.join(map(str, measures)) or 'none'}); add it or give the leaf a query"
            )


def _check_size(raw: object) -> None:
    """Bound nesting and size before pydantic and ``json`` recurse into hostile input."""
    pending: list[tuple[object, int]] = [(raw, 1)]
    seen = 0
    while pending:
        value, depth = pending.pop()
        seen += 1
        if depth > _MAX_RAW_NESTING or seen > _MAX_RAW_NODES:
            raise AlertValidationError("gating condition is nested too deeply or is too large")
        if isinstance(value, Mapping):
            pending.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list | tuple):
            pending.extend((child, depth + 1) for child in value)


def _explain(error: ValidationError) -> str:
    """Pydantic's error list as one sentence: the first problem with its JSON path."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    first = problems[0]
    path = "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}"
        for part in first["loc"]
        if part not in _TAGS.values() and part != "[key]"
    )
    message = first["msg"].removeprefix("Value error, ")
    message = _MESSAGES.get(first["type"]) or message[:1].lower() + message[1:]
    others = len(problems) - 1
    more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
    return f"invalid gating condition at {path}: {message}{more}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
