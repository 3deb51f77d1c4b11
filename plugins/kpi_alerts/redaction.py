"""Credentials never leave in text: ``scheme://user:password@host`` becomes ``scheme://***@host``.

Applied to every error that may quote a URL (a Cube URL with ``user:pass@``, a database URL in a
driver's message) before it reaches the ledger, a notice, a log line or the command line.
"""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)[^/?#@\s\"'<>]+@")


def redact_url(text: str) -> str:
    """``text`` with the user-info part (``user:password@``) of every URL in it replaced by ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", text)
