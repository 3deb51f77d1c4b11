"""What one run of the pipeline is given: where KPI values come from, how messages go out, and
the run's settings. The DAG passes ``CubeHook`` and an ``SmtpHook``-backed mailer; tests may pass
other real ones (a ``CubeClient``, a mailer writing to a folder)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from kpi_alerts.delivery.email_message import Envelope as Envelope
from kpi_alerts.delivery.mailers import Delivery as Delivery
from kpi_alerts.delivery.mailers import Mailer as Mailer
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.claim_terms import Claimant, ClaimSettings
from kpi_alerts.settings import ALERTS_DB_CONN_ID, CUBE_CONN_ID, DEFAULTS, SETTINGS, SMTP_CONN_ID


class KpiSource(Protocol):
    """Where KPI values come from (``CubeHook`` in production; a run wraps it in
    :class:`~kpi_alerts.pipeline.kpi_source.CachingKpiSource`)."""

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData: ...

    def load_many(
        self, queries: Sequence[Mapping[str, Any]], *, security_context: Mapping[str, Any], timezone: str
    ) -> list[KpiData]:
        """Several queries of one organization and timezone in one request where the source can (Cube's
        multi-query); a source that cannot asks them one by one, as this default does."""
        return [self.load(q, security_context=security_context, timezone=timezone) for q in queries]


class AssetEvents(Protocol):
    """When an Airflow asset was last updated (reports that wait for an asset; the DAG passes the Task
    SDK's reader, :class:`kpi_alerts.hooks.assets.TaskAssetEvents`)."""

    def last_updated(self, uri: str) -> datetime | None: ...


@dataclass(frozen=True)
class RunSettings:
    """:param final_attempt: on the last Airflow try a transient error is recorded as failed."""

    logical_time: datetime
    claimant: Claimant = field(default_factory=Claimant)
    final_attempt: bool = True
    envelope: Envelope = field(default_factory=Envelope)
    claim: ClaimSettings = field(default_factory=ClaimSettings)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Where a report that waits for an Airflow asset reads its latest event (None: outside a task).
    assets: AssetEvents | None = None


@dataclass(frozen=True)
class TaskSettings:
    """The package's settings as values (:data:`kpi_alerts.settings.SETTINGS`: each field's Variable,
    default and parser), as the operators' rendered template fields or the Variables give them."""

    environment: str = DEFAULTS["environment"]
    sender: str = DEFAULTS["sender"]
    outbox_dir: str = DEFAULTS["outbox_dir"]
    misfire_minutes: float = DEFAULTS["misfire_minutes"]
    lease_minutes: float = DEFAULTS["lease_minutes"]
    max_attachment_mb: float = DEFAULTS["max_attachment_mb"]
    recipient_privacy: str = DEFAULTS["recipient_privacy"]
    message_id_domain: str = DEFAULTS["message_id_domain"]
    batch_threshold: int = DEFAULTS["batch_threshold"]
    batch_seconds: float = DEFAULTS["batch_seconds"]
    seconds_per_alert: float = DEFAULTS["seconds_per_alert"]
    parallelism: int = DEFAULTS["parallelism"]
    batch_threads: int = DEFAULTS["batch_threads"]
    retention_days: float = DEFAULTS["retention_days"]
    # The Airflow connections (the operators' ``*_conn_id`` arguments).
    alerts_db_conn_id: str = ALERTS_DB_CONN_ID
    cube_conn_id: str = CUBE_CONN_ID
    smtp_conn_id: str = SMTP_CONN_ID

    @classmethod
    def parse(cls, raw: Mapping[str, object], **connections: str) -> TaskSettings:
        """From text by setting name (rendered templates, Variables); names not given keep their default."""
        values: dict[str, Any] = {s.name: s.value(raw[s.name]) for s in SETTINGS if s.name in raw}
        values.update(connections)
        return cls(**values)

    @property
    def production(self) -> bool:
        """Only ``production`` sends e-mail over ``smtp_default``; anything else writes ``.eml`` files."""
        return self.environment == "production"

    @property
    def outbox(self) -> Path:
        return Path(self.outbox_dir or Path(os.environ.get("AIRFLOW_HOME", ".")) / "kpi_alerts_outbox")

    @property
    def claim(self) -> ClaimSettings:
        return ClaimSettings(
            lease=timedelta(minutes=self.lease_minutes),
            misfire_window=timedelta(minutes=self.misfire_minutes),
        )

    @property
    def envelope(self) -> Envelope:
        return Envelope(
            sender=self.sender,
            max_attachment_bytes=int(self.max_attachment_mb * 1024 * 1024),
            recipient_privacy=self.recipient_privacy,
            message_id_domain=self.message_id_domain,
        )

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)
