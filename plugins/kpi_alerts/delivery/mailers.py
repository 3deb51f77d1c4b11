"""Delivering a built message: over SMTP (``smtp_default`` through Airflow's ``SmtpHook``), or, outside
production, into an outbox folder as ``.eml`` files (the seed's ``NODE_ENV === 'production'`` rule).

SMTP failures are sorted the way an operator would: a 4xx or a dropped connection is transient
(Airflow retries), a 5xx or refused recipients is permanent (recorded as failed, not retried).
"""

from __future__ import annotations

import hashlib
import smtplib
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from kpi_alerts.errors import PermanentAlertError, TransientAlertError
from kpi_alerts.pipeline.inputs import Delivery

SMTP_CONN_ID = "smtp_default"


def send_over_smtp(client: smtplib.SMTP, message: EmailMessage) -> Delivery:
    """Send with an open ``smtplib`` client and classify failures."""
    try:
        refused = client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentAlertError(
            f"the SMTP server refused every recipient: {_codes(exc.recipients)}"
        ) from None
    except smtplib.SMTPResponseException as exc:
        reason = f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}"
        if 400 <= exc.smtp_code < 500:
            raise TransientAlertError(reason) from None
        raise PermanentAlertError(reason) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientAlertError(f"SMTP delivery failed: {type(exc).__name__}: {exc}") from None
    detail = f"accepted by SMTP for {len(_recipients(message)) - len(refused)} recipient(s)"
    if refused:
        detail += f"; refused: {_codes(refused)}"
    return Delivery("smtp", detail)


class SmtpMailer:
    """Sends through the ``smtp_default`` connection; one SMTP session per message."""

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID) -> None:
        self.smtp_conn_id = smtp_conn_id

    def deliver(self, message: EmailMessage) -> Delivery:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        try:
            with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
                hook.get_conn()
                # SmtpHook.send_email_smtp builds its own MIME tree; we send our multipart/alternative one.
                client: Any = hook._smtp_client
                return send_over_smtp(client, message)
        except (PermanentAlertError, TransientAlertError):
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientAlertError(f"cannot reach the SMTP server: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # AirflowException from get_conn: connection missing or unreachable
            raise TransientAlertError(f"cannot reach the SMTP server: {exc}") from None


class OutboxMailer:
    """Writes each message to ``<folder>/<message-id hash>.eml`` instead of sending it (dry run)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def deliver(self, message: EmailMessage) -> Delivery:
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(message.get("Message-ID", "")) or message.as_string()
        path = self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.eml"
        path.write_bytes(message.as_bytes())
        return Delivery("outbox", f"dry run (kpi_alerts_environment is not 'production'): written to {path}")


def _recipients(message: EmailMessage) -> list[str]:
    headers = [str(h) for name in ("To", "Cc", "Bcc") for h in message.get_all(name, [])]
    return [address for _, address in getaddresses(headers)]


def _codes(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{addr} ({code} {_text(msg)})" for addr, (code, msg) in refused.items())


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
