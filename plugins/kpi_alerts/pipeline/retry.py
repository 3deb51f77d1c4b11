"""An operator's re-attempt of one slot from the command line: ``python -m kpi_alerts retry ALERT SLOT``.

The same rule as clearing a failed ``process_alert`` task instance in the Airflow UI
(:func:`kpi_alerts.ledger.reattempts.why_not_reattempted`): a ``failed`` slot (or one left ``retrying`` /
``claimed`` by a worker that is gone) runs again through the same pipeline as a run — fetch, check,
render, send, record — and ends in the ledger like any run. A slot that was sent, or may have been
(``sending``, ``delivery_unknown``), is refused; ``delivery_unknown`` is replayed only when asked
(``replay=True``, ``--replay``): its message keeps the slot's Message-ID, so a mail client that did
get the first copy can recognise the second.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from kpi_alerts.errors import RetryRefused
from kpi_alerts.ledger.alert_changes import AlertNotFound
from kpi_alerts.ledger.alert_store import load_alert
from kpi_alerts.ledger.claim_terms import NotClaimed
from kpi_alerts.ledger.reattempts import reattempt_slot
from kpi_alerts.pipeline.alert_run import AlertRun, run_claim
from kpi_alerts.pipeline.inputs import KpiSource, Mailer, RunSettings


def retry_slot(
    conn: psycopg.Connection[Any],
    alert_id: int,
    slot: datetime,
    *,
    source: KpiSource,
    mailer: Mailer,
    settings: RunSettings,
    replay: bool = False,
) -> AlertRun:
    """Attempt ``slot`` of the alert again; raise :class:`RetryRefused` (nothing done), or
    :class:`~kpi_alerts.pipeline.alert_run.AlertFailed` after recording a new failure."""
    alert = load_alert(conn, alert_id)
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    if not alert.is_active:
        raise RetryRefused(f"alert {alert_id} is inactive; make it active first")
    claim = reattempt_slot(
        conn,
        alert,
        slot,
        now=settings.clock(),
        claimant=settings.claimant,
        settings=settings.claim,
        replay=replay,
    )
    if isinstance(claim, NotClaimed):
        raise RetryRefused(f"alert {alert_id}: {claim.reason}")
    return run_claim(conn, alert, claim, source=source, mailer=mailer, settings=settings)
