"""What one run of the pipeline is given: where KPI values come from, how messages go out, and
the run's settings. The DAG passes ``CubeHook`` and an ``SmtpHook``-backed mailer; tests may pass
other real ones (a ``CubeClient``, a mailer writing to a folder)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, Protocol

from kpi_alerts.delivery.mailers import Delivery as Delivery
from kpi_alerts.delivery.mailers import Mailer as Mailer
from kpi_alerts.kpi_data import KpiData
from kpi_alerts.ledger.claims import Claimant, ClaimSettings


class KpiSource(Protocol):
    """Where KPI values come from (``CubeHook`` in production)."""

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData: ...


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
    sender: str = "KPI Alerts <kpi-alerts@localhost>"
    max_attachment_bytes: int = 10 * 1024 * 1024
    claim: ClaimSettings = field(default_factory=ClaimSettings)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: ``bcc`` (default): recipients of a message to several people do not see each other (``To:
    #: undisclosed-recipients:;``, everyone in Bcc); ``to``: all of them in ``To:``.
    recipient_privacy: str = "bcc"
    #: The right-hand side of Message-IDs: this deployment's domain (empty: the sender's domain).
    message_id_domain: str = ""
    #: Where a report that waits for an Airflow asset reads its latest event (None: outside a task).
    assets: AssetEvents | None = None

    @property
    def message_domain(self) -> str:
        """The Message-ID domain: :attr:`message_id_domain`, else the sender address's domain."""
        if self.message_id_domain.strip():
            return self.message_id_domain.strip()
        return parseaddr(self.sender)[1].rpartition("@")[2] or "kpi-alerts.local"
