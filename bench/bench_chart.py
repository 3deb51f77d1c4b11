"""The KPI chart at e-mail speed: the candidates side by side, on the same 7-day series with a threshold.

Run from the repo root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_chart [--repeat 200]

Candidates for the e-mail's inline PNG (600x240) and the PDF's chart:

- ``matplotlib, constrained layout`` — the renderer before issue 11: a new ``Figure`` per chart,
  constrained layout, date auto-formatting (the "before" figure and the baseline of the ratios);
- ``matplotlib, tuned`` — one reused figure, fixed margins, no layout engine, artists updated in place;
- ``SVG + CairoSVG`` — the previous choice: the chart's SVG (``render_chart_svg``) rasterised by CairoSVG,
  which parses the SVG and draws it from Python;
- ``scene + cairo`` — the chart's scene (``chart_scene``: the layout both painters share) drawn directly
  with cairocffi: on ARGB32 or RGB24, written by cairo's ``write_to_png`` (libpng) or by our PNG encoder
  (RGB24, deflate level 3) — the last is the chosen ``render_chart_png``;
- ``SVG + resvg`` — the same SVG rasterised by resvg (``resvg-py``), when installed;
- the text alone: cairo's toy API (chosen) against pangocairo, the same runs at the same anchors.

The PNG candidates are measured uncached (``render_chart_png`` caches per chart: subscribers of one graph
share one image; the cache hit is shown too). Prints the CPU time (``time.process_time``: this machine
is shared, CPU is steadier than wall time) median / min / max over ``--repeat`` renders, the wall
median, the PNG size, and the ratio of the CPU median to the previous renderer's.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kpi_alerts.reports.chart import ChartData, chart_scene, render_chart_png, render_chart_svg
from kpi_alerts.reports.chart_scene import encode_png, paint_scene, scene_png

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


def svg_cairosvg() -> Callable[[], bytes]:
    import cairosvg

    def render() -> bytes:
        svg = render_chart_svg(CHART).encode()
        return bytes(cairosvg.svg2png(bytestring=svg, output_width=600, output_height=240, unsafe=False))

    return render


def scene_cairo(*, alpha: bool, ours: bool) -> Callable[[], bytes]:
    def render() -> bytes:
        surface = paint_scene(chart_scene(CHART), alpha=alpha)
        if ours:
            return encode_png(surface)
        out = io.BytesIO()
        surface.write_to_png(out)
        return out.getvalue()

    return render


def text_runs(painter: str) -> Callable[[], None] | None:
    """Only the chart's text runs on a blank surface: cairo's toy API (chosen: it is what CairoSVG
    draws with, so the painters' comparison is exact) or pangocairo (font fallback and shaping), through
    cffi in ABI mode — there is no pinned pango binding, this measures the library itself."""
    import cairocffi as cairo

    from kpi_alerts.reports.chart_scene import Text, _paint_text

    texts = [item for item in chart_scene(CHART).items if isinstance(item, Text)]
    if painter == "toy":
        faces = {bold: cairo.ToyFontFace("DejaVu Sans", 0, int(bold)) for bold in (False, True)}

        def toy() -> None:
            context = cairo.Context(cairo.ImageSurface(cairo.FORMAT_RGB24, 600, 240))
            for text in texts:
                _paint_text(context, text, faces)

        return toy
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(
        """typedef struct _PangoLayout PangoLayout; typedef struct _PangoFontDescription PangoFontDescription;
        PangoLayout *pango_cairo_create_layout(void *cr);
        void pango_layout_set_text(PangoLayout *layout, const char *text, int length);
        void pango_layout_set_font_description(PangoLayout *layout, const PangoFontDescription *desc);
        PangoFontDescription *pango_font_description_from_string(const char *str);
        void pango_layout_get_pixel_size(PangoLayout *layout, int *width, int *height);
        int pango_layout_get_baseline(PangoLayout *layout);
        void pango_cairo_show_layout(void *cr, PangoLayout *layout);
        void g_object_unref(void *object);"""
    )
    try:
        pangocairo, pango = ffi.dlopen("libpangocairo-1.0.so.0"), ffi.dlopen("libpango-1.0.so.0")
        gobject = ffi.dlopen("libgobject-2.0.so.0")
    except OSError:
        return None
    fonts = {
        (size, bold): pango.pango_font_description_from_string(
            f"DejaVu Sans {'Bold ' if bold else ''}{size:g}px".encode()
        )
        for size in {text.size for text in texts}
        for bold in (False, True)
    }
    width = ffi.new("int *")

    def with_pango() -> None:
        context = cairo.Context(cairo.ImageSurface(cairo.FORMAT_RGB24, 600, 240))
        pointer = context._pointer
        for text in texts:
            layouts = []
            for run in text.runs:
                layout = pangocairo.pango_cairo_create_layout(pointer)
                bold = text.bold if run.bold is None else run.bold
                pango.pango_layout_set_font_description(layout, fonts[text.size, bold])
                data = run.text.encode()
                pango.pango_layout_set_text(layout, data, len(data))
                pango.pango_layout_get_pixel_size(layout, width, ffi.NULL)
                layouts.append((layout, width[0]))
            total = sum(w for _, w in layouts)
            x = text.x - {"start": 0.0, "middle": total / 2, "end": float(total)}[text.anchor]
            for layout, w in layouts:
                context.move_to(x, text.y - pango.pango_layout_get_baseline(layout) / 1024)
                pangocairo.pango_cairo_show_layout(pointer, layout)
                gobject.g_object_unref(layout)
                x += w

    return with_pango


@dataclass
class Figures:
    cpu_median: float
    cpu_min: float
    cpu_max: float
    wall_median: float
    size: int


def measure(fn: Callable[[], Any], repeat: int) -> Figures:
    out = fn()  # warm-up: imports, font caches
    cpu, wall = [], []
    for _ in range(repeat):
        started_cpu, started = time.process_time(), time.perf_counter()
        out = fn()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    size = 0 if out is None else len(out.encode() if isinstance(out, str) else out)
    return Figures(statistics.median(cpu), min(cpu), max(cpu), statistics.median(wall), size)


def text_runs_of_chart() -> list[Any]:
    from kpi_alerts.reports.chart_scene import Text

    return [item for item in chart_scene(CHART).items if isinstance(item, Text)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    repeat_slow = max(5, args.repeat // 10)  # matplotlib takes ~40-230 ms a render
    png: list[tuple[str, Callable[[], Any] | None, int]] = [
        ("matplotlib, constrained layout (before)", matplotlib_constrained("png"), repeat_slow),
        ("matplotlib, tuned (reused figure)", matplotlib_tuned("png"), repeat_slow),
        ("SVG + CairoSVG (previous choice)", svg_cairosvg(), args.repeat),
        ("SVG + resvg-py", svg_resvg(), args.repeat),
        ("scene + cairo ARGB32, cairo write_to_png", scene_cairo(alpha=True, ours=False), args.repeat),
        ("scene + cairo RGB24, cairo write_to_png", scene_cairo(alpha=False, ours=False), args.repeat),
        ("scene + cairo RGB24, our encoder (chosen)", lambda: scene_png(chart_scene(CHART)), args.repeat),
        ("  the same at scale 2 (print, 1200x480)", lambda: scene_png(chart_scene(CHART), 2), args.repeat),
        ("  render_chart_png, cache hit", lambda: render_chart_png(CHART), args.repeat),
    ]
    text: list[tuple[str, Callable[[], Any] | None, int]] = [
        ("cairo toy API, show_text (chosen)", text_runs("toy"), args.repeat),
        ("pangocairo layouts", text_runs("pango"), args.repeat),
    ]
    pdf: list[tuple[str, Callable[[], Any] | None, int]] = [
        ("matplotlib SVG, constrained layout (before)", matplotlib_constrained("svg"), repeat_slow),
        ("matplotlib SVG, tuned (reused figure)", matplotlib_tuned("svg"), repeat_slow),
        ("SVG drawn directly (chosen)", lambda: render_chart_svg(CHART), args.repeat),
    ]
    sections = (
        ("inline e-mail PNG, 600x240", png),
        (f"the chart's text only ({len(text_runs_of_chart())} runs)", text),
        ("PDF chart (SVG)", pdf),
    )
    for title, cases in sections:
        print(f"\n{title}: CPU ms median (min-max), wall median, size; ratio of CPU medians to the first")
        baseline = None
        for name, fn, repeat in cases:
            if fn is None:
                print(f"  {name:<44} not installed")
                continue
            f = measure(fn, repeat)
            baseline = baseline or f.cpu_median
            print(
                f"  {name:<44} {f.cpu_median:7.2f} ({f.cpu_min:.2f}-{f.cpu_max:.2f}) x{repeat:<4}"
                f" wall {f.wall_median:7.2f}  {f.size / 1024:6.1f} KB  ratio {f.cpu_median / baseline:6.4f}"
            )
    print("\nTarget: <= 3 ms CPU median for the chosen PNG (issue 11: an alert's whole budget is ~15 ms).")
    print(f"Reproduce: PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_chart --repeat {args.repeat}")


if __name__ == "__main__":
    main()
