"""Decoding the JSON columns of a stored alert (``kpi_alerts.cube_query``, ``kpi_schedules.gating_condition``).

Rows may have been written by plain SQL, so the text is decoded here, per row, never by the database
driver for a whole result at once: valid ``jsonb`` nested 3,000 levels deep makes ``json.loads`` raise
``RecursionError``, and a value that decodes but nests deeper than any real query would make every later
step (validation, ``json.dumps`` for Cube, the gate's parser) recurse as deeply. A column that cannot be
used is reported as a *defect* (one readable line) instead of raising, so one bad row never stops the
listing of the others; :meth:`kpi_alerts.alerts.definition.AlertDefinition.validate` then fails that
alert's slot with the defect as its reason.
"""

from __future__ import annotations

import json
from typing import Any

#: Deeper than any Cube query or gate the product writes (gates: 5 levels; queries: a few), far below
#: Python's recursion limit.
MAX_JSON_DEPTH = 32
#: Larger than any column creation accepts (the query: 64 KB; a gate: 16 KB per leaf query).
MAX_JSON_CHARS = 1_048_576


class StoredJsonDefect(ValueError):
    """The column's text cannot be used; the message says why, in one line."""


def decode_stored_json(text: str | bytes | None, column: str) -> Any:
    """The decoded value of a JSON column read as text (``None`` for SQL NULL).

    :raises StoredJsonDefect: for text that is too large, not JSON, or nested too deeply.
    """
    if text is None:
        return None
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):  # already decoded by a driver that was not asked for text
        value: Any = text
    else:
        if len(text) > MAX_JSON_CHARS:
            raise StoredJsonDefect(f"{column} is {len(text):,} characters (at most {MAX_JSON_CHARS:,})")
        try:
            value = json.loads(text)
        except RecursionError:
            raise StoredJsonDefect(
                f"{column} is nested too deeply (at most {MAX_JSON_DEPTH} levels)"
            ) from None
        except ValueError as exc:
            raise StoredJsonDefect(f"{column} is not valid JSON: {str(exc)[:120]}") from None
    if json_depth(value, limit=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise StoredJsonDefect(f"{column} is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    return value


def json_depth(value: Any, *, limit: int) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``[]`` is 1), counting no further than ``limit + 1``;
    iterative, so hostile input cannot exhaust the stack."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        pending.extend((child, depth) for child in children)
    return deepest
