"""The alert e-mail, built for real and parsed back from its bytes as a mail client would."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_alerts.delivery.email_message import Envelope, build_message, message_id, safe_dashboard_url
from kpi_alerts.delivery.recipients import MAX_RECIPIENTS, validate_recipients
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.reports import Attachment, build_report, render_attachment
from tests.unit.reports.test_reports import REGION, REVENUE, UTC, by_region, context, daily_revenue

SENDER = "KPI Alerts <alerts@kpi-alerts.local>"


def build(
    *,
    data: KpiData | None = None,
    attachment: Attachment | None = None,
    limit: int = 10_000_000,
    recipients: tuple[str, ...] = ("ops@example.com",),
    sender: str = SENDER,
    key: str | None = "42:2026-04-02T08:00:00+00:00",
    **ctx: object,
) -> EmailMessage:
    msg = build_message(
        ctx=context(**ctx),
        data=daily_revenue() if data is None else data,
        recipients=list(recipients),
        envelope=Envelope(sender=sender, max_attachment_bytes=limit),
        attachment=attachment,
        message_key=key,
    )
    return parse(msg)


def parse(msg: EmailMessage) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(msg.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def bodies(msg: EmailMessage) -> tuple[str, str]:
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def structure(part: EmailMessage, depth: int = 0) -> list[str]:
    out = ["  " * depth + part.get_content_type()]
    if part.is_multipart():
        for sub in part.iter_parts():
            out += structure(sub, depth + 1)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="module")
def csv_attachment() -> Attachment:
    return render_attachment("csv", build_report(daily_revenue(), context()))


def test_structure_alternatives_chart_and_attachment(csv_attachment: Attachment) -> None:
    msg = build(attachment=csv_attachment, dashboard_url="https://bi.example.com/d/7?tab=1&x=2")
    assert structure(msg) == [
        "multipart/mixed",
        "  multipart/alternative",
        "    text/plain",
        "    multipart/related",
        "      text/html",
        "      image/png",
        "  text/csv",
    ]
    (att,) = list(msg.iter_attachments())
    assert att.get_filename() == "revenue-daily-2026-04-02.csv" and att.get_content_type() == "text/csv"
    assert att.get_content().encode("utf-8-sig") == csv_attachment.content.replace(b"\r\n", b"\n") or (
        att.get_payload(decode=True) == csv_attachment.content
    )
    text, html = bodies(msg)
    chart = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    cid = str(chart["Content-ID"]).strip("<>")
    assert f'src="cid:{cid}"' in html and chart.get_content_disposition() == "inline"
    for body in (text, html):
        assert "Revenue (daily)" in body and "17,373.30" in body and "last 14 days" in body
        assert "revenue-daily-2026-04-02.csv" in body and "4 more rows" in body
    assert "https://bi.example.com/d/7?tab=1&x=2" in text
    assert 'href="https://bi.example.com/d/7?tab=1&amp;x=2"' in html
    assert msg["Subject"] == "[KPI report] Revenue (daily) — 17,373 — 2026-04-02"  # the rows' total
    assert msg["From"] == SENDER and msg["To"] == "ops@example.com"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-KPI-Alert-Slot"] == "2026-04-02T08:00:00+00:00"


def test_oversized_attachment_is_left_out_and_explained(csv_attachment: Attachment) -> None:
    big = replace(csv_attachment, content=bytes(25 * 1_048_576))
    msg = build(attachment=big, limit=10 * 1_048_576, dashboard_url="https://bi.example.com/d/7")
    assert list(msg.iter_attachments()) == []
    for body in bodies(msg):
        assert "The report was 25 MB, above the 10 MB limit" in body
        assert "open the dashboard" in body
    no_dash = bodies(build(attachment=big, limit=10 * 1_048_576))
    assert all("narrow the alert" in b for b in no_dash)


def test_subject_and_wording_per_kind() -> None:
    triggered = build(kind="threshold_triggered", condition="Revenue > 10,000")
    assert (
        triggered["Subject"] == "[KPI alert] Revenue (daily): Revenue > 10,000 (now 12,345.68) — 2026-04-02"
    )
    assert "The alert condition is met: Revenue > 10,000." in bodies(triggered)[0]
    recovered = build(kind="threshold_recovered", condition="Revenue > 10,000", kpi_value=Decimal(900))
    assert recovered["Subject"].startswith(
        "Resolved: [KPI alert] Revenue (daily) is back to normal (now 900.00)"
    )
    assert "no longer holds" in bodies(recovered)[0]
    no_data = parse(
        build_message(
            ctx=context(kind="threshold_no_data", condition="Revenue > 10,000", kpi_value=None),
            data=None,
            recipients=["ops@example.com"],
            envelope=Envelope(sender=SENDER, max_attachment_bytes=1),
            attachment=None,
        )
    )
    assert no_data["Subject"] == "[KPI alert] No data: Revenue (daily) — 2026-04-02"
    assert structure(no_data) == ["multipart/alternative", "  text/plain", "  text/html"]
    assert "could not be evaluated" in bodies(no_data)[0]


def test_subject_date_is_the_slots_local_date() -> None:
    msg = build(timezone="America/Los_Angeles", slot=datetime(2026, 4, 3, 2, 0, tzinfo=UTC))
    assert msg["Subject"].endswith("— 2026-04-02")


@pytest.mark.parametrize(
    "name", ["Umsatz Zürich ☃ — Übersicht", "数据" * 50, "x" * 300, "Revenue (daily) 70 chars" * 3]
)
def test_subjects_round_trip_and_keep_the_date(name: str) -> None:
    subject = build(alert_name=name)["Subject"]
    assert subject.startswith("[KPI report] ") and subject.endswith(" — 2026-04-02")
    assert name[:40] in subject and len(subject) <= 200


def test_control_characters_never_make_a_header() -> None:
    name = "Revenue\r\nBcc: victim@example.com\r\n\r\n<b>body</b>\x00\u2028X"
    msg = build(alert_name=name, sender='"Ops\r\nBcc: x@example.com" <alerts@kpi-alerts.local>')
    assert msg["Bcc"] is None and msg.get_all("Subject") == [msg["Subject"]]
    assert (
        msg["Subject"] == "[KPI report] Revenue Bcc: victim@example.com <b>body</b> X — 17,373 — 2026-04-02"
    )
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["From"].addresses[0].addr_spec == "alerts@kpi-alerts.local"  # the bare header parses back
    raw = build_message(
        ctx=context(alert_name=name),
        data=daily_revenue(),
        recipients=["ops@example.com"],
        envelope=Envelope(sender=SENDER, max_attachment_bytes=1),
        attachment=None,
    ).as_bytes()
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in headers and b"\nBcc:" not in headers


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=90))
def test_no_alert_name_can_add_a_header(name: str) -> None:
    one_row = daily_revenue(1)
    msg = build(alert_name=name, data=one_row, kind="threshold_triggered", condition=name)
    assert sorted(msg.keys()) == sorted(
        [
            "Subject",
            "From",
            "To",
            "Date",
            "Message-ID",
            "Auto-Submitted",
            "X-Auto-Response-Suppress",
            "X-KPI-Alert-Kind",
            "X-KPI-Alert-Slot",
            "MIME-Version",
            "Content-Type",
        ]
    )
    subject = msg["Subject"]
    assert subject.startswith("[KPI alert] ") and subject.endswith(" — 2026-04-02")
    assert not any(ch in subject for ch in "\r\n\x00")


def test_user_text_is_escaped_in_html() -> None:
    data = KpiData(
        (REGION, REVENUE),
        (
            {REGION.key: "<script>x()</script>", REVENUE.key: Decimal(1)},
            {REGION.key: "b", REVENUE.key: Decimal(2)},
        ),
        "Europe/London",
    )
    text, html = bodies(build(data=data, alert_name='<img src=x onerror="alert(1)">'))
    assert "<img src=x" not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "<script>" not in html and "&lt;script&gt;x()&lt;/script&gt;" in html
    assert '<img src=x onerror="alert(1)">' in text  # plain text stays literal


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://bi.example.com/d/1", True),
        ("http://localhost:8088/superset/dashboard/3/", True),
        ("javascript:alert(1)", False),
        ("ftp://bi.example.com/d", False),
        ("https://user:pw@bi.example.com/", False),
        ('https://bi.example.com/"><script>', False),
        ("https://bi.example.com/d\r\nX: 1", False),
        ("//bi.example.com/d", False),
        ("", False),
    ],
)
def test_dashboard_links_only_for_http(url: str, expected: bool) -> None:
    assert (safe_dashboard_url(url) == url) is expected
    text, html = bodies(build(dashboard_url=url, data=by_region()))
    assert ("Open the dashboard" in html) is expected and ("Dashboard:" in text) is expected


def test_message_id_is_derived_from_the_key() -> None:
    first, again = build(key="42:slot")["Message-ID"], build(key="42:slot")["Message-ID"]
    assert first == again == message_id("42:slot", "kpi-alerts.local")
    assert first.endswith("@kpi-alerts.local>") and len(first.split("@")[0]) == 33
    assert build(key="43:slot")["Message-ID"] != first
    assert build(key=None)["Message-ID"] != build(key=None)["Message-ID"]
    with pytest.raises(AlertValidationError):
        message_id("k", "bad domain>\r\nX: 1")


def test_several_recipients_do_not_see_each_other_unless_configured() -> None:
    private = build(recipients=("a@example.com", "b@example.org"))
    assert private["To"] == "undisclosed-recipients:;" and private["Bcc"] == "a@example.com, b@example.org"
    alone = build(recipients=("a@example.com",))
    assert alone["To"] == "a@example.com" and alone["Bcc"] is None
    msg = build_message(
        ctx=context(),
        data=None,
        recipients=["a@example.com", "b@example.org"],
        envelope=Envelope(sender=SENDER, max_attachment_bytes=1000, recipient_privacy="to"),
        attachment=None,
    )
    assert msg["To"] == "a@example.com, b@example.org" and msg["Bcc"] is None
    with pytest.raises(AlertValidationError, match="recipient privacy"):
        build_message(
            ctx=context(),
            data=None,
            recipients=["a@example.com"],
            envelope=Envelope(sender=SENDER, max_attachment_bytes=1000, recipient_privacy="everyone"),
            attachment=None,
        )


def test_recipients_are_validated_in_the_message() -> None:
    msg = build(recipients=("Ops@Example.com", "ops@example.COM", "cfo@example.org"))
    assert msg["Bcc"] == "Ops@example.com, cfo@example.org"  # private by default: see below
    with pytest.raises(AlertValidationError, match=r"'ops@example.com\\r\\nBcc: x@example.com'"):
        build(recipients=("ops@example.com\r\nBcc: x@example.com",))
    with pytest.raises(AlertValidationError, match="sender"):
        build(sender="not an address")


@pytest.mark.parametrize(
    "bad",
    [
        "Bob <bob@example.com>",
        '"bob@example.com" <eve@evil.example>',
        "bob@example.com, eve@example.com",
        "bob@example.com;eve@example.com",
        "bob@example.com\nX",
        "bob",
        "bob@localhost",
        "bob@",
        "bøb@example.com",
        "",
    ],
)
def test_bad_recipients_are_refused_by_name(bad: str) -> None:
    with pytest.raises(AlertValidationError) as info:
        validate_recipients(["ok@example.com", bad])
    assert repr(bad) in str(info.value)


def test_recipient_list_rules() -> None:
    assert validate_recipients([" A@Example.COM ", "a@example.com", "b@bücher.example", "c@kpi.test"]) == [
        "A@example.com",
        "b@xn--bcher-kva.example",
        "c@kpi.test",
    ]
    with pytest.raises(AlertValidationError, match="at least one"):
        validate_recipients([])
    with pytest.raises(AlertValidationError, match="not one string"):
        validate_recipients("a@example.com")
    many = [f"user{i}@example.com" for i in range(MAX_RECIPIENTS + 1)]
    assert len(validate_recipients(many[:MAX_RECIPIENTS])) == MAX_RECIPIENTS
    with pytest.raises(AlertValidationError, match="at most 100"):
        validate_recipients(many)


def test_wire_format_and_a_sample_for_people(csv_attachment: Attachment) -> None:
    msg = build_message(
        ctx=context(kind="threshold_triggered", condition="Revenue > 10,000"),
        data=daily_revenue(),
        recipients=[f"user{i}@example.com" for i in range(60)],
        envelope=Envelope(sender=SENDER, max_attachment_bytes=10_000_000),
        attachment=csv_attachment,
    )
    raw = msg.as_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in head.split(b"\r\n")) <= 998  # RFC 5322 hard limit
    long_lines = [line for line in body.split(b"\r\n") if len(line) > 78]
    assert all(line.startswith(b"Content-") and len(line) <= 998 for line in long_lines)  # part headers only
    assert raw.isascii()  # 7-bit clean: any relay can carry it
    root = Path(__file__).resolve().parents[3] / ".artifacts"
    root.mkdir(exist_ok=True)
    (root / "alert-email.eml").write_bytes(raw)
    (root / "alert-email.html").write_text(bodies(parse(msg))[1], encoding="utf-8")


def test_what_goes_on_the_wire_is_the_standard_generators_bytes(csv_attachment: Attachment) -> None:
    """The SMTP path's faster generator writes exactly what ``email.generator.BytesGenerator`` writes
    (Bcc stripped), and every part's boundary is one that no encoded body can contain."""
    import copy
    import io
    from email.generator import BytesGenerator

    from kpi_alerts.delivery.mailers import _envelope

    class Client:
        def has_extn(self, name: str) -> bool:
            return False

    msg = build_message(
        ctx=context(),
        data=daily_revenue(),
        recipients=["a@example.com", "b@example.com"],
        envelope=Envelope(sender=SENDER, max_attachment_bytes=10_000_000),
        attachment=csv_attachment,
    )
    _, recipients, payload, _ = _envelope(Client(), msg)  # type: ignore[arg-type]
    stripped = copy.copy(msg)
    del stripped["Bcc"]
    with io.BytesIO() as out:
        BytesGenerator(out, policy=msg.policy).flatten(stripped, linesep="\r\n")
        assert payload == out.getvalue()
    assert recipients == ["a@example.com", "b@example.com"] and b"\r\nBcc:" not in payload
    boundaries = [part.get_boundary() for part in msg.walk() if part.is_multipart()]
    assert len(boundaries) == 3 and all(b and b.startswith("=_") for b in boundaries)
    assert len(set(boundaries)) == 3
    assert parse(msg).get_content_type() == "multipart/mixed"


def test_header_classes_are_made_once_and_still_the_standard_ones() -> None:
    from email.headerregistry import UniqueAddressHeader, UnstructuredHeader

    from kpi_alerts.delivery.email_message import _HEADER_POLICY

    factory = _HEADER_POLICY.header_factory
    assert factory["From"] is factory["from"]
    assert issubclass(factory["From"], UniqueAddressHeader) and issubclass(
        factory["X-KPI"], UnstructuredHeader
    )
    with pytest.raises(ValueError):  # the policy still refuses a line break in a header value
        EmailMessage(policy=_HEADER_POLICY)["Subject"] = "a\r\nBcc: x@example.com"
