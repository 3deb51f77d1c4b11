"""The MIME parts' own headers and bodies (made without the header registry, encoded by binascii):
what a mail client reads back from the wire must be what was put in."""

from __future__ import annotations

import io
import os
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_alerts.delivery import email_message
from kpi_alerts.delivery.email_message import _HEADER_POLICY, _MIME_POLICY, Envelope, _text, build_message
from kpi_alerts.delivery.mailers import _envelope
from kpi_alerts.reports import Attachment
from tests.unit.reports.test_reports import context, daily_revenue

ALERT = 'Umsatz Zürich ☃ — "Übersicht" \\ Q4'
CHART = os.urandom(3000)


class _Client:
    def has_extn(self, name: str) -> bool:
        return False


def _wire(msg: EmailMessage) -> bytes:
    return _envelope(_Client(), msg)[2]  # type: ignore[arg-type]


def _parse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _message(monkeypatch: pytest.MonkeyPatch, filename: str) -> tuple[EmailMessage, Attachment]:
    monkeypatch.setattr(email_message, "render_chart_png", lambda chart, **_: CHART)
    attachment = Attachment(filename, "application/pdf", os.urandom(5000))
    msg = build_message(
        ctx=context(alert_name=ALERT),
        data=daily_revenue(),
        recipients=["a@example.com", "b@example.com"],
        envelope=Envelope(sender="KPI Alerts <alerts@kpi-alerts.local>", max_attachment_bytes=10_000_000),
        attachment=attachment,
        message_key="7:slot",
    )
    return msg, attachment


@pytest.mark.parametrize(
    "filename",
    [
        "report.pdf",
        'Umsatz "Zürich" ☃ — Q4; x=1.pdf',  # RFC 2231
        'a "quoted" \\ name; x=1.pdf',  # quoted-string escapes
        "ü" * 200 + ".pdf",  # longer than a header line: RFC 2231 continuations
    ],
)
def test_parts_round_trip_from_the_wire(monkeypatch: pytest.MonkeyPatch, filename: str) -> None:
    msg, attachment = _message(monkeypatch, filename)
    wire = _wire(msg)
    assert b"\r\nBcc:" not in wire and b"\r\nBcc:" in msg.as_bytes()
    for raw in (wire, msg.as_bytes()):  # what SMTP sends, what the outbox writes
        head = [line for line in raw.split(b"\r\n") if line[:1].isalpha() and b": " in line[:40]]
        assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 998
        assert len(head) > 20 and max(len(line) for line in head) <= 256
        parsed = _parse(raw)
        assert [p.get_content_type() for p in parsed.walk()] == [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "multipart/related",
            "text/html",
            "image/png",
            "application/pdf",
        ]
        assert parsed["Subject"].startswith(f"[KPI report] {ALERT} — ")
        assert all(not p.defects for p in parsed.walk())
        (att,) = parsed.iter_attachments()
        assert att.get_filename() == filename and att.get_content_disposition() == "attachment"
        assert att.get_content() == attachment.content
        chart = next(p for p in parsed.walk() if p.get_content_type() == "image/png")
        assert chart.get_content_disposition() == "inline" and chart.get_filename() == "chart.png"
        assert chart.get_content() == CHART
        cid = str(chart["Content-ID"])
        assert cid == "<chart." + str(parsed["Message-ID"])[1:]
        text, html = (parsed.get_body((kind,)) for kind in ("plain", "html"))
        assert text is not None and html is not None
        assert f'src="cid:{cid[1:-1]}"' in html.get_content()
        assert ALERT in text.get_content() and ALERT.replace('"', "&#34;") in html.get_content()
        for part in (text, html):
            assert part.get_content_charset() == "utf-8"
            assert part["Content-Transfer-Encoding"] == "quoted-printable"


def _decoded(part: MIMEPart) -> tuple[str, bytes]:
    with io.BytesIO() as out:
        BytesGenerator(out, policy=_HEADER_POLICY).flatten(part, linesep="\r\n")
        raw = out.getvalue()
    # the wire's CRLF back to LF, as a client does (a CR of the text itself would be =0D)
    return str(_parse(raw.replace(b"\r\n", b"\n")).get_content()), raw


def test_quoted_printable_keeps_every_line() -> None:
    lines = [
        "x" * 300,  # soft line breaks
        ".",
        ". a dot first",
        "..",
        "From the start",
        "trailing blanks \t ",
        "a=b =3D =",
        "Zürich ☃ 数据 " * 20,
        "",
        "-- ",
    ]
    decoded, raw = _decoded(_text("\r\n".join(lines), "plain"))
    assert decoded == "\n".join(lines) + "\n"
    body = raw.partition(b"\r\n\r\n")[2]
    assert body.isascii() and max(len(line) for line in body.split(b"\r\n")) <= 77
    assert b"\r\n.\r\n" not in body and b"\r\nFrom the start" in body  # a lone dot is =2E


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300))
def test_quoted_printable_decodes_to_the_text(text: str) -> None:
    """Whatever the text, it reads back with its line ends as LF (what email.contentmanager did)."""
    decoded, raw = _decoded(_text(text, "html"))
    assert decoded == b"\n".join(text.encode("utf-8").splitlines()).decode("utf-8") + "\n"
    assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 77


@pytest.mark.parametrize("value", ["<a>\r\nBcc: x@example.com", "a\nb", "a\rb", "Zürich", "a\tb", "a\x00"])
def test_a_part_header_is_one_line_of_ascii(value: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        MIMEPart(policy=_MIME_POLICY)["Content-ID"] = value
