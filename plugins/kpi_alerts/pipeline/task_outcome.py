"""What one map item's task instance shows in the Airflow UI, decided from how its alerts ended.

- Every alert ended without sending and without failing — ``gated``, ``not_triggered``,
  ``suppressed``, ``waiting`` (for fresh data), or not processed (``skipped``: paused, not due, already finished) — the task
  instance is **skipped**, not a green success indistinguishable from a sent report.
- Any alert failed: **failed**, and the log's verdict is one line with the reasons (the failures are
  recorded in the ledger already: no stack trace is needed to explain them).
- A batch (several alerts in one item) says how its alerts ended in its label and log line.

Plain Python (no Airflow): the operator maps :attr:`ItemVerdict.state` to Airflow's exceptions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# nothing sent, nothing failed (``waiting``: a report waiting for fresh data; a later tick sends it)
QUIET = frozenset({"gated", "not_triggered", "suppressed", "skipped", "waiting"})
MAX_LINE = 2000


@dataclass(frozen=True)
class ItemVerdict:
    state: Literal["success", "skipped", "failed", "retry"]
    headline: str  # one line: the log's verdict, and the exception's message when the state is not success
    label: str  # the map item's label (rendered map index)


def one_line(text: str, limit: int = MAX_LINE) -> str:
    flat = " | ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def judge_item(
    label: str,
    alerts: int,
    results: Sequence[Mapping[str, Any]],
    failures: Sequence[str],
    *,
    transient: bool = False,
) -> ItemVerdict:
    """:param alerts: how many alerts the item held; :param results: the finished ones (``AlertRun.as_dict``);
    :param failures: one reason per failed alert; :param transient: a failure Airflow's retry may cure."""
    counts = Counter(str(r["status"]) for r in results)
    if failures:
        counts["failed"] += len(failures)
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    batch = alerts > 1
    new_label = f"{label}: {tally}"[:250] if batch and tally else label
    if failures:
        retry = " (Airflow retries the transient ones)" if transient else ""
        if batch:
            headline = one_line(f"{len(failures)} of {alerts} alerts failed{retry}: " + "; ".join(failures))
        else:  # the alert's own reason, e.g. "alert 7 (Weekly revenue) failed: Cube.js refused the query: …"
            headline = one_line(failures[0] + retry)
        return ItemVerdict("retry" if transient else "failed", headline, new_label)
    if results and all(str(r["status"]) in QUIET for r in results):
        reasons = "; ".join(
            f"alert {r['alert_id']} {r['status']}: {r.get('detail') or ''}".strip() for r in results
        )
        return ItemVerdict("skipped", one_line(f"nothing to send ({tally}) — {reasons}"), new_label)
    return ItemVerdict("success", one_line(tally or "nothing to do"), new_label)
