"""``SmtpMailer``: messages sent over the ``smtp_default`` connection through Airflow's ``SmtpHook``.

The SMTP transaction itself, and which failures may be retried, is
:func:`kpi_alerts.delivery.mailers.send_over_smtp`; this is only where its session comes from.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

from airflow.providers.smtp.hooks.smtp import SmtpHook

from kpi_alerts.delivery.mailers import Delivery, relay_problem, send_over_smtp
from kpi_alerts.errors import KpiAlertError, TransientAlertError
from kpi_alerts.settings import SMTP_CONN_ID


def smtp_session(smtp_conn_id: str = SMTP_CONN_ID) -> smtplib.SMTP:
    """A connected ``smtplib`` client for ``smtp_conn_id`` (SmtpHook reads the connection: TLS, login);
    the ``connect`` of :class:`kpi_alerts.delivery.mailers.SessionMailer`."""
    hook = SmtpHook(smtp_conn_id=smtp_conn_id)
    hook.get_conn()
    client: Any = hook._smtp_client
    return client


class SmtpMailer:
    """Sends through the ``smtp_default`` connection; one SMTP session per message."""

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID) -> None:
        self.smtp_conn_id = smtp_conn_id

    def deliver(self, message: EmailMessage) -> Delivery:
        try:
            with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
                hook.get_conn()
                # SmtpHook.send_email_smtp builds its own MIME tree; we send our multipart/alternative one.
                client: Any = hook._smtp_client
                return send_over_smtp(client, message)
        except KpiAlertError:  # already classified by send_over_smtp
            raise
        except (smtplib.SMTPException, OSError) as exc:
            problem = relay_problem(exc)
            if problem is not None:
                raise problem from None
            raise TransientAlertError(f"cannot reach the SMTP server: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # AirflowException from get_conn: connection missing or unreachable
            raise TransientAlertError(f"cannot reach the SMTP server: {exc}") from None
