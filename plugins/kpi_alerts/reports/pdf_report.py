"""PDF report laid out by reportlab's platypus: title, headline, chart, the table, page furniture.

Why reportlab: the whole PDF of a typical report costs ~7 ms of CPU (the chart drawn as vectors),
against ~67 ms for the WeasyPrint HTML layout it replaces (as much even tuned) and ~80 ms for fpdf2;
2,000 rows take ~0.4 s against ~5 s. ``bench/bench_pdf.py`` measures them side by side.

Safety: user text (alert name, dimension values, column titles) reaches reportlab either as a plain
string that is drawn as it is (table cells, the page header) or escaped for ``Paragraph``'s
mini-markup (``<b>``, ``<img src=...>``, ``<a href>``, ``&`` come out as literal text). The chart is
drawn as vector paths and plain strings (``drawString``), the fonts are the system's DejaVu files:
reportlab is never given a filename or a URL taken from a report, so a report cannot make the worker
read a file or call a server, and the PDF carries no link or external reference.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from kpi_alerts.reports.chart import HEIGHT, WIDTH, chart_scene
from kpi_alerts.reports.chart_scene import paint_scene_pdf
from kpi_alerts.reports.formatting import Destination, single_line
from kpi_alerts.reports.model import ReportModel

if TYPE_CHECKING:
    from reportlab.platypus import Flowable

#: A PDF table longer than this is cut, and says so: 100k rows would be ~2,500 pages; the CSV / Excel
#: exports carry every row.
MAX_PDF_ROWS = 2_000

FONT, FONT_BOLD = "DejaVuSans", "DejaVuSans-Bold"
#: Debian's fonts-dejavu-core (and other distributions' usual places); matplotlib's copy as a last resort.
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)

INK, MUTED, FAINT = "#111827", "#4b5563", "#6b7280"
BRAND, RULE_LINE, ZEBRA = "#1f4e79", "#e5e7eb", "#f9fafb"
CONDITION_BG, CONDITION_EDGE = "#fef3c7", "#d97706"
GATE_BG, GATE_EDGE = "#ecfdf5", "#047857"
#: Up and down are told by the marker and the word as well as the colour (colour-blind safe).
CHANGE_COLORS = {"up": "#1d4ed8", "down": "#c2410c", "flat": "#4b5563"}
CONDITION_WORDING = {
    "threshold_triggered": "Alert condition met: {}",
    "threshold_recovered": "Back to normal: {} no longer holds",
    "threshold_no_data": "No data to evaluate: {}",
}


def _font_file(name: str) -> Path:
    for folder in FONT_DIRS:
        if (folder / f"{name}.ttf").is_file():
            return folder / f"{name}.ttf"
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / f"{name}.ttf"
        if bundled.is_file():
            return bundled
    raise FileNotFoundError(
        f"{name}.ttf not found in {[str(d) for d in FONT_DIRS]}: install fonts-dejavu-core"
    )


@functools.cache
def _register_fonts() -> None:
    """reportlab set up once per process: DejaVu Sans (regular and bold), binary streams."""
    from reportlab import rl_config
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    rl_config.useA85 = 0  # binary streams: ASCII85 would cost more CPU than the whole table (and 5 % size)

    for name in (FONT, FONT_BOLD):
        pdfmetrics.registerFont(TTFont(name, str(_font_file(name))))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


def markup(text: object) -> str:
    """User text made literal for ``Paragraph`` (its mini-markup is XML: ``&``, ``<``, ``>``)."""
    return escape(single_line(text))


@functools.cache
def _styles() -> dict[str, Any]:
    from reportlab.lib.colors import HexColor
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.styles import ParagraphStyle

    def style(name: str, size: float, color: str = INK, *, bold: bool = False, **kw: Any) -> ParagraphStyle:
        return ParagraphStyle(
            name,
            fontName=FONT_BOLD if bold else FONT,
            fontSize=size,
            leading=size * 1.35,
            textColor=HexColor(color),
            **kw,
        )

    return {
        "title": style("title", 18, bold=True, spaceAfter=2 * 2.835),
        "meta": style("meta", 9, MUTED, spaceAfter=5 * 2.835),
        "label": style("label", 9, MUTED),
        "value": style("value", 22, BRAND, bold=True),
        "note": style("note", 8, FAINT),
        "box": style("box", 9),
        "rule": style("rule", 8, MUTED, spaceAfter=3 * 2.835),
        "muted": style("muted", 9, FAINT, spaceBefore=2 * 2.835),
        "cell": style("cell", 8),
        "cell_n": style("cell_n", 8, alignment=TA_RIGHT),
        "head": style("head", 8, "#ffffff", bold=True),
        "head_n": style("head_n", 8, "#ffffff", bold=True, alignment=TA_RIGHT),
        **{
            f"change_{d}": style(f"change_{d}", 10, c, bold=True, spaceBefore=2.835)
            for d, c in CHANGE_COLORS.items()
        },
    }


def render_pdf(report: ReportModel, dest: Destination, *, max_rows: int = MAX_PDF_ROWS) -> Destination:
    """Write the PDF report to ``dest`` (a path or a binary stream): headline, chart, table (header
    repeated), page numbers."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    _register_fonts()
    title = single_line(report.alert_name)
    doc = SimpleDocTemplate(
        str(dest) if isinstance(dest, Path) else dest,
        pagesize=A4,
        leftMargin=14 * mm,
        rightMargin=14 * mm,
        topMargin=18 * mm,
        bottomMargin=20 * mm,
        title=title,
        author="kpi-alerts",
        creator="kpi-alerts",
        producer="kpi-alerts",
        subject=f"Report of {report.report_date}",
    )
    canvas = _numbered_canvas(title, single_line(f"Generated {report.generated_at}"), doc)
    doc.build(_story(report, max_rows, doc.width), canvasmaker=canvas)
    return dest


def _story(report: ReportModel, max_rows: int, width: float) -> list[Flowable]:
    from reportlab.platypus import Paragraph

    s = _styles()
    story: list[Flowable] = [
        Paragraph(markup(report.alert_name), s["title"]),
        Paragraph(
            markup(
                f"Organization {report.organization_id} · Period: {report.period} · "
                f"Report date {report.report_date} · Times in {report.timezone}"
            )
            + "<br/>"
            + markup(f"Generated {report.generated_at}"),
            s["meta"],
        ),
    ]
    story.extend(_headline(report))
    if report.condition:
        wording = CONDITION_WORDING.get(report.kind, "Condition: {}")
        story.append(_boxed(wording.format(report.condition), CONDITION_BG, CONDITION_EDGE, width, after=4))
    for note in report.notes:
        story.append(_boxed(note, CONDITION_BG, CONDITION_EDGE, width, after=3, style="rule"))
    if report.value_rule:
        story.append(Paragraph(markup(report.value_rule), s["rule"]))
    if report.gate:
        story.append(_boxed(report.gate, GATE_BG, GATE_EDGE, width, after=3, style="rule"))
    if report.chart is not None:
        story.append(_chart(report, width))
    rows = report.table(max_rows)
    if rows:
        story.append(_table(report, rows, width))
        if len(rows) < len(report.rows):
            story.append(
                Paragraph(
                    f"Showing the first {len(rows):,} of {len(report.rows):,} rows. "
                    "The CSV and Excel exports contain every row.",
                    s["muted"],
                )
            )
    else:
        story.append(Paragraph("No data for this period.", s["muted"]))
    return story


def _headline(report: ReportModel) -> list[Flowable]:
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    s = _styles()
    headline, change = report.headline, report.change
    if headline is None:
        return []
    out: list[Flowable] = [
        Paragraph(markup(headline.label), s["label"]),
        Paragraph(markup(headline.text), s["value"]),
    ]
    if headline.basis:
        out.append(Paragraph(markup(headline.basis), s["note"]))
    if change is not None:
        out.append(Paragraph(markup(change.text), s[f"change_{change.direction}"]))
        period = f" ({change.previous_period})" if change.previous_period else ""
        out.append(
            Paragraph(markup(f"{change.against.capitalize()}{period}: {change.previous_text}"), s["note"])
        )
    out.append(Spacer(1, 4 * mm))
    return out


def _boxed(
    text: str, background: str, edge: str, width: float, *, after: float, style: str = "box"
) -> Flowable:
    """A shaded note with a coloured left edge (the condition of a threshold alert, a report's gate)."""
    from reportlab.lib.colors import HexColor
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Table, TableStyle

    paragraph = Paragraph(markup(text), _styles()[style])
    box = Table([[paragraph]], colWidths=[width], spaceAfter=after * mm)
    box.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), HexColor(background)),
                ("LINEBEFORE", (0, 0), (0, -1), 2, HexColor(edge)),
                ("LEFTPADDING", (0, 0), (-1, -1), 3 * mm),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3 * mm),
                ("TOPPADDING", (0, 0), (-1, -1), 2 * mm),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2 * mm),
            ]
        )
    )
    return box


def _chart(report: ReportModel, width: float) -> Flowable:
    """The chart drawn as PDF vectors (the e-mail's scene, painted by reportlab), the page's width wide."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Flowable

    assert report.chart is not None
    scene = chart_scene(report.chart)

    class ChartFlowable(Flowable):
        def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
            return width, width * HEIGHT / WIDTH

        def draw(self) -> None:
            paint_scene_pdf(scene, self.canv, width / WIDTH, (FONT, FONT_BOLD))

    chart = ChartFlowable()
    chart.spaceAfter = 5 * mm
    return chart


def _table(report: ReportModel, rows: Sequence[Sequence[str]], width: float) -> Flowable:
    """Equal columns, numbers right-aligned, the header repeated on every page, zebra rows.

    A cell is drawn as a plain string (no markup is parsed); only a cell too wide for its column
    becomes an escaped ``Paragraph`` that wraps.
    """
    from reportlab.lib.colors import HexColor, white
    from reportlab.lib.units import mm
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.platypus import LongTable, Paragraph, TableStyle

    s = _styles()
    columns = report.columns
    col_width = width / len(columns)
    room = col_width - 4 * mm

    def fit(text: str, font: str, style: Any) -> Any:
        if "\n" in text or "\r" in text:
            text = single_line(text)
        return text if stringWidth(text, font, 8) <= room else Paragraph(markup(text), style)

    numeric = [c.numeric for c in columns]
    header = [
        fit(c.title, FONT_BOLD, s["head_n" if n else "head"]) for c, n in zip(columns, numeric, strict=True)
    ]
    body = [
        [fit(text, FONT, s["cell_n" if n else "cell"]) for text, n in zip(row, numeric, strict=True)]
        for row in rows
    ]
    commands: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, 0), FONT_BOLD, 8),
        ("FONT", (0, 1), (-1, -1), FONT, 8),
        ("TEXTCOLOR", (0, 0), (-1, 0), white),
        ("TEXTCOLOR", (0, 1), (-1, -1), HexColor(INK)),
        ("BACKGROUND", (0, 0), (-1, 0), HexColor(BRAND)),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [white, HexColor(ZEBRA)]),
        ("LINEBELOW", (0, 1), (-1, -1), 0.5, HexColor(RULE_LINE)),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 2 * mm),
        ("RIGHTPADDING", (0, 0), (-1, -1), 2 * mm),
        ("TOPPADDING", (0, 0), (-1, 0), 1.2 * mm),
        ("BOTTOMPADDING", (0, 0), (-1, 0), 1.2 * mm),
        ("TOPPADDING", (0, 1), (-1, -1), 0.8 * mm),
        ("BOTTOMPADDING", (0, 1), (-1, -1), 0.8 * mm),
    ]
    commands += [("ALIGN", (i, 0), (i, -1), "RIGHT") for i, n in enumerate(numeric) if n]
    table = LongTable([header, *body], colWidths=[col_width] * len(columns), repeatRows=1)
    table.setStyle(TableStyle(commands))
    return table


def _numbered_canvas(title: str, generated: str, doc: Any) -> Any:
    """A canvas that holds every page until the end, then draws the header and "Page X of Y"."""
    from reportlab.lib.colors import HexColor
    from reportlab.lib.units import mm
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfgen.canvas import Canvas

    left, right = doc.leftMargin, doc.pagesize[0] - doc.rightMargin
    top, bottom = doc.pagesize[1] - 10 * mm, 10 * mm
    header = title
    while header and stringWidth(header, FONT, 8) > right - left:  # one line; the page 1 title wraps
        header = header[: max(len(header) - 8, 0)].rstrip()
        header = header and header + "…"

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._furniture(total)
                super().showPage()
            super().save()

        def _furniture(self, total: int) -> None:
            page = self.getPageNumber()
            self.saveState()
            self.setFont(FONT, 8)
            self.setFillColor(HexColor(FAINT))
            if page > 1:  # drawString: plain text, no markup
                self.drawString(left, top, header)
            self.drawString(left, bottom, generated)
            self.drawRightString(right, bottom, f"Page {page} of {total}")
            self.restoreState()

    return NumberedCanvas
