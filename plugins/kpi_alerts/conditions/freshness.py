"""Reports that wait for fresh data (issue 26, part 5).

A scheduled report may name the data it needs to be fresh — the refresh time Cube reports for its query
(``lastRefreshTime``), or an Airflow asset that an upstream DAG updates — and how old that data may be at
the report's slot. When the data is older, the slot *waits*: it is recorded ``waiting`` and later ticks of
the DAG look again, until the data is fresh or the deadline comes (``max_wait_minutes`` after the slot, and
never past the report's next slot). At the deadline the report is sent anyway and says how old its data is.

Plain Python: the data's time is given (the pipeline reads it from Cube's answer or from Airflow's asset
events); nothing here knows where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.timezones import zone

#: A day: a longer wait would hold a daily report past its next slot anyway.
MAX_WAIT_MINUTES = 1440
#: A year: data older than that is not "fresh" in any sense worth waiting for.
MAX_AGE_MINUTES = 525_600
MAX_ASSET_URI = 1500

FreshnessSource = Literal["cube", "asset"]


@dataclass(frozen=True)
class Freshness:
    """What fresh data a report needs (``kpi_schedules.freshness_*``).

    :param source: ``cube`` — the refresh time Cube reports for the report's query; ``asset`` — the latest
        event of the Airflow asset :attr:`asset` (its URI).
    :param max_age_minutes: the data is fresh when it was refreshed at most this long before the slot.
    :param max_wait_minutes: how long after the slot the report waits for fresh data before it is sent
        anyway (never past its next slot).
    """

    source: FreshnessSource
    max_age_minutes: int
    max_wait_minutes: int
    asset: str | None = None

    @classmethod
    def from_columns(cls, row: Mapping[str, Any]) -> Freshness | None:
        """From the ``kpi_schedules`` columns (None when the report does not wait)."""
        source = row.get("freshness_source")
        if source is None:
            return None
        return cls(
            source=source,
            max_age_minutes=row.get("freshness_max_age_minutes") or 0,
            max_wait_minutes=row.get("freshness_max_wait_minutes") or 0,
            asset=row.get("freshness_asset"),
        )

    def columns(self) -> dict[str, Any]:
        return {
            "freshness_source": self.source,
            "freshness_asset": self.asset,
            "freshness_max_age_minutes": self.max_age_minutes,
            "freshness_max_wait_minutes": self.max_wait_minutes,
        }

    def spec(self) -> dict[str, Any]:
        """What ``show`` prints back."""
        what: dict[str, Any] = {"cube": True} if self.source == "cube" else {"asset": self.asset}
        return {**what, "max_age_minutes": self.max_age_minutes, "max_wait_minutes": self.max_wait_minutes}

    def validate(self) -> None:
        """Raise :class:`AlertValidationError` with one readable line."""
        if self.source == "cube":
            if self.asset is not None:
                raise AlertValidationError("freshness: give either cube: true or an asset, not both")
        elif self.source == "asset":
            if not self.asset or not self.asset.strip():
                raise AlertValidationError(
                    "freshness.asset must be the URI of an Airflow asset, e.g. 'warehouse://orders'"
                )
            if len(self.asset) > MAX_ASSET_URI or any(ord(c) < 32 for c in self.asset):
                raise AlertValidationError(
                    f"freshness.asset must be one line of at most {MAX_ASSET_URI} characters"
                )
        else:
            raise AlertValidationError(
                "freshness needs what to wait for: cube: true (Cube's refresh time) or asset: '<uri>'"
            )
        if not 1 <= self.max_age_minutes <= MAX_AGE_MINUTES:
            raise AlertValidationError(
                f"freshness.max_age_minutes must be 1-{MAX_AGE_MINUTES} (how old the data may be at the "
                f"report's time), got {self.max_age_minutes}"
            )
        if not 5 <= self.max_wait_minutes <= MAX_WAIT_MINUTES:
            raise AlertValidationError(
                f"freshness.max_wait_minutes must be 5-{MAX_WAIT_MINUTES} (the DAG looks again every 5 "
                f"minutes; a report waits at most a day), got {self.max_wait_minutes}"
            )

    @property
    def max_age(self) -> timedelta:
        return timedelta(minutes=self.max_age_minutes)

    @property
    def max_wait(self) -> timedelta:
        return timedelta(minutes=self.max_wait_minutes)

    @property
    def what(self) -> str:
        """The data waited for, in words: ``Cube's data`` or ``asset 'warehouse://orders'``."""
        return "Cube's data" if self.source == "cube" else f"asset {self.asset!r}"

    def describe(self) -> str:
        """``waits up to 2 h for Cube's data to be at most 1 h old (then sent anyway, saying how old)``."""
        return (
            f"waits up to {duration(self.max_wait)} after its time for {self.what} to be at most "
            f"{duration(self.max_age)} old (then sent anyway, saying how old)"
        )


@dataclass(frozen=True)
class FreshnessVerdict:
    """Whether a slot's report goes out now.

    :param wait: True: the data is too old and the deadline has not come; look again at a later tick.
    :param data_as_of: the data's refresh time (None: never refreshed, as far as the source knows).
    :param fresh_after: the data must be newer than this (the slot less the maximum age).
    :param deadline: the last instant the report waits until.
    """

    wait: bool
    fresh: bool
    data_as_of: datetime | None
    fresh_after: datetime
    deadline: datetime

    def details(self, freshness: Freshness, slot: datetime, now: datetime) -> dict[str, Any]:
        """The ledger's ``details.freshness``."""
        return {
            "source": freshness.source,
            "asset": freshness.asset,
            "data_as_of": self.data_as_of.isoformat() if self.data_as_of else None,
            "fresh_after": self.fresh_after.isoformat(),
            "deadline": self.deadline.isoformat(),
            "fresh": self.fresh,
            "waited_minutes": max(0, int((now - slot).total_seconds() // 60)),
        }


def judge_freshness(
    freshness: Freshness,
    *,
    slot: datetime,
    logical_time: datetime,
    data_as_of: datetime | None,
    next_slot: datetime | None,
) -> FreshnessVerdict:
    """Send or wait: fresh data is sent at once; older data waits while the tick's ``logical_time`` is
    before the deadline (``max_wait`` after the slot, at most the next slot), then it is sent anyway."""
    fresh_after = slot - freshness.max_age
    deadline = slot + freshness.max_wait
    if next_slot is not None and next_slot > slot:
        deadline = min(deadline, next_slot)
    fresh = data_as_of is not None and data_as_of >= fresh_after
    return FreshnessVerdict(
        wait=not fresh and logical_time < deadline,
        fresh=fresh,
        data_as_of=data_as_of,
        fresh_after=fresh_after,
        deadline=deadline,
    )


def duration(value: timedelta) -> str:
    """``1 h 20 min``, ``45 min``, ``2 d 3 h``: minutes, rounded down."""
    minutes = max(0, int(value.total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if mins or not parts:
        parts.append(f"{mins} min")
    return " ".join(parts[:2])


def data_age(data_as_of: datetime | None, *, now: datetime, timezone: str) -> str:
    """``Data as of 07:40 (1 h 20 min old)`` in the report's timezone (with the date when it is not
    ``now``'s local date); ``Data never refreshed`` when the source has no time."""
    if data_as_of is None:
        return "Data never refreshed (no refresh recorded)"
    tz = zone(timezone)
    local, today = data_as_of.astimezone(tz), now.astimezone(tz)
    when = local.strftime("%H:%M") if local.date() == today.date() else local.strftime("%Y-%m-%d %H:%M")
    return f"Data as of {when} ({duration(now - data_as_of)} old)"


def waiting_reason(freshness: Freshness, verdict: FreshnessVerdict, timezone: str) -> str:
    """What a waiting slot's ledger row says (``error`` column: shown in history and the UI page)."""
    tz = zone(timezone)
    seen = (
        f"as of {verdict.data_as_of.astimezone(tz):%Y-%m-%d %H:%M}"
        if verdict.data_as_of is not None
        else "never refreshed"
    )
    return (
        f"waiting for fresh data: {freshness.what} is {seen}, older than {duration(freshness.max_age)} "
        f"before the slot; checked again every tick until {verdict.deadline.astimezone(tz):%Y-%m-%d %H:%M %Z}, "
        "then sent anyway"
    )


def stale_note(freshness: Freshness, verdict: FreshnessVerdict, *, now: datetime, timezone: str) -> str:
    """The sentence a report sent at its deadline carries: ``Data as of 07:40 (1 h 20 min old): Cube's
    data was not refreshed within 2 h of the report's time; sent anyway``."""
    return (
        f"{data_age(verdict.data_as_of, now=now, timezone=timezone)}: {freshness.what} was not refreshed "
        f"within {duration(freshness.max_wait)} of the report's time; sent anyway"
    )
