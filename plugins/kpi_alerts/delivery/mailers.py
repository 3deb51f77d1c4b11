"""Delivering a built message: over an open SMTP session (:func:`send_over_smtp`; the Airflow side,
:class:`kpi_alerts.hooks.smtp.SmtpMailer`, opens it from ``smtp_default``), or, outside production,
into an outbox folder as ``.eml`` files (the seed's ``NODE_ENV === 'production'`` rule).

What may be retried is decided here, by the point of the SMTP transaction a failure happened at:

- **before the message is transmitted** (connect, ``MAIL``, ``RCPT``, the ``DATA`` command itself) and
  whenever the server *answers* with a refusal — even after the message (RFC 5321: the server has not
  taken responsibility): nothing was delivered. A 4xx or a dropped connection is transient
  (:class:`TransientAlertError`, retried), a 5xx or every recipient refused is permanent
  (:class:`PermanentAlertError`).
- **after the message was transmitted** and before the server's answer arrived (the connection drops,
  the reply times out): the server may have stored it. :class:`DeliveryUnknown` — never retried,
  never resent; the ledger records ``delivery_unknown`` for an operator to check and replay.

- **some recipients refused** at ``RCPT`` while the message went to the others: a delivery, whose
  :attr:`Delivery.refused` names them; the pipeline records who has the message and fails (5xx) or
  retries (4xx) the slot for the others only.

- **the relay refuses the deployment** (:func:`relay_problem`: 530, 535, a TLS handshake or STARTTLS that
  fails): not one alert's fault and not an outage — :class:`RelayRefused`, retried until an operator
  fixes ``smtp_default`` (inside the slots' misfire window).

So :func:`send_over_smtp` runs the SMTP transaction itself (``MAIL``, ``RCPT``, ``DATA``, the message,
the final reply) instead of ``smtplib.SMTP.send_message``, which cannot tell the two apart.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import re
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Protocol

from kpi_alerts.errors import (
    DeliveryUnknown,
    KpiAlertError,
    PermanentAlertError,
    RelayRefused,
    TransientAlertError,
)

#: Replies that concern the deployment's access to the relay, whatever the message: authentication
#: required or TLS first (530), credentials refused (535), an authentication mechanism too weak (534, 538).
RELAY_CODES = frozenset({530, 534, 535, 538})
_FIX = "fix the smtp_default connection; the slots are retried until their misfire window closes"


def relay_problem(exc: BaseException) -> RelayRefused | None:
    """The relay refusing this deployment (its login, or TLS) as :class:`RelayRefused`; None for anything
    else (a server down, one message or recipient refused)."""
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code in RELAY_CODES:
        what = "the login" if isinstance(exc, smtplib.SMTPAuthenticationError) else "the session"
        return RelayRefused(
            f"the SMTP relay refused {what} of this deployment: {exc.smtp_code} {_text(exc.smtp_error)}; {_FIX}"
        )
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return RelayRefused(f"TLS with the SMTP relay failed: {type(exc).__name__}: {exc}; {_FIX}")
    if isinstance(exc, smtplib.SMTPNotSupportedError) and "STARTTLS" in str(exc).upper():
        return RelayRefused(f"the SMTP relay does not offer STARTTLS, which smtp_default asks for; {_FIX}")
    return None


@dataclass(frozen=True)
class Refusal:
    """One recipient the SMTP server refused at ``RCPT`` while it took the message for others."""

    address: str
    code: int
    reply: str

    @property
    def transient(self) -> bool:
        """A 4xx (greylisting, a full mailbox): the recipient may accept it later."""
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.address} ({self.code} {self.reply})"


@dataclass(frozen=True)
class Delivery:
    """How a message went out: ``kind`` is ``smtp`` or ``outbox``; ``refused``: the recipients the
    server refused while accepting the message for the others (the message did not reach them)."""

    kind: str
    detail: str
    refused: tuple[Refusal, ...] = ()


class Mailer(Protocol):
    """Delivers a built message (:class:`OutboxMailer`, or ``kpi_alerts.hooks.smtp.SmtpMailer``)."""

    def deliver(self, message: EmailMessage) -> Delivery: ...


def send_over_smtp(client: smtplib.SMTP, message: EmailMessage) -> Delivery:
    """Send ``message`` with an open ``smtplib`` client (one SMTP transaction; the session stays usable
    after a refusal) and classify failures as described in the module docstring."""
    try:
        client.ehlo_or_helo_if_needed()
        sender, recipients, payload, mail_options = _envelope(client, message)
        _expect(client, client.mail(sender, mail_options), 250, "MAIL FROM")
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, reply)
        if len(refused) == len(recipients):
            _reset(client)
            deferred = all(400 <= c < 500 for c, _ in refused.values())  # e.g. greylisting: try later
            raise (TransientAlertError if deferred else PermanentAlertError)(
                f"the SMTP server refused every recipient: {_codes(refused)}"
            )
        _expect(client, client.docmd("DATA"), 354, "DATA")
    except smtplib.SMTPResponseException as exc:  # EHLO/HELO refused
        _raise_refusal(exc.smtp_code, exc.smtp_error, "EHLO")
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientAlertError(
            f"SMTP delivery failed before the message was transmitted: {type(exc).__name__}: {exc}"
        ) from None
    # The message goes on the wire: from here on, no answer means it may have been delivered.
    try:
        client.send(_data_block(payload))
        code, reply = client.getreply()
    except Exception as exc:  # dropped, timed out, anything: the server may have the message
        raise DeliveryUnknown(
            "the SMTP connection failed after the message was transmitted, before the server confirmed it "
            f"({type(exc).__name__}: {exc}); it may have been delivered, so it is not resent"
        ) from None
    if code != 250:
        _reset(client)
        _raise_refusal(code, reply, "the message")
    detail = f"accepted by SMTP for {len(recipients) - len(refused)} recipient(s)"
    if refused:
        detail += f"; refused: {_codes(refused)}"
    return Delivery(
        "smtp", detail, tuple(Refusal(a, code, _text(reply)) for a, (code, reply) in refused.items())
    )


def _envelope(client: smtplib.SMTP, message: EmailMessage) -> tuple[str, list[str], bytes, list[str]]:
    """Envelope sender and recipients from the headers, and the message without Bcc, as
    ``smtplib.SMTP.send_message`` derives them."""
    sender = getaddresses([str(message.get("Sender") or message["From"])])[0][1]
    recipients = _recipients(message)
    if not recipients:
        raise PermanentAlertError("the message has no recipients")
    stripped = copy.copy(message)
    del stripped["Bcc"]
    options: list[str] = []
    policy: Any = message.policy
    if not "".join([sender, *recipients]).isascii():
        if not client.has_extn("smtputf8"):
            raise PermanentAlertError(
                "an address needs internationalised e-mail (SMTPUTF8), which the SMTP server does not offer"
            )
        options, policy = ["SMTPUTF8", "BODY=8BITMIME"], policy.clone(utf8=True)
    with io.BytesIO() as out:
        _WireGenerator(out, policy=policy).flatten(stripped, linesep="\r\n")
        return sender, recipients, out.getvalue(), options


_NEWLINE = re.compile(r"\r\n|\r|\n")  # what the generator splits lines on (email.generator.NLCRE)


class _WireGenerator(BytesGenerator):
    """``BytesGenerator`` writing a body's lines in one piece instead of two writes per line (a
    base64 attachment has thousands): the same bytes, each line ending in the policy's line separator."""

    def _write_lines(self, lines: str) -> None:
        if lines:
            linesep: str = self._NL  # type: ignore[attr-defined]  # the flatten's line separator
            self.write(linesep.join(_NEWLINE.split(lines)))


def _data_block(payload: bytes) -> bytes:
    """The message as sent after ``354``: leading dots doubled (RFC 5321 4.5.2), then ``CRLF . CRLF``."""
    quoted = re.sub(rb"(?m)^\.", b"..", payload)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return quoted + b".\r\n"


def _expect(client: smtplib.SMTP, answer: tuple[int, bytes], code: int, command: str) -> None:
    if answer[0] != code:
        _reset(client)
        _raise_refusal(answer[0], answer[1], command)


def _raise_refusal(code: int, reply: bytes | str, what: str) -> None:
    reason = f"SMTP {code} to {what}: {_text(reply)}"
    if code in RELAY_CODES:
        raise RelayRefused(f"the SMTP relay refused this deployment: {reason}; {_FIX}")
    if 400 <= code < 500 or code < 200:  # 4xx, or no real answer (smtplib reports -1): nothing was taken
        raise TransientAlertError(reason)
    raise PermanentAlertError(reason)


def _reset(client: smtplib.SMTP) -> None:
    """Abort the transaction so the session can carry the next message; a dead session is ignored."""
    with contextlib.suppress(smtplib.SMTPException, OSError):
        client.rset()


class SessionMailer:
    """Sends many messages over one SMTP session (a batch's), opened on first use by ``connect``.

    After a failure the session is dropped and the next message opens a new one. A message whose
    attempt failed *before* it was transmitted on a session that had carried earlier messages is sent
    once more on a fresh session (the server may have closed an idle or worn-out session: nothing of
    this message was taken). Nothing is ever sent again after :class:`DeliveryUnknown` — the server
    may have the message — nor after a refusal on a fresh session (the claim's retry rules decide).

    :param connect: opens a connected (and logged-in) ``smtplib.SMTP`` client.
    :param max_messages: a session is closed and reopened after this many messages (servers limit it).
    """

    def __init__(self, connect: Callable[[], smtplib.SMTP], *, max_messages: int = 500) -> None:
        self.connect = connect
        self.max_messages = max_messages
        self._client: smtplib.SMTP | None = None
        self._sent = 0
        self.sessions = 0

    def deliver(self, message: EmailMessage) -> Delivery:
        reused = self._client is not None
        try:
            return self._send(message)
        except DeliveryUnknown:
            self.close()
            raise
        except TransientAlertError:
            self.close()
            if not reused:
                raise
        return self._send(message)  # a stale session refused before transmission: once on a fresh one

    def _send(self, message: EmailMessage) -> Delivery:
        if self._client is None:
            try:
                self._client = self.connect()
            except KpiAlertError:
                raise
            except Exception as exc:  # smtplib / OSError / AirflowException: the server cannot be reached
                problem = relay_problem(exc)
                if problem is not None:
                    raise problem from None
                raise TransientAlertError(
                    f"cannot reach the SMTP server: {type(exc).__name__}: {exc}"
                ) from None
            self._sent, self.sessions = 0, self.sessions + 1
        delivery = send_over_smtp(self._client, message)
        self._sent += 1
        if self._sent >= self.max_messages:
            self.close()
        return delivery

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
            with contextlib.suppress(OSError):
                client.close()


class OutboxMailer:
    """Writes each message to ``<folder>/<message-id hash>.eml`` instead of sending it (dry run).

    The file is written under a temporary name and renamed when complete, so a failed write (a full
    disk) leaves no truncated or empty ``.eml``; and since it certainly did not happen, the failure is
    transient (retried while the slot is inside its misfire window), not ``delivery_unknown``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def deliver(self, message: EmailMessage) -> Delivery:
        key = str(message.get("Message-ID", "")) or message.as_string()
        path = self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.eml"
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as out:
                out.write(message.as_bytes())
                out.flush()
                os.fsync(out.fileno())  # a full disk may only show here
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TransientAlertError(
                f"the outbox folder {self.folder} cannot be written: {exc.strerror or exc} "
                "(nothing was delivered; retried while the slot is inside its misfire window)"
            ) from None
        return Delivery("outbox", f"dry run (kpi_alerts_environment is not 'production'): written to {path}")


def _recipients(message: EmailMessage) -> list[str]:
    headers = [str(h) for name in ("To", "Cc", "Bcc") for h in message.get_all(name, [])]
    return [address for _, address in getaddresses(headers) if address]  # a group "x:;" has none


def _codes(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{addr} ({code} {_text(msg)})" for addr, (code, msg) in refused.items())


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
