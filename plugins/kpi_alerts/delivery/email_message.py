"""The alert e-mail as a MIME message (building only: sending is the SMTP task's job).

Layout: ``multipart/mixed`` > [``multipart/alternative`` > [text/plain, ``multipart/related`` >
[text/html, image/png chart]], attachment]. Every user-controlled string that reaches a header
(alert name, display names) is flattened to one line first, so no value can start a new header;
in HTML it is escaped by the template. Wording lives in ``include/templates/email.*``/``subject.txt``.

Only the top-level headers people read (Subject, From, To, ...) go through ``email.headerregistry``,
which encodes them (RFC 2047) and refuses line breaks. The MIME structure's headers (each part's
Content-Type, -Transfer-Encoding, -Disposition, -ID) are strings made here from constants, a boundary,
the Message-ID and the attachment's filename, so they are stored and written as they are
(:class:`_Generated`): parsing ~20 of them into header objects and refolding them at every flatten was
most of a message's MIME cost. Bodies are encoded by ``binascii`` (C) instead of email's pure-Python
quoted-printable encoder.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlsplit

from kpi_alerts.delivery.recipients import validate_address, validate_recipients
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.reports import Attachment
from kpi_alerts.reports.chart import render_chart_png
from kpi_alerts.reports.context import ReportContext
from kpi_alerts.reports.formatting import single_line, template_env
from kpi_alerts.reports.model import ReportModel, build_report
from kpi_alerts.settings import DEFAULTS

#: How several recipients are addressed (Variable ``kpi_alerts_recipient_privacy``): see build_message.
RECIPIENT_PRIVACY = ("bcc", "to")
UNDISCLOSED_RECIPIENTS = "undisclosed-recipients:;"
#: Rows shown in the body; the attachment and the dashboard have the rest.
BODY_ROWS = 10
#: Characters shown of one cell (or column title) in the body: a 10 MB cell once made an 83 MB e-mail.
BODY_CELL_CHARS = 120
MAX_SUBJECT = 200
#: Headers fold at 256 (RFC 5322 allows 998), above the longest Subject: Python folds a 70-78 character
#: Subject onto a continuation line of its own, which parsers then read back with a leading space.


class _HeaderClasses(HeaderRegistry):
    """The standard registry, but each header's class is made once, not at every header set or read.

    ``HeaderRegistry.__getitem__`` builds a new class with ``type()`` on every call (several per
    header set); the classes are stateless, so one per header name is the same behaviour at a
    fraction of the cost.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._classes.clear()

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made


class _Generated(str):
    """A MIME header value made by this module (a part's Content-Type, -Transfer-Encoding,
    -Disposition, -ID), kept as the plain string it is.

    The email package takes a stored value with a ``name`` for one of the registry's header objects:
    it returns it as it is when the header is read and writes it with its ``fold``. So it is never
    parsed, and written as one line unless longer than the policy's limit (only a very long filename),
    which the registry then folds. Plain strings (``compat32`` parts) would not do: the generator
    flattens every part under its own policy, which parses a string header each time it is read
    (content type, boundary, transfer encoding), and that cost the flatten as much as the sets saved.

    Only printable ASCII is accepted (a non-ASCII filename is RFC 2231-encoded first), so a value can
    neither hold a line break that would start a new header nor need encoding on the wire.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _Generated:
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"{name} value must be printable ASCII on one line: {value!r}")
        self = super().__new__(cls, value)
        self.name = name
        return self

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]  # copy and pickle
        return self.name, str(self)

    def fold(self, *, policy: EmailPolicy) -> str:
        line = f"{self.name}: {self}"
        if len(line) > (policy.max_line_length or sys.maxsize):  # only a very long filename
            return str(policy.header_factory(self.name, str(self)).fold(policy=policy))
        return line + policy.linesep


class _GeneratedHeaders(EmailPolicy):
    """The MIME parts' policy: every header set is stored as :class:`_Generated`."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        return name, _Generated(name, value)


_HEADER_POLICY = policy.SMTP.clone(header_factory=_HeaderClasses(), max_line_length=256)
_MIME_POLICY = _GeneratedHeaders(
    linesep="\r\n", max_line_length=256, header_factory=_HEADER_POLICY.header_factory
)
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\`]")


def safe_dashboard_url(url: str | None) -> str | None:
    """The URL if it is a plain absolute http(s) link without credentials; otherwise None."""
    if not url or _UNSAFE_URL.search(url):
        return None
    try:
        parts = urlsplit(url)
        has_credentials = parts.username is not None or parts.password is not None
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname or has_credentials:
        return None
    return url


@dataclass(frozen=True)
class Envelope:
    """How this deployment's messages are addressed and capped (its settings, as delivery needs them).

    :param recipient_privacy: ``bcc``: when there are several recipients, none sees the others —
        ``To: undisclosed-recipients:;`` and everyone in ``Bcc`` (which the SMTP transaction turns into
        envelope recipients and strips from the message); ``to``: everyone in ``To:``.
    :param message_id_domain: the right-hand side of Message-IDs; empty: the sender address's domain.
    """

    sender: str = DEFAULTS["sender"]
    max_attachment_bytes: int = int(DEFAULTS["max_attachment_mb"] * 1024 * 1024)
    recipient_privacy: str = DEFAULTS["recipient_privacy"]
    message_id_domain: str = DEFAULTS["message_id_domain"]

    @property
    def message_domain(self) -> str:
        if self.message_id_domain.strip():
            return self.message_id_domain.strip()
        return parseaddr(self.sender)[1].rpartition("@")[2] or "kpi-alerts.local"


def slot_message_key(
    cron_job_id: str, slot: datetime, message_token: uuid.UUID | None, suffix: str = ""
) -> str:
    """What a slot's Message-ID is derived from: the job's slot and the ledger row's random token (drawn at
    its first claim), so every retry of the slot has the same Message-ID and no two slots or deployments
    share one."""
    token = message_token.hex if message_token is not None else ""
    return f"{cron_job_id}:{slot.isoformat()}:{token}{suffix}"


def message_id(key: str | None, domain: str) -> str:
    """``<sha256(key)[:32]@domain>``: the same (alert, slot) key always gives the same Message-ID."""
    if not _DOMAIN.match(domain):
        raise AlertValidationError(f"invalid Message-ID domain {domain!r}")
    token = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] if key is not None else uuid.uuid4().hex
    return f"<{token}@{domain}>"


@functools.lru_cache(maxsize=64)  # one sender per deployment: parsed once, not once per message
def _sender(sender: str) -> Address:
    """``Name <addr>`` or ``addr``; the address must be valid, the name is flattened to one line.

    Control characters become spaces before parsing: in a display name that is harmless, in the
    address it leaves something that no longer parses as exactly one address, which is refused.
    """
    try:
        header = _HEADER_POLICY.header_factory("From", single_line(sender))
        addresses = header.addresses
    except (ValueError, IndexError, AttributeError):
        addresses = ()
    if len(addresses) != 1 or header.defects or not addresses[0].username or not addresses[0].domain:
        raise AlertValidationError(f"invalid sender {sender!r}: one address expected")
    parsed = addresses[0]
    local, domain = parsed.username, parsed.domain
    if "." in domain and not domain.endswith((".local", ".localhost", ".internal")):
        local, _, domain = validate_address(f"{local}@{domain}").partition("@")  # real domains: full check
    return Address(display_name=single_line(parsed.display_name), username=local, domain=domain)


def _boundary() -> str:
    """A multipart boundary chosen up front, so the generator need not search every flattened part
    for it: ``=_`` can appear in neither base64 nor quoted-printable text, the only encodings of
    the parts (text parts are quoted-printable, the chart and attachments base64)."""
    return f"=_kpi_{uuid.uuid4().hex}"


def _part() -> MIMEPart:
    return MIMEPart(policy=_MIME_POLICY)


def _leaf(content_type: str, cte: str, payload: str) -> MIMEPart:
    """A part with its already encoded body."""
    part = _part()
    part["Content-Type"] = content_type
    part["Content-Transfer-Encoding"] = cte
    part.set_payload(payload)
    return part


def _text(text: str, subtype: str) -> MIMEPart:
    """UTF-8 quoted-printable: 7-bit safe through any relay, still readable in the raw source.

    Line ends become LF first, as in ``email.contentmanager``; ``binascii.b2a_qp`` (C, a quarter of
    the time of email's encoder) soft-breaks lines at 76 characters (77 when one ends in an encoded
    blank) and encodes ``=``, trailing blanks and a lone ``.``.
    """
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    qp = binascii.b2a_qp(data).decode("ascii")
    return _leaf(f'text/{subtype}; charset="utf-8"', "quoted-printable", qp)


def _base64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")  # 76-character lines, as email.contentmanager


def _attachment(attachment: Attachment) -> MIMEPart:
    maintype, _, subtype = attachment.mime_type.partition("/")
    part = _leaf(f"{maintype}/{subtype}", "base64", _base64(attachment.content))
    name = single_line(attachment.filename)
    # quoted (backslash escapes) when ASCII, RFC 2231 (filename*=utf-8''...) otherwise
    part.add_header(
        "Content-Disposition", "attachment", filename=name if name.isascii() else ("utf-8", "", name)
    )
    return part


def _multipart(container: MIMEPart, subtype: str, *parts: MIMEPart) -> MIMEPart:
    """``container`` as ``multipart/<subtype>`` of ``parts``, with a fresh boundary."""
    container["Content-Type"] = f'multipart/{subtype}; boundary="{_boundary()}"'
    for part in parts:
        container.attach(part)
    return container


def _table(report: ReportModel) -> dict[str, Any]:
    if not report.rows or not report.columns:
        return {"columns": [], "rows": [], "text_lines": [], "more": 0}
    cols = report.columns
    rows = [[_cell(cell) for cell in row] for row in report.table(BODY_ROWS)]
    titles = [_cell(c.title) for c in cols]
    widths = [max(len(t), *(len(r[i]) for r in rows)) for i, t in enumerate(titles)]
    numeric = [c.numeric for c in cols]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    text_lines = [line(titles), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    return {
        "columns": [{"title": t, "numeric": n} for t, n in zip(titles, numeric, strict=True)],
        "rows": rows,
        "numeric": numeric,
        "text_lines": text_lines,
        "more": len(report.rows) - len(rows),
    }


def _cell(text: str) -> str:
    """One cell of the body's table on one line, at most :data:`BODY_CELL_CHARS` characters (cut first,
    so a huge value is never copied whole)."""
    return _shorten(single_line(text[: BODY_CELL_CHARS * 4]), BODY_CELL_CHARS)


def _shorten(text: str, limit: int) -> str:
    """Cut long user text for a header, keeping the end of the subject (the date) intact."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def human_size(size: int) -> str:
    """``25 MB``, ``2.5 MB``, ``5.2 KB``, ``900 bytes``: the unit that keeps small sizes readable."""
    for unit, scale in (("MB", 1_048_576), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size:,} bytes"


def _sizes(size: int, limit: int) -> tuple[str, str]:
    """The attachment's size and the limit as text that never reads "1 KB, above the 1 KB limit"."""
    shown = human_size(size), human_size(limit)
    return shown if shown[0] != shown[1] else (f"{size:,} bytes", f"{limit:,} bytes")


def build_message(
    *,
    ctx: ReportContext,
    data: KpiData | None,
    recipients: Sequence[str],
    envelope: Envelope,
    attachment: Attachment | None,
    message_key: str | None = None,
    report: ReportModel | None = None,
) -> EmailMessage:
    """The complete message for one alert notification; raises AlertValidationError on bad addresses.

    :param report: the report model the message renders (the attachments render the same one); when
        not given it is built from ``data`` and ``ctx`` alone (no comparison with a previous period).
    """
    if envelope.recipient_privacy not in RECIPIENT_PRIVACY:
        raise AlertValidationError(
            f"recipient privacy must be one of {', '.join(RECIPIENT_PRIVACY)}, "
            f"not {envelope.recipient_privacy[:40]!r}"
        )
    to = validate_recipients(recipients)
    from_ = _sender(envelope.sender)
    if report is None:
        report = build_report(data, ctx)
    chart_png = render_chart_png(report.chart) if report.chart is not None else None
    mid = message_id(message_key, envelope.message_domain)
    chart_cid = f"chart.{mid[1:-1]}"
    context = _template_context(report, attachment, envelope, chart_cid if chart_png else None)
    env = template_env()
    msg = EmailMessage(policy=_HEADER_POLICY)
    msg["Subject"] = _subject(env, context, report)
    msg["From"] = from_
    addresses = [Address(username=a.rpartition("@")[0], domain=a.rpartition("@")[2]) for a in to]
    if envelope.recipient_privacy == "to" or len(addresses) == 1:
        msg["To"] = addresses
    else:  # customers never see each other's addresses
        msg["To"] = UNDISCLOSED_RECIPIENTS
        msg["Bcc"] = addresses
    msg["Date"] = format_datetime(ctx.generated_at)
    msg["Message-ID"] = mid
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, no vacation loops
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-KPI-Alert-Kind"] = single_line(ctx.kind)
    msg["X-KPI-Alert-Slot"] = ctx.slot.isoformat()
    text, html = (env.get_template(name).render(**context) for name in ("email.txt", "email.html"))
    _add_body(msg, text, html, chart_png, chart_cid, None if context["oversize"] else attachment)
    return msg


def _template_context(
    report: ReportModel, attachment: Attachment | None, envelope: Envelope, chart_cid: str | None
) -> dict[str, Any]:
    """What the subject and body templates read: the report's fields made safe for one line each."""
    size_text, limit_text = _sizes(attachment.size if attachment else 0, envelope.max_attachment_bytes)
    return {
        "report": report,
        "kind": report.kind,
        "alert_name": single_line(report.alert_name),
        "organization_id": report.organization_id,
        "period": single_line(report.period),
        "timezone": report.timezone,
        "report_date": report.report_date,
        "generated_at": report.generated_at,
        "headline": report.headline,
        "change": report.change,
        "subject_figure": single_line(report.subject_figure) if report.subject_figure else None,
        "value_rule": report.value_rule,
        "notes": report.notes,
        "gate": single_line(report.gate) if report.gate else None,
        "condition": single_line(report.condition) if report.condition else None,
        "decision": single_line(report.decision) if report.decision else None,
        "dashboard_url": safe_dashboard_url(report.dashboard_url),
        "message": report.message,
        "table": _table(report),
        "chart_cid": chart_cid,
        "attachment": attachment,
        "oversize": attachment is not None and attachment.size > envelope.max_attachment_bytes,
        "attachment_size": size_text,
        "size_limit": limit_text,
    }


def _subject(env: Any, context: dict[str, Any], report: ReportModel) -> str:
    short = {
        "alert_name": _shorten(context["alert_name"], 100),
        "condition": _shorten(context["condition"], 60) if context["condition"] else None,
        "gate_short": _shorten(report.gate_short, 60) if report.gate_short else None,
        "data_age": report.data_age,
    }
    return _shorten(single_line(env.get_template("subject.txt").render(**{**context, **short})), MAX_SUBJECT)


def _add_body(
    msg: EmailMessage,
    text: str,
    html: str,
    chart_png: bytes | None,
    chart_cid: str,
    attachment: Attachment | None,
) -> None:
    """The MIME tree under ``msg``'s headers: text and HTML (with the chart inline), then the attachment.
    The tree is built top-down, each container with its boundary from the start."""
    text_part, body = _text(text, "plain"), _text(html, "html")
    if chart_png:
        image = _leaf("image/png", "base64", _base64(chart_png))
        image["Content-Disposition"] = 'inline; filename="chart.png"'
        image["Content-ID"] = f"<{chart_cid}>"
        body = _multipart(_part(), "related", body, image)
    msg.policy = _MIME_POLICY  # its MIME-Version and Content-Type are made here too
    msg["MIME-Version"] = "1.0"
    if attachment is not None:
        alternative = _multipart(_part(), "alternative", text_part, body)
        _multipart(msg, "mixed", alternative, _attachment(attachment))
    else:
        _multipart(msg, "alternative", text_part, body)
    msg.policy = _HEADER_POLICY
