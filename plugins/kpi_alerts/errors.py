"""The project's error types: every failure an alert can meet maps to one of these."""

from __future__ import annotations


class KpiAlertError(Exception):
    """Base class: the message is meant for people (ledger, task log, owner notice)."""


class AlertValidationError(KpiAlertError, ValueError):
    """Bad alert definition (schedule, recipients, query, gating condition...). Never retried."""


class PermanentAlertError(KpiAlertError):
    """The alert cannot succeed for this slot without someone changing something. Not retried."""


class TransientAlertError(KpiAlertError):
    """A dependency is down or slow (Cube, SMTP, database). Retried by Airflow, then recorded."""


class RelayRefused(TransientAlertError):
    """The SMTP relay refused this deployment, not one alert: bad credentials (535), authentication or TLS
    required (530), TLS that cannot be set up. Transient — the slots go out once an operator fixes
    ``smtp_default``, inside their misfire window — and said once per batch, not once per alert."""


class DeliveryUnknown(PermanentAlertError):
    """The message was transmitted (SMTP DATA) but the server's answer never came: it may have been
    delivered. Never retried, never resent (at most once beats a duplicate); recorded as
    ``delivery_unknown`` so an operator can check and replay it."""


class RetryRefused(KpiAlertError):
    """An operator asked to attempt a slot again and it may not be (one readable line: why); nothing changed."""
