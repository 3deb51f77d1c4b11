"""Benchmark of the report renderers: wall time and peak memory per case, each in a fresh process.

Run from the repo root::

    .venv/bin/python -m bench.bench_reports            # full table (CSV/XLSX 100k rows, PDF 1k rows)
    .venv/bin/python -m bench.bench_reports --quick    # 10x smaller, for a smoke run

Memory is the **peak RSS growth** of the render call: each case runs in its own subprocess, which
imports the libraries and builds the data first, resets the kernel's high-water mark
(``/proc/self/clear_refs``), renders, and reports ``VmHWM - VmRSS(before)``. RSS includes C
allocations (cairo/Pillow/Agg) that tracemalloc would miss. Where the reset is unavailable the
figure falls back to ``ru_maxrss`` and is marked with ``*``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from kpi_alerts.kpi_data import CellValue, Column, KpiData  # noqa: E402
from kpi_alerts.reports.context import ReportContext  # noqa: E402
from kpi_alerts.reports.model import build_report  # noqa: E402

TZ = "Europe/London"
COLUMNS = (
    Column("orders.created_at.hour", "Order Hour", "time_dimension", "time"),
    Column("orders.region", "Region", "dimension", "string"),
    Column("orders.revenue", "Revenue", "measure", "number", "currency"),
    Column("orders.count", "Orders", "measure", "count"),
)


def make_data(n: int) -> KpiData:
    start = datetime(2025, 1, 1, tzinfo=ZoneInfo(TZ))
    regions = ("EU", "US", "APAC", "LATAM", "Zürich", "=SUM(A1)")
    rows: tuple[dict[str, CellValue], ...] = tuple(
        {
            "orders.created_at.hour": start + timedelta(hours=i),
            "orders.region": regions[i % len(regions)],
            "orders.revenue": Decimal(i * 7919 % 100_000) / 100,
            "orders.count": Decimal(i % 500),
        }
        for i in range(n)
    )
    return KpiData(columns=COLUMNS, rows=rows, timezone=TZ)


def make_context() -> ReportContext:
    utc = ZoneInfo("UTC")
    return ReportContext(
        alert_name="Hourly revenue",
        organization_id=1,
        timezone=TZ,
        slot=datetime(2026, 4, 2, 8, tzinfo=utc),
        period="last 1000 hours",
        generated_at=datetime(2026, 4, 2, 8, 1, tzinfo=utc),
        kpi=COLUMNS[2],
        kpi_value=Decimal("1234.5"),
    )


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_case(case: str, rows: int) -> dict[str, object]:
    """Inside the child process: prepare, reset the RSS high-water mark, render, measure."""
    import resource

    import matplotlib
    import openpyxl  # noqa: F401
    import pandas as pd
    import reportlab  # noqa: F401

    matplotlib.use("Agg")
    from kpi_alerts.reports import render_csv, render_excel, render_pdf

    data = make_data(rows)
    out = Path(tempfile.mkdtemp()) / f"out.{case.split('_')[0]}"
    frame = None
    if case == "pandas_xlsx":  # the same cells, as pandas users would write them
        tz = ZoneInfo(TZ)
        frame = pd.DataFrame(
            {
                c.title: [
                    v.astimezone(tz).replace(tzinfo=None) if isinstance(v, datetime) else v
                    for v in (r.get(c.key) for r in data.rows)
                ]
                for c in data.columns
            }
        )
        out = out.with_suffix(".xlsx")
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        reset = False
    before = _status_kb("VmRSS") or 0
    t0 = time.perf_counter()
    if case == "csv":
        render_csv(build_report(data, make_context()), out)
    elif case == "xlsx":
        render_excel(build_report(data, make_context()), out)
    elif case == "pdf":
        render_pdf(build_report(data, make_context()), out)
    elif case == "pandas_xlsx":
        assert frame is not None
        frame.to_excel(out, index=False)
    else:
        raise SystemExit(f"unknown case {case}")
    wall = time.perf_counter() - t0
    peak = _status_kb("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reset = False
    return {
        "case": case,
        "rows": rows,
        "wall_s": wall,
        "peak_mb": max(peak - before, 0) / 1024,
        "exact_peak": reset,
        "bytes": out.stat().st_size,
    }


def spawn(case: str, rows: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_reports", "--child", case, str(rows)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10x fewer rows")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child[0], int(args.child[1]))))
        return
    big, pdf_rows = (10_000, 100) if args.quick else (100_000, 1_000)
    plan = [
        ("csv", big),
        ("xlsx", big // 10),
        ("xlsx", big),
        ("pandas_xlsx", big),
        ("pdf", pdf_rows),
    ]
    results = [spawn(case, rows) for case, rows in plan]
    print(f"{'case':<14}{'rows':>9}{'wall s':>9}{'peak RSS +MB':>14}{'file KB':>10}")
    for r in results:
        star = "" if r["exact_peak"] else "*"
        print(
            f"{r['case']:<14}{r['rows']:>9,}{r['wall_s']:>9.2f}{r['peak_mb']:>13.1f}{star:1}"
            f"{int(r['bytes']) / 1024:>10.0f}"  # type: ignore[call-overload]
        )
    xlsx = next(r for r in results if r["case"] == "xlsx" and r["rows"] == big)
    pandas = next(r for r in results if r["case"] == "pandas_xlsx")
    small = next(r for r in results if r["case"] == "xlsx" and r["rows"] == big // 10)
    print(
        f"\nXLSX / pandas.DataFrame.to_excel: time {float(xlsx['wall_s']) / float(pandas['wall_s']):.2f}x, "  # type: ignore[arg-type]
        f"peak memory {float(xlsx['peak_mb']) / max(float(pandas['peak_mb']), 0.1):.2f}x"  # type: ignore[arg-type]
    )
    print(
        f"XLSX peak RSS growth: {float(small['peak_mb']):.1f} MB at {big // 10:,} rows vs "  # type: ignore[arg-type]
        f"{float(xlsx['peak_mb']):.1f} MB at {big:,} rows"  # type: ignore[arg-type]
    )
    print("peak = RSS high-water growth during the render call, fresh process per case (libraries and")
    print("input rows loaded before the measurement).")
    print(
        f"reproduce: cd {ROOT} && .venv/bin/python -m bench.bench_reports{' --quick' if args.quick else ''}"
    )


if __name__ == "__main__":
    main()
