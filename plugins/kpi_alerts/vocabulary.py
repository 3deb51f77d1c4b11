"""The package's vocabulary: the closed lists of words the other modules share, each defined once.

Plain Python, no Airflow. Each list mirrors one outside authority, and a test checks it against it:

- :data:`GRANULARITIES`: Cube's built-in time granularities;
- :class:`LedgerStatus`: the ``kpi_alerts_result_status_check`` CHECK constraint (migrations 0010, 0015);
- :class:`AlertType`: the ``kpi_alerts.alert_type`` CHECK constraint (migration 0002);
- :class:`AttachmentKind`: the ``kpi_schedules.attachment_type`` CHECK constraint (migration 0002);
- :data:`ADDITIVE_AGGREGATIONS`: Cube measure types whose values add up over rows.
"""

from __future__ import annotations

from enum import StrEnum

#: Cube's built-in granularities, finest first: the ones whose bucket ends can be computed.
GRANULARITIES: tuple[str, ...] = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
#: Granularities whose buckets are whole dates (a value is labelled with a date, not a time).
DATE_GRANULARITIES: frozenset[str] = frozenset(GRANULARITIES[GRANULARITIES.index("day") :])

#: Cube measure types whose values over several rows add up to a meaningful total (a ``count`` or a
#: ``sum``; an average, a distinct count or a min/max does not).
ADDITIVE_AGGREGATIONS: frozenset[str] = frozenset({"count", "sum"})


class LedgerStatus(StrEnum):
    """The status of one alert slot in ``cron_job_results`` (the ledger).

    A ``StrEnum``: members are the strings stored in the database and compare equal to them.
    """

    #: a worker holds the slot's lease and is fetching, checking or rendering
    CLAIMED = "claimed"
    #: a transient failure; a later try or tick takes the slot again inside the misfire window
    RETRYING = "retrying"
    #: a report waiting for fresh data after its slot; later ticks look again until its deadline
    WAITING = "waiting"
    #: the message is being handed to the SMTP server
    SENDING = "sending"
    #: the SMTP server accepted the message
    SENT = "sent"
    #: the message was transmitted but the server never confirmed it: never resent
    DELIVERY_UNKNOWN = "delivery_unknown"
    #: a threshold alert whose condition did not hold
    NOT_TRIGGERED = "not_triggered"
    #: a threshold alert still breaching: not repeated (anti-spam)
    SUPPRESSED = "suppressed"
    #: a report whose gating condition did not pass
    GATED = "gated"
    #: a permanent failure (or a transient one past the misfire window)
    FAILED = "failed"
    #: slots the DAG never reached in time (scheduler down, paused DAG)
    MISSED = "missed"
    #: nothing to do for the slot (alert paused, deleted, or already handled)
    SKIPPED = "skipped"


class AlertType(StrEnum):
    """What an alert is (``kpi_alerts.alert_type``)."""

    SCHEDULE = "schedule"  #: a scheduled report
    THRESHOLD = "threshold"  #: a threshold alert


class AttachmentKind(StrEnum):
    """What a scheduled report attaches (``kpi_schedules.attachment_type``)."""

    PDF = "pdf"
    EXCEL = "excel"
    CSV = "csv"

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self]

    @property
    def mime_type(self) -> str:
        return _MIME_TYPES[self]


_EXTENSIONS = {AttachmentKind.CSV: "csv", AttachmentKind.EXCEL: "xlsx", AttachmentKind.PDF: "pdf"}
_MIME_TYPES = {
    AttachmentKind.CSV: "text/csv",
    AttachmentKind.EXCEL: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    AttachmentKind.PDF: "application/pdf",
}
