"""The package's settings, each written once: its Airflow Variable, default, type and meaning.

The operators' templated arguments, the task settings, the CLI and the web plugin are all derived
from :data:`SETTINGS`; a Variable holds text, and :meth:`Setting.parse` turns it into the value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _number(text: str) -> float:
    return float(text)


def _count(text: str) -> int:
    return int(float(text))


def _word(text: str) -> str:
    return text.strip().lower()


def _text(text: str) -> str:
    return text.strip()


@dataclass(frozen=True)
class Setting:
    """One setting: ``name`` is the operators' argument and the task settings' field."""

    name: str
    default: str  # as the Variable would hold it
    parse: Callable[[str], Any]
    doc: str

    @property
    def variable(self) -> str:
        return f"kpi_alerts_{self.name}"

    @property
    def template(self) -> str:
        """A template reading the Variable when the task runs (``AIRFLOW_VAR_*`` or the metadata DB)."""
        return "{{ var.value.get(%r, %r) }}" % (self.variable, self.default)  # noqa: UP031 - Jinja braces

    def value(self, raw: object = None) -> Any:
        """``raw`` (a rendered template, a Variable's text) parsed; blank text means the default."""
        text = "" if raw is None else str(raw)
        return self.parse(text if text.strip() else self.default)


ENVIRONMENT = Setting(
    "environment", "development", _word, "``production`` sends over ``smtp_default``; else ``.eml`` files"
)
SENDER = Setting("sender", "KPI Alerts <kpi-alerts@localhost>", _text, "the messages' From address")
OUTBOX_DIR = Setting("outbox_dir", "", _text, "the dry run's folder; blank: $AIRFLOW_HOME/kpi_alerts_outbox")
MISFIRE_MINUTES = Setting("misfire_minutes", "60", _number, "how late a slot may still run")
LEASE_MINUTES = Setting("lease_minutes", "30", _number, "how long a claim is held")
MAX_ATTACHMENT_MB = Setting("max_attachment_mb", "10", _number, "larger attachments are refused")
RECIPIENT_PRIVACY = Setting(
    "recipient_privacy", "bcc", _word, "``bcc``: recipients never see each other; ``to``: all in To:"
)
MESSAGE_ID_DOMAIN = Setting("message_id_domain", "", _text, "the Message-IDs' domain; blank: the sender's")
BATCH_THRESHOLD = Setting("batch_threshold", "0", _count, "up to this many due alerts, one task per alert")
BATCH_SECONDS = Setting("batch_seconds", "60", _number, "the target duration of one mapped task")
SECONDS_PER_ALERT = Setting("seconds_per_alert", "0.06", _number, "the estimate batches are cut by")
PARALLELISM = Setting("parallelism", "0", _count, "task instances at once; 0 reads [core] parallelism")
BATCH_THREADS = Setting("batch_threads", "4", _count, "alerts of a batch in flight at once")
RETENTION_DAYS = Setting("retention_days", "90", _number, "finished ledger rows older than this are pruned")

SETTINGS = (
    ENVIRONMENT,
    SENDER,
    OUTBOX_DIR,
    MISFIRE_MINUTES,
    LEASE_MINUTES,
    MAX_ATTACHMENT_MB,
    RECIPIENT_PRIVACY,
    MESSAGE_ID_DOMAIN,
    BATCH_THRESHOLD,
    BATCH_SECONDS,
    SECONDS_PER_ALERT,
    PARALLELISM,
    BATCH_THREADS,
    RETENTION_DAYS,
)

#: How often the ``kpi_alerts`` DAG runs (its schedule is built from it): the oldest a slot is when a run
#: first sees it.
TICK_MINUTES = 5

#: The Airflow connections, by their default ids (each hook's ``default_conn_name``; the operators'
#: ``*_conn_id`` arguments default to them).
ALERTS_DB_CONN_ID = "kpi_alerts_db"
CUBE_CONN_ID = "cube_default"
SMTP_CONN_ID = "smtp_default"

#: The defaults as values, by name (the task settings' field defaults).
DEFAULTS: dict[str, Any] = {s.name: s.value() for s in SETTINGS}
