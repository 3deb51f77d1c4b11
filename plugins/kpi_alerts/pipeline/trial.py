"""Trying an alert out: a test send to one address, or a preview written to a folder.

Both fetch live data with the alert's own query and organization, decide as a run does
(:func:`kpi_alerts.pipeline.evaluation.evaluate`) and build the message through the same code path as a run
(:func:`kpi_alerts.pipeline.alert_run.compose_message`), so what they show is what recipients get — with the subject marked ``[TEST]`` and only the given address as recipient.
Neither claims a slot, writes the ledger or changes a threshold alert's state; a test send is recorded
as a ``test_send`` event in ``kpi_alert_events``.

A scheduled report is composed whatever its gate says, and a threshold alert as the notice its
recipients get when it fires, with the current value; :attr:`Trial.verdict` says what a run would do
right now (e.g. "gated out: revenue 1,234 > 10,000 is false").
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.delivery.recipients import check_recipient_domains, validate_recipients
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.alert_changes import AlertNotFound
from kpi_alerts.ledger.alert_store import load_alert, record_event
from kpi_alerts.pipeline.alert_run import compose_message
from kpi_alerts.pipeline.evaluation import LedgerFacts, evaluate
from kpi_alerts.pipeline.inputs import KpiSource, Mailer, RunSettings
from kpi_alerts.pipeline.kpi_source import CachingKpiSource

TEST_SUBJECT_PREFIX = "[TEST] "


@dataclass(frozen=True)
class Trial:
    message: EmailMessage
    attachment_name: str | None
    attachment_bytes: bytes | None
    verdict: str

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


@dataclass(frozen=True)
class TrialSent:
    to: str
    subject: str
    delivery: str
    detail: str
    verdict: str


@dataclass(frozen=True)
class PreviewFiles:
    eml: Path
    attachment: Path | None
    subject: str
    verdict: str


def compose_trial(
    alert: AlertDefinition,
    to: str,
    *,
    source: KpiSource,
    settings: RunSettings,
    conn: psycopg.Connection[Any] | None = None,
) -> Trial:
    """Fetch live data and build the message recipients would get, addressed to ``to`` only.

    :param conn: the alerts database: whether a report sent only if changed would be skipped, and a
        per-group alert's stored group states (without it, every group is taken to be OK).
    """
    alert.validate()
    slot = settings.logical_time
    queries = CachingKpiSource(source).for_run()
    asset = alert.freshness.asset if alert.freshness is not None else None
    decided = evaluate(
        alert,
        slot,
        queries=queries,
        now=settings.clock(),
        logical_time=slot,
        facts=LedgerFacts(conn),
        assets=settings.assets if settings.assets is not None or asset is None else _NoAssetEvents(),
    )
    verdict = decided.verdict
    if asset is not None and settings.assets is None:
        verdict = (
            f"a run waits until the asset {asset} is updated (its events are read inside a DAG run only)"
        )
    context = {"organization_id": alert.organization_id}

    def fetch(query: Any = None) -> Any:
        query = query if query is not None else alert.cube_query
        return queries.load(query, security_context=context, timezone=alert.timezone)

    message, attachment = compose_message(
        alert,
        decided.data if decided.data is not None else fetch(),
        # a threshold alert as the notice its recipients get when it fires, whatever it would do now
        kind="report" if alert.alert_type == "schedule" else "threshold_triggered",
        slot=slot,
        settings=settings,
        recipients=[to],
        message_key=f"test:{alert.cron_job_id}:{uuid.uuid4()}",
        fetch=fetch,
        **decided.message.as_kwargs(),
    )
    subject = str(message["Subject"])
    del message["Subject"]
    message["Subject"] = TEST_SUBJECT_PREFIX + subject
    return Trial(
        message,
        attachment.filename if attachment else None,
        attachment.content if attachment else None,
        verdict,
    )


class _NoAssetEvents:
    """Outside a DAG run an asset's events cannot be read: the trial goes on as if none came yet."""

    def last_updated(self, uri: str) -> datetime | None:
        return None


def send_test_message(
    conn: psycopg.Connection[Any],
    alert_id: int,
    to: str,
    *,
    source: KpiSource,
    mailer: Mailer,
    settings: RunSettings,
    actor: str | None = None,
) -> TrialSent:
    """Send the alert's message, marked as a test, to ``to`` only; record a ``test_send`` event."""
    address = _one_address(to)
    alert = _load(conn, alert_id)
    # live data of the organization goes only where its allow-list lets it (checked before any fetch)
    check_recipient_domains([address], alert.recipient_domains, alert.organization_id, "test recipient")
    trial = compose_trial(alert, address, source=source, settings=settings, conn=conn)
    delivery = mailer.deliver(trial.message)
    with conn.transaction():
        record_event(
            conn,
            alert_id=alert.alert_id,
            cron_job_id=alert.cron_job_id,
            organization_id=alert.organization_id,
            action="test_send",
            actor=actor,
            now=settings.clock(),
            details={
                "to": address,
                "subject": trial.subject,
                "delivery": delivery.kind,
                "detail": delivery.detail,
                "verdict": trial.verdict,
            },
        )
    return TrialSent(address, trial.subject, delivery.kind, delivery.detail, trial.verdict)


def preview(
    conn: psycopg.Connection[Any],
    alert_id: int,
    out_dir: Path,
    *,
    source: KpiSource,
    settings: RunSettings,
    to: str = "preview@example.com",
) -> PreviewFiles:
    """Write the message as ``<name>.eml`` and its attachment into ``out_dir``; send nothing."""
    alert = _load(conn, alert_id)
    trial = compose_trial(alert, _one_address(to), source=source, settings=settings, conn=conn)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"alert-{alert.alert_id}-{_slug(alert.alert_name)}"
    eml = out_dir / f"{stem}.eml"
    _write(eml, trial.message.as_bytes())
    attachment = None
    if trial.attachment_name is not None and trial.attachment_bytes is not None:
        attachment = out_dir / trial.attachment_name
        _write(attachment, trial.attachment_bytes)
    return PreviewFiles(eml, attachment, trial.subject, trial.verdict)


def _one_address(to: str) -> str:
    addresses = validate_recipients([to])
    if len(addresses) != 1:
        raise AlertValidationError(f"give exactly one address to send the test to, not {to!r}")
    return addresses[0]


def _load(conn: psycopg.Connection[Any], alert_id: int) -> AlertDefinition:
    alert = load_alert(conn, alert_id)
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return alert


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "alert"


def _write(path: Path, content: bytes) -> None:
    """Write under a temporary name and rename, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(content)
    shutil.move(tmp, path)


__all__ = ["PreviewFiles", "Trial", "TrialSent", "compose_trial", "preview", "send_test_message"]
