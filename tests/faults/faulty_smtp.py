"""A small SMTP server of the fault suite's own — a legitimate fake: a real server cannot be made to
store a message and then drop the connection, hang before answering, or answer 421, on demand.

It speaks just enough SMTP for ``smtplib`` (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) over a real
TCP socket on 127.0.0.1, and keeps every message it *stored* (with its envelope recipients as an
``X-Envelope-To`` header, like ``devstack.mail``), whatever it then answered. ``mode`` may be changed
while it runs:

- ``accept``: a normal server (250 after the message);
- ``drop_after_data``: stores the message, then closes the connection without answering;
- ``hang_after_data``: stores the message, then never answers (until the server stops);
- ``unavailable``: answers ``421`` to every new connection and closes it (busy or going down).
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from typing import Any, Literal

Mode = Literal["accept", "drop_after_data", "hang_after_data", "unavailable"]


class FaultySmtpServer:
    def __init__(self, mode: Mode = "accept") -> None:
        self.mode: Mode = mode
        self.messages: list[EmailMessage] = []
        self.connections = 0
        self._stop = threading.Event()
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultySmtpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._socket.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            if self.mode == "unavailable":
                conn.sendall(b"421 4.3.2 Service not available, try again later\r\n")
                return
            conn.sendall(b"220 faulty.test ESMTP\r\n")
            recipients: list[str] = []
            for raw in lines:
                command = raw.strip().decode(errors="replace")
                verb = command[:4].upper()
                if verb == "EHLO":
                    conn.sendall(b"250-faulty.test\r\n250 8BITMIME\r\n")
                elif verb in {"HELO", "NOOP", "RSET"} or verb == "MAIL":
                    recipients = [] if verb in {"MAIL", "RSET"} else recipients
                    conn.sendall(b"250 OK\r\n")
                elif verb == "RCPT":
                    recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                    conn.sendall(b"250 OK\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    self._store(lines, recipients)
                    if self.mode == "drop_after_data":
                        return
                    if self.mode == "hang_after_data":
                        self._stop.wait()
                        return
                    conn.sendall(b"250 2.0.0 Queued\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"221 Bye\r\n")
                    return
                else:
                    conn.sendall(b"500 Command not recognised\r\n")

    def _store(self, lines: Any, recipients: list[str]) -> None:
        body = bytearray()
        for line in lines:
            if line == b".\r\n":
                break
            body += line[1:] if line.startswith(b"..") else line
        envelope = f"X-Envelope-To: {', '.join(recipients)}\r\n".encode()
        message = email.message_from_bytes(envelope + bytes(body), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)


def smtp_connection_to(server: FaultySmtpServer, base_connection_json: str) -> str:
    """``smtp_default`` pointed at ``server``, with a short reply timeout (a hang ends in 2 s)."""
    import json

    conn = json.loads(base_connection_json)
    return json.dumps(
        {**conn, "port": server.port, "extra": {**conn["extra"], "timeout": 2, "retry_limit": 0}}
    )
