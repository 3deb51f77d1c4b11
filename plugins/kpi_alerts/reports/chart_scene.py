"""The chart as a scene of drawing primitives, and its painters: SVG text, a cairo PNG, PDF vectors.

:mod:`kpi_alerts.reports.chart` lays the chart out once, into a :class:`Scene` — rectangles, polylines,
circles and text runs in the 600x240 coordinate space, every position already decided (rounded to a
tenth of a pixel, as the SVG writes them). The painters only translate: :func:`scene_svg` writes the
SVG document (text stays text, user text escaped), :func:`scene_png` draws the same primitives with
cairo (cairocffi, the binding CairoSVG itself draws with) onto an image surface and encodes it as PNG,
:func:`paint_scene_pdf` draws them as vectors on a reportlab canvas (the PDF report). No painter makes a
layout decision, so they cannot drift apart; the chart tests render them and compare the pixels.

Text anchoring is the one thing a painter measures: SVG leaves ``text-anchor`` to the SVG renderer, cairo
computes it from the font's advance widths (``text_extents``), as an SVG renderer does. User text is plain
text for cairo (``show_text`` has no markup) and escaped in the SVG.
"""

from __future__ import annotations

import functools
import math
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

#: The font the SVG names first (and the only one cairo is asked for): Debian's fonts-dejavu-core.
FONT_FAMILY = "DejaVu Sans"
SVG_FONT = "DejaVu Sans, Verdana, sans-serif"
#: Defaults of the SVG root element; an item states only what differs.
DEFAULT_FONT_SIZE = 10.0


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    radius: float = 0.0


@dataclass(frozen=True, slots=True)
class Polyline:
    """An open path through ``points``; ``rounded`` joins and caps (data lines) or butt caps (rules)."""

    points: tuple[tuple[float, float], ...]
    stroke: str
    width: float = 1.0
    dash: tuple[float, ...] = ()
    rounded: bool = False


@dataclass(frozen=True, slots=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str


@dataclass(frozen=True, slots=True)
class Run:
    """A piece of a text line in one style (``None``: the line's style)."""

    text: str
    bold: bool | None = None
    color: str | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """A line of text on the baseline ``y``; ``anchor`` says whether ``x`` is its start, middle or end."""

    x: float
    y: float
    runs: tuple[Run, ...]
    color: str
    size: float = DEFAULT_FONT_SIZE
    bold: bool = False
    anchor: Literal["start", "middle", "end"] = "start"


Item = Rect | Polyline | Circle | Text


@dataclass(frozen=True, slots=True)
class Scene:
    """What to draw, in order, on a ``width`` x ``height`` canvas (the first item is the background)."""

    width: int
    height: int
    text_color: str
    items: tuple[Item, ...]


# --- SVG ---------------------------------------------------------------------------------------------


def _num(value: float) -> str:
    """``64`` / ``206.3``: a tenth of a pixel, no trailing ``.0``."""
    return f"{value:.1f}".removesuffix(".0")


def scene_svg(scene: Scene) -> str:
    """The scene as a standalone SVG document."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{scene.width}" height="{scene.height}" '
        f'viewBox="0 0 {scene.width} {scene.height}" font-family="{SVG_FONT}" '
        f'font-size="{_num(DEFAULT_FONT_SIZE)}" fill="{scene.text_color}">',
    ]
    for item in scene.items:
        if isinstance(item, Text):
            out.append(_svg_text(item, scene.text_color))
        elif isinstance(item, Polyline):
            out.append(_svg_polyline(item))
        elif isinstance(item, Circle):
            out.append(
                f'<circle cx="{_num(item.cx)}" cy="{_num(item.cy)}" r="{_num(item.r)}" fill="{item.fill}"/>'
            )
        else:
            position = f'x="{_num(item.x)}" y="{_num(item.y)}" ' if item.x or item.y else ""
            radius = f' rx="{_num(item.radius)}"' if item.radius else ""
            out.append(
                f'<rect {position}width="{_num(item.width)}" height="{_num(item.height)}"{radius} '
                f"fill={quoteattr(item.fill)}/>"
            )
    out.append("</svg>")
    return "".join(out)


def _svg_polyline(line: Polyline) -> str:
    style = f'stroke="{line.stroke}"'
    if line.width != 1:
        style += f' stroke-width="{_num(line.width)}"'
    if line.dash:
        style += f' stroke-dasharray="{" ".join(_num(d) for d in line.dash)}"'
    if len(line.points) == 2 and not line.rounded:
        (x1, y1), (x2, y2) = line.points
        return f'<line x1="{_num(x1)}" x2="{_num(x2)}" y1="{_num(y1)}" y2="{_num(y2)}" {style}/>'
    points = " ".join(f"{_num(x)},{_num(y)}" for x, y in line.points)
    if line.rounded:
        style += ' stroke-linejoin="round" stroke-linecap="round"'
    return f'<polyline points="{points}" fill="none" {style}/>'


def _svg_text(text: Text, default_color: str) -> str:
    attributes = f'x="{_num(text.x)}" y="{_num(text.y)}"'
    if text.size != DEFAULT_FONT_SIZE:
        attributes += f' font-size="{_num(text.size)}"'
    if text.bold:
        attributes += ' font-weight="bold"'
    if text.anchor != "start":
        attributes += f' text-anchor="{text.anchor}"'
    if text.color != default_color:
        attributes += f' fill="{text.color}"'
    body = []
    for run in text.runs:
        styled = ""
        if run.bold is not None and run.bold != text.bold:
            styled += f' font-weight="{"bold" if run.bold else "normal"}"'
        if run.color is not None and run.color != text.color:
            styled += f' fill="{run.color}"'
        body.append(f"<tspan{styled}>{escape(run.text)}</tspan>" if styled else escape(run.text))
    return f"<text {attributes}>{''.join(body)}</text>"


# --- PNG (cairo) ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _rgb(color: str) -> tuple[float, float, float]:
    """``#2563eb`` -> cairo's 0..1 channels."""
    value = int(color.removeprefix("#"), 16)
    return ((value >> 16) & 255) / 255, ((value >> 8) & 255) / 255, (value & 255) / 255


def scene_png(scene: Scene, scale: int = 1) -> bytes:
    """The scene rasterised with cairo at ``scale`` times its size (antialiased), as PNG bytes."""
    surface = paint_scene(scene, scale)
    try:
        return encode_png(surface)
    finally:
        surface.finish()


#: Deflate level of the PNG: 3 is as fast as 1 on a chart (mostly white) and a little smaller; 6 (libpng's
#: default) costs twice the time for 15 % fewer bytes.
PNG_DEFLATE_LEVEL = 3


def encode_png(surface: Any) -> bytes:
    """An RGB24 cairo surface as an 8-bit RGB PNG (no filter, deflate :data:`PNG_DEFLATE_LEVEL`).

    cairo's own ``write_to_png`` goes through libpng's adaptive filtering and level-6 deflate: ~2.5 ms of
    the ~3 ms a chart costs. Writing the three chunks here takes well under 1 ms for the same pixels (the
    chart tests decode both and compare them). An RGB24 pixel is a native-endian ``0x00RRGGBB`` word;
    numpy reorders the channels and prefixes each row's filter byte in one pass.
    """
    import numpy as np

    surface.flush()
    width, height, stride = surface.get_width(), surface.get_height(), surface.get_stride()
    rows = np.frombuffer(surface.get_data(), dtype=np.uint8).reshape(height, stride)
    pixels = rows[:, : 4 * width].reshape(height, width, 4)
    red, green, blue = (2, 1, 0) if sys.byteorder == "little" else (1, 2, 3)
    scanlines = np.empty((height, 1 + 3 * width), dtype=np.uint8)  # each row: filter byte 0, then RGB
    scanlines[:, 0] = 0
    rgb = scanlines[:, 1:].reshape(height, width, 3)  # a view: a row's bytes after its filter byte
    rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2] = pixels[:, :, red], pixels[:, :, green], pixels[:, :, blue]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), PNG_DEFLATE_LEVEL)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def paint_scene(scene: Scene, scale: int = 1, *, alpha: bool = False) -> Any:
    """The scene drawn on a new cairo image surface ``scale`` times its size, antialiased.

    The surface is RGB24: the chart is opaque (its first item is the white background), so the PNG has
    three channels, not four. ``alpha`` draws on ARGB32 instead (``bench/bench_chart.py`` compares them).
    """
    import cairocffi as cairo

    surface_format = cairo.FORMAT_ARGB32 if alpha else cairo.FORMAT_RGB24
    surface = cairo.ImageSurface(surface_format, scene.width * scale, scene.height * scale)
    context = cairo.Context(surface)
    context.scale(scale, scale)
    context.set_antialias(cairo.ANTIALIAS_DEFAULT)
    faces = {
        bold: cairo.ToyFontFace(FONT_FAMILY, cairo.FONT_SLANT_NORMAL, cairo.FONT_WEIGHT_BOLD if bold else 0)
        for bold in (False, True)
    }
    for item in scene.items:
        if isinstance(item, Text):
            _paint_text(context, item, faces)
        elif isinstance(item, Polyline):
            context.set_line_width(item.width)
            context.set_dash(item.dash)
            rounded = item.rounded
            context.set_line_cap(cairo.LINE_CAP_ROUND if rounded else cairo.LINE_CAP_BUTT)
            context.set_line_join(cairo.LINE_JOIN_ROUND if rounded else cairo.LINE_JOIN_MITER)
            context.move_to(*item.points[0])
            for point in item.points[1:]:
                context.line_to(*point)
            context.set_source_rgb(*_rgb(item.stroke))
            context.stroke()
        elif isinstance(item, Circle):
            context.new_sub_path()
            context.arc(item.cx, item.cy, item.r, 0, 2 * math.pi)
            context.set_source_rgb(*_rgb(item.fill))
            context.fill()
        else:
            _rect_path(context, item)
            context.set_source_rgb(*_rgb(item.fill))
            context.fill()
    return surface


def _rect_path(ctx: Any, rect: Rect) -> None:
    r = min(rect.radius, rect.width / 2, rect.height / 2)
    if r <= 0:
        ctx.rectangle(rect.x, rect.y, rect.width, rect.height)
        return
    x0, y0, x1, y1 = rect.x, rect.y, rect.x + rect.width, rect.y + rect.height
    ctx.new_sub_path()
    ctx.arc(x1 - r, y0 + r, r, -math.pi / 2, 0)
    ctx.arc(x1 - r, y1 - r, r, 0, math.pi / 2)
    ctx.arc(x0 + r, y1 - r, r, math.pi / 2, math.pi)
    ctx.arc(x0 + r, y0 + r, r, math.pi, 3 * math.pi / 2)
    ctx.close_path()


def _paint_text(ctx: Any, text: Text, faces: dict[bool, Any]) -> None:
    """Runs one after the other from the anchored start (cairo's current point advances per run)."""
    ctx.set_font_size(text.size)
    runs = [
        (run.text, text.bold if run.bold is None else run.bold, run.color or text.color) for run in text.runs
    ]
    x = text.x
    if text.anchor != "start":
        width = 0.0
        for content, bold, _ in runs:
            ctx.set_font_face(faces[bold])
            width += ctx.text_extents(content)[4]  # x_advance
        x -= width if text.anchor == "end" else width / 2
    ctx.move_to(x, text.y)
    for content, bold, color in runs:
        ctx.set_font_face(faces[bold])
        ctx.set_source_rgb(*_rgb(color))
        ctx.show_text(content)


# --- PDF (reportlab vectors) ---------------------------------------------------------------------------


def paint_scene_pdf(scene: Scene, canvas: Any, scale: float, fonts: tuple[str, str]) -> None:
    """The scene drawn as PDF vectors on a reportlab ``canvas``, ``scale`` PDF points per scene pixel, its
    top-left corner at the canvas origin's current ``(0, scene.height * scale)``.

    Vectors instead of an embedded PNG: sharp at any zoom, text selectable, and ~1 ms instead of ~13 ms
    (drawing a 1200x480 PNG, then reportlab decoding and recompressing it). ``fonts`` are the registered
    reportlab names of the regular and bold face (DejaVu Sans, the font the other painters use); anchors
    are measured with ``stringWidth``, the same advance widths the PDF viewer uses.
    """
    from reportlab.pdfbase.pdfmetrics import stringWidth

    canvas.saveState()
    canvas.translate(0, scene.height * scale)
    canvas.scale(scale, scale)  # scene y grows downwards: a point (x, y) is drawn at (x, -y)
    for item in scene.items:
        if isinstance(item, Text):
            runs = [
                (run.text, fonts[item.bold if run.bold is None else run.bold], run.color or item.color)
                for run in item.runs
            ]
            widths = [stringWidth(content, font, item.size) for content, font, _ in runs]
            x = item.x
            if item.anchor != "start":
                x -= sum(widths) if item.anchor == "end" else sum(widths) / 2
            for (content, font, color), advance in zip(runs, widths, strict=True):
                canvas.setFont(font, item.size)
                canvas.setFillColorRGB(*_rgb(color))
                canvas.drawString(x, -item.y, content)  # plain text: drawString parses no markup
                x += advance
        elif isinstance(item, Polyline):
            canvas.setLineWidth(item.width)
            canvas.setDash(list(item.dash) if item.dash else [], 0)
            canvas.setLineCap(1 if item.rounded else 0)  # round / butt
            canvas.setLineJoin(1 if item.rounded else 0)  # round / miter
            canvas.setStrokeColorRGB(*_rgb(item.stroke))
            path = canvas.beginPath()
            path.moveTo(item.points[0][0], -item.points[0][1])
            for x, y in item.points[1:]:
                path.lineTo(x, -y)
            canvas.drawPath(path, stroke=1, fill=0)
        elif isinstance(item, Circle):
            canvas.setFillColorRGB(*_rgb(item.fill))
            canvas.circle(item.cx, -item.cy, item.r, stroke=0, fill=1)
        elif item.width > 0 and item.height > 0:  # a zero bar is nothing (PDF viewers would draw a hairline)
            canvas.setFillColorRGB(*_rgb(item.fill))
            bottom = -(item.y + item.height)
            radius = min(item.radius, item.width / 2, item.height / 2)
            if radius > 0:
                canvas.roundRect(item.x, bottom, item.width, item.height, radius, stroke=0, fill=1)
            else:
                canvas.rect(item.x, bottom, item.width, item.height, stroke=0, fill=1)
    canvas.restoreState()
