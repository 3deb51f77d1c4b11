"""The fault suite's table: each ``faults`` test records one row, printed at the end of the session.

A fault test injects one fault (a bad row, a dropped SMTP connection, a killed DB backend, ...) into a
real run and records what came out of it::

    pytestmark = pytest.mark.faults

    def test_smtp_drops_after_data(fault_table, ...):
        ...
        fault_table.record(
            fault="SMTP drops the connection after DATA",
            alerts=2,          # alerts due in the scenario
            messages=2,        # copies received, counted per recipient (duplicates included)
            duplicates=0,      # copies beyond the first per (recipient, report): see duplicates()
            lost=0,            # due slots neither delivered nor recorded with a reason (or to be retried)
            run_state="failed",  # the DAG run's (or the runs', "failed → success") state, as Airflow shows it
        )

``make faults`` runs only these tests (``pytest -m faults``); ``make test`` runs them with the rest. The
table is printed in pytest's terminal summary and written to ``.artifacts/fault-table.md`` (the figures
the README quotes). Only tests marked ``faults`` may record a row, so ``make faults`` shows every row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

TABLE_FILE = Path(__file__).resolve().parent.parent / ".artifacts" / "fault-table.md"


@dataclass(frozen=True)
class FaultRow:
    fault: str
    alerts: int
    messages: int
    duplicates: int
    lost: int
    run_state: str


class FaultTable:
    def __init__(self) -> None:
        self.rows: list[FaultRow] = []

    def record(
        self, *, fault: str, alerts: int, messages: int, duplicates: int, lost: int, run_state: str
    ) -> FaultRow:
        row = FaultRow(fault, alerts, messages, duplicates, lost, run_state)
        self.rows.append(row)
        return row

    def render(self) -> str:
        header = ("fault", "alerts", "messages", "duplicates", "lost slots", "run state")
        cells = [header, *[tuple(str(v) for v in astuple(row)) for row in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

        def line(row: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(header), rule, *(line(row) for row in cells[1:])])


_TABLE = FaultTable()


def deliveries(messages: Iterable[EmailMessage]) -> Counter[tuple[str, str]]:
    """How many copies each (envelope recipient, Subject) received — a copy beyond the first is a duplicate."""
    counts: Counter[tuple[str, str]] = Counter()
    for message in messages:
        for rcpt in str(message.get("X-Envelope-To", "")).split(","):
            if rcpt.strip():
                counts[(rcpt.strip(), str(message["Subject"]))] += 1
    return counts


def duplicates(messages: Iterable[EmailMessage]) -> int:
    return sum(n - 1 for n in deliveries(messages).values())


@pytest.fixture
def fault_table(request: pytest.FixtureRequest) -> FaultTable:
    """The session's fault table (see the module docstring); only for tests marked ``faults``."""
    if request.node.get_closest_marker("faults") is None:
        pytest.fail("fault_table is for tests marked @pytest.mark.faults (so `make faults` shows the row)")
    return _TABLE


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TABLE.rows:
        return
    table = _TABLE.render()
    terminalreporter.write_sep("=", "fault suite (issue 9)")
    terminalreporter.write_line(table)
    TABLE_FILE.parent.mkdir(parents=True, exist_ok=True)
    TABLE_FILE.write_text(table + "\n")
    terminalreporter.write_line(f"(also written to {TABLE_FILE.relative_to(TABLE_FILE.parent.parent)})")
