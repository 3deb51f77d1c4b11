"""The KPI chart at e-mail speed: the candidates side by side, on the same 7-day series with a threshold.

Run from the repo root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_chart [--repeat 60]

Candidates for the e-mail's inline PNG (600x240) and the PDF's chart:

- ``matplotlib, constrained layout`` — the previous renderer: a new ``Figure`` per chart, constrained
  layout, date auto-formatting (the "before" figure and the baseline of the ratios);
- ``matplotlib, tuned`` — one reused figure, fixed margins, no layout engine, artists updated in place;
- ``SVG + CairoSVG`` — the chosen path: the chart drawn as SVG by ``kpi_alerts.reports.chart``
  (the PDF embeds it as is) and rasterised by CairoSVG for the e-mail;
- ``SVG + resvg`` — the same SVG rasterised by resvg (``resvg-py``), when installed.

Prints the median and p90 of each, the PNG size, and the ratio to the previous renderer.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kpi_alerts.reports.chart import ChartData, render_chart_png, render_chart_svg

DAYS: Any = [datetime(2026, 11, 1) + timedelta(days=i) for i in range(7)]  # matplotlib converts dates
VALUES = [41112.0, 38000.5, 29000.0, 31000.0, 35500.0, 40100.0, 37000.0]
PREVIOUS = [39000.0, 36000.0, 30000.0, 30500.0, 34000.0, 38000.0, 35500.0]
THRESHOLD = 35000.0
CHART = ChartData(
    title="Revenue",
    x_labels=[d.strftime("%b %-d") for d in DAYS],
    values=VALUES,
    previous_values=PREVIOUS,
    threshold=THRESHOLD,
    value_label="USD",
)


def matplotlib_constrained(fmt: str) -> Callable[[], bytes]:
    """The renderer before issue 11 (new figure, constrained layout, date auto-formatting)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def render() -> bytes:
        fig = Figure(figsize=(6.0, 2.4), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.plot(DAYS, VALUES, color="#2563eb", linewidth=1.8, marker="o", markersize=3)
        ax.plot(DAYS, PREVIOUS, color="#9ca3af", linewidth=1.2)
        ax.axhline(THRESHOLD, color="#dc2626", linestyle="--", linewidth=1)
        fig.autofmt_xdate(rotation=30, ha="right")
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", color="#e5e7eb", linewidth=0.8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=100)
        return buf.getvalue()

    return render


def matplotlib_tuned(fmt: str) -> Callable[[], bytes]:
    """One figure reused for every chart, fixed margins, no layout engine, artists updated in place."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 2.4), dpi=100)
    fig.subplots_adjust(left=0.11, right=0.97, top=0.88, bottom=0.14)
    ax = fig.add_subplot()
    xs = list(range(len(VALUES)))
    (line,) = ax.plot(xs, VALUES, color="#2563eb", linewidth=1.8, marker="o", markersize=3)
    (previous,) = ax.plot(xs, PREVIOUS, color="#9ca3af", linewidth=1.2)
    limit = ax.axhline(THRESHOLD, color="#dc2626", linestyle="--", linewidth=1)
    ax.set_xticks(xs, CHART.x_labels)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    def render() -> bytes:
        line.set_data(xs, VALUES)
        previous.set_data(xs, PREVIOUS)
        limit.set_ydata([THRESHOLD, THRESHOLD])
        ax.set_ylim(0, 50000)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=100)
        return buf.getvalue()

    return render


def svg_resvg() -> Callable[[], bytes] | None:
    try:
        import resvg_py
    except ImportError:
        return None
    font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

    def render() -> bytes:
        svg = render_chart_svg(CHART)
        return bytes(resvg_py.svg_to_bytes(svg_string=svg, skip_system_fonts=True, font_files=[font]))

    return render


def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, float, int]:
    out = fn()  # warm-up: imports, font caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    size = len(out.encode() if isinstance(out, str) else out)
    return statistics.median(times), times[int(len(times) * 0.9) - 1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=60)
    args = parser.parse_args()
    png: list[tuple[str, Callable[[], Any] | None]] = [
        ("matplotlib, constrained layout (before)", matplotlib_constrained("png")),
        ("matplotlib, tuned (reused figure)", matplotlib_tuned("png")),
        ("SVG + CairoSVG (chosen)", lambda: render_chart_png(CHART)),
        ("SVG + resvg-py", svg_resvg()),
    ]
    pdf: list[tuple[str, Callable[[], Any] | None]] = [
        ("matplotlib SVG, constrained layout (before)", matplotlib_constrained("svg")),
        ("matplotlib SVG, tuned (reused figure)", matplotlib_tuned("svg")),
        ("SVG drawn directly (chosen)", lambda: render_chart_svg(CHART)),
    ]
    for title, cases in (("inline e-mail PNG, 600x240", png), ("PDF chart (SVG)", pdf)):
        print(f"\n{title}: median / p90 over {args.repeat} renders")
        baseline = None
        for name, fn in cases:
            if fn is None:
                print(f"  {name:<46} not installed")
                continue
            median, p90, size = measure(fn, args.repeat)
            baseline = baseline or median
            print(
                f"  {name:<46} {median:8.2f} ms  p90 {p90:8.2f} ms  {size / 1024:6.1f} KB"
                f"  ratio {median / baseline:5.3f}"
            )
    print("\nTarget: median <= 10 ms for each chosen path. Machine load varies: compare the ratios.")
    print("Reproduce: PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_chart --repeat 60")


if __name__ == "__main__":
    main()
