"""Issue 23 item 7: a full outbox disk (development mode writes each message as an ``.eml`` file), through
the real DAG, PostgreSQL and Cube.js, on a real filesystem that is full: a 256 KB tmpfs mounted for the
test (the machines run as root) and filled up but for 1 KB.

Before: the slot was recorded ``delivery_unknown`` (an operator had to replay it) although the write
certainly failed, and a truncated ``.eml`` and two empty ones were left behind. Now the write goes to a
temporary file renamed when complete, and a failed write is transient: the slot is retried, and sent
once space is freed, inside its misfire window; nothing half-written stays.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fault_table import FaultTable
from tests.faults.conftest import LOGICAL_TIME, due_report, ledger

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.services]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` but for ``leave`` bytes (a tmpfs counts whole pages: what is left is about that)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        chunk = b"\0" * 4096
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
    filler.write_bytes(b"\0" * (filler.stat().st_size - leave))
    return filler


def test_a_full_outbox_is_retried_and_written_once_there_is_room(
    fast_retries: Any,
    db: psycopg.Connection[Any],
    airflow_connections: dict[str, str],
    small_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault_table: FaultTable,
) -> None:
    outbox = small_disk / "outbox"
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_ENVIRONMENT", "development")
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_OUTBOX_DIR", str(outbox))
    due_report(
        db,
        "Daily revenue",
        ["cfo@org1.example.com"],
    )
    outbox.mkdir()
    filler = fill(small_disk, leave=1024)

    first = fast_retries.test(logical_date=LOGICAL_TIME)
    (row,) = ledger(db)
    assert row["status"] == "retrying", row["error"]
    assert "No space left on device" in row["error"] and "nothing was delivered" in row["error"]
    assert list(outbox.iterdir()) == []  # no truncated, empty or temporary file left behind

    filler.unlink()  # room again
    later = fast_retries.test(logical_date=LOGICAL_TIME + timedelta(minutes=5))
    (row,) = ledger(db)
    written = sorted(p.name for p in outbox.iterdir())
    fault_table.record(
        fault="development outbox on a full disk, then space freed",
        alerts=1,
        messages=len(written),
        duplicates=max(0, len(written) - 1),
        lost=0 if row["status"] == "sent" else 1,
        run_state=f"{first.state} → {later.state}",
    )
    assert row["status"] == "sent" and row["delivery"] == "outbox"
    assert len(written) == 1 and written[0].endswith(".eml")
    assert b"Subject: [KPI report] Daily revenue" in (outbox / written[0]).read_bytes()
    assert (str(first.state), str(later.state)) == ("failed", "success")
