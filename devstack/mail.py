"""A real SMTP server (aiosmtpd) that keeps every message it receives as an ``.eml`` file.

Tests run it in-process and read what arrived; the demo runs it as a background process
(``python -m devstack mail``) and points people at the folder.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack import STATE_DIR, free_port


class MaildirHandler:
    """Writes each message (with its SMTP envelope as headers) to ``<folder>/<n>.eml``.

    Like a real server with unknown mailboxes, it refuses recipients whose local part starts with
    ``bounce`` (550), and answers 451 (try later) for ``greylist...`` ones — for ever, or, once
    :attr:`greylist_delay` is set, as greylisting servers do: until that many seconds after the
    address was first tried.
    """

    def __init__(self, folder: Path) -> None:
        self.greylist_delay: float | None = None
        self._first_tried: dict[str, float] = {}
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = len(list(self.folder.glob("*.eml")))  # counted once: a glob per message is O(n²)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        local = address.split("@")[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 Mailbox unavailable"
        if local.startswith("greylist"):
            first = self._first_tried.setdefault(address.lower(), time.monotonic())
            if self.greylist_delay is None or time.monotonic() - first < self.greylist_delay:
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        rcpts = ", ".join(envelope.rcpt_tos)
        envelope_headers = f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {rcpts}\r\n".encode()
        with self._lock:
            name = f"{time.time_ns()}-{self._count:06d}.eml"
            self._count += 1
            (self.folder / name).write_bytes(envelope_headers + content)
        return "250 Message accepted for delivery"


class MailCatcher:
    """An SMTP server on 127.0.0.1 whose received messages can be listed and parsed."""

    def __init__(self, folder: Path, port: int = 0, *, owner: str | None = None) -> None:
        """:param owner: said in the greeting, so the devstack can tell its own catcher from others."""
        self.folder = folder
        self.handler = MaildirHandler(folder)
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=port or free_port(), ident=owner
        )

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> MailCatcher:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def clear(self) -> None:
        for path in self.folder.glob("*.eml"):
            path.unlink()
        self.handler._count = 0
        self.handler.greylist_delay = None
        self.handler._first_tried.clear()

    def messages(self) -> list[EmailMessage]:
        return [read_message(p) for p in sorted(self.folder.glob("*.eml"))]

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def read_message(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the local mail catcher in the foreground.")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--folder", type=Path, default=STATE_DIR / "mail")
    parser.add_argument("--owner", help="identity stated in the SMTP greeting")
    args = parser.parse_args()
    catcher = MailCatcher(args.folder, args.port, owner=args.owner).start()
    print(f"mail catcher on 127.0.0.1:{catcher.port}, messages in {args.folder}", flush=True)
    try:
        threading.Event().wait()
    finally:
        catcher.stop()


if __name__ == "__main__":
    main()
