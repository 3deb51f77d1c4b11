"""Quiet hours and snooze: when an alert holds its messages back (plain Python, no database, no Airflow).

- **Quiet hours** (an alert's, in its timezone, and its organization's, in the organization's): a daily
  window ``[from, to)`` of wall-clock times, across midnight when ``to`` is earlier than ``from``
  (22:00-07:00), optionally only on the weekdays it *starts* on. The alert's and the organization's
  windows add up: an instant is quiet when any window covers it, and the quiet time ends when none does.
- A **scheduled report** due inside quiet hours waits for their end (``delay``, the default: several
  slots inside one quiet time make one run at its end) or does not happen (``skip``).
- A **threshold alert** is still checked inside quiet hours, but a check that would notify sends nothing
  and leaves the alert's state as it was: the first check after their end decides again, so a breach
  that still holds is notified then, and one that cleared up is not. When the last check of a quiet
  time is not followed by a check at its end, the end is added as a check.
- **Snooze** (an alert, until an instant): no slot before that instant runs; the first one at or after
  it does. Like resume, it never sends a backlog.

Quiet hours are wall-clock hours, like active hours: an instant is quiet when its local time is inside a
window. On a spring-forward day a window whose end falls in the gap ends at the gap's end; on a
fall-back day the repeated wall times are quiet again when they are inside a window.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.cadence import CheckCadence, clock, wall_instant
from kpi_alerts.scheduling.timezones import zone
from kpi_alerts.scheduling.wording import WEEKDAY_NAMES

MICROSECOND = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
ReportsInQuiet = Literal["delay", "skip"]
REPORT_CHOICES: tuple[str, ...] = ("delay", "skip")
#: Quiet times that touch end to end (the alert's 22:00-07:00 and the organization's 06:00-08:00) are
#: followed this many times at most; a skipped report looks this many slots ahead.
_MAX_STEPS = 1000


@dataclass(frozen=True)
class QuietHours:
    """A daily quiet window; minutes are minutes after local midnight (``until`` 1440 = the day's end)."""

    timezone: str
    from_minute: int
    until_minute: int
    days: tuple[int, ...] = ()  # weekdays (0 = Sunday) a window starts on; empty: every day

    @property
    def crosses_midnight(self) -> bool:
        return self.until_minute <= self.from_minute

    def validate(self) -> None:
        _validate(self)

    def covers(self, instant: datetime) -> bool:
        """Whether the local wall time of ``instant`` is inside a window (the rule of active hours too)."""
        local = instant.astimezone(zone(self.timezone))
        minute, today = local.hour * 60 + local.minute, local.date()
        if not self.crosses_midnight:
            return self._starts_on(today) and self.from_minute <= minute < self.until_minute
        return (self._starts_on(today) and minute >= self.from_minute) or (
            self._starts_on(today - timedelta(days=1)) and minute < self.until_minute
        )

    def end_if_quiet(self, instant: datetime) -> datetime | None:
        """The first instant after ``instant`` whose wall time is past the window that covers it (UTC), or
        None when none covers it. An end inside a spring-forward gap comes at the gap's end."""
        if not self.covers(instant):
            return None
        tz = zone(self.timezone)
        local = instant.astimezone(tz)
        ends_tomorrow = self.crosses_midnight and local.hour * 60 + local.minute >= self.from_minute
        end_day = local.date() + timedelta(days=1) if ends_tomorrow else local.date()
        end = wall_instant(end_day, self.until_minute, tz)  # a gap's wall time: shifted past the gap
        wall_end = datetime.combine(end_day, time()) + timedelta(minutes=self.until_minute)
        if end <= instant:  # inside the repeat of a fall-back day: the end's second occurrence
            end = wall_end.replace(tzinfo=tz, fold=1).astimezone(UTC)
        while (end - _MINUTE).astimezone(tz).replace(tzinfo=None) >= wall_end:  # back to the gap's end
            end -= _MINUTE
        return end

    def _starts_on(self, day: date) -> bool:
        return not self.days or day.isoweekday() % 7 in self.days


@functools.lru_cache(maxsize=1024)
def _validate(q: QuietHours) -> None:
    zone(q.timezone)
    for minute, name in ((q.from_minute, "from"), (q.until_minute, "to")):
        if isinstance(minute, bool) or not isinstance(minute, int) or not 0 <= minute <= 1440:
            raise AlertValidationError(f"quiet_hours.{name} must be a time HH:MM, got {minute!r}")
    if q.from_minute == q.until_minute or {q.from_minute, q.until_minute} == {0, 1440}:
        raise AlertValidationError(
            f"quiet_hours {clock(q.from_minute)}-{clock(q.until_minute)} never end: "
            "pause the alert instead, or give a window"
        )
    if q.from_minute == 1440:
        raise AlertValidationError("quiet_hours.from must be a time HH:MM from 00:00 to 23:59, got '24:00'")
    for day in q.days:
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise AlertValidationError(f"quiet_hours.days: {day!r} is not a weekday 0-6 (Sunday = 0)")


def describe_quiet_hours(q: QuietHours) -> str:
    """E.g. ``Quiet 22:00-07:00 (the next day), starting Monday and Tuesday (Europe/Berlin)``."""
    days = ""
    if q.days:
        names = [WEEKDAY_NAMES[d] for d in sorted(set(q.days), key=lambda d: (d + 6) % 7)]
        days = ", starting " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0])
    next_day = " (the next day)" if q.crosses_midnight and q.until_minute != 0 else ""
    return f"Quiet {clock(q.from_minute)}-{clock(q.until_minute)}{next_day}{days} ({q.timezone})"


@dataclass(frozen=True)
class Hold:
    """What holds an alert's messages back: its quiet hours (its own and its organization's), what its
    reports do inside them, and a snooze."""

    quiet: tuple[QuietHours, ...] = ()
    reports: ReportsInQuiet = "delay"
    snoozed_until: datetime | None = None

    def quiet_end(self, instant: datetime) -> datetime | None:
        """When the quiet time covering ``instant`` ends (every window that covers it, end to end), or
        None when ``instant`` is not quiet."""
        cursor = instant
        for _ in range(_MAX_STEPS):
            ends = [e for e in (q.end_if_quiet(cursor) for q in self.quiet) if e is not None]
            if not ends:
                return cursor if cursor != instant else None
            cursor = max(ends)
        raise AlertValidationError(
            "quiet hours never end: the alert's and the organization's cover every day"
        )

    def snoozed_at(self, instant: datetime) -> bool:
        return self.snoozed_until is not None and instant < self.snoozed_until


NO_HOLD = Hold()


def next_report_slot(base: Callable[[datetime], datetime], after: datetime, hold: Hold) -> datetime:
    """A report's first slot strictly after ``after``: ``base`` (the schedule's next run) moved past a
    snooze, and to the end of quiet hours (``delay``) or past them (``skip``)."""
    cursor = after
    for _ in range(_MAX_STEPS):
        slot = base(cursor)
        if hold.snoozed_until is not None and slot < hold.snoozed_until:
            cursor = max(cursor, hold.snoozed_until - MICROSECOND)
            continue
        end = hold.quiet_end(slot)
        if end is None:
            return slot
        if hold.reports == "delay":
            return end
        cursor = slot
    raise AlertValidationError("this schedule never fires outside quiet hours")


def next_check(cadence: CheckCadence, after: datetime, hold: Hold) -> datetime:
    """A threshold alert's first check strictly after ``after``: its cadence past a snooze; when ``after``
    is quiet and the next check comes after the quiet time's end, the end itself (where the cadence is
    active), so that a breach held back is notified when the quiet hours end."""
    if hold.snoozed_until is not None and after < hold.snoozed_until:
        after = hold.snoozed_until - MICROSECOND
    check = cadence.next_check_after(after)
    end = hold.quiet_end(after)
    if end is not None and after < end < check and cadence.covers(end):
        return end
    return check


@dataclass(frozen=True)
class SlotHeld:
    """Why a due slot does not run now (recorded ``skipped``), and where the alert goes next (None: its
    next slot)."""

    reason: Literal["snoozed", "quiet_hours"]
    detail: str
    next_run_at: datetime | None = None


def held_slot(slot: datetime, hold: Hold, *, is_report: bool) -> SlotHeld | None:
    """What a snooze or quiet hours set after the slot was planned make of it when it comes due: a
    snoozed slot is skipped; a report inside quiet hours waits for their end or is skipped. A threshold
    check inside quiet hours runs (its notification is held instead, see :func:`quiet_end`)."""
    if hold.snoozed_at(slot):
        assert hold.snoozed_until is not None
        return SlotHeld("snoozed", f"snoozed until {hold.snoozed_until.isoformat()}")
    if not is_report:
        return None
    end = hold.quiet_end(slot)
    if end is None:
        return None
    if hold.reports == "delay":
        return SlotHeld("quiet_hours", f"inside quiet hours: sent at their end, {end.isoformat()}", end)
    return SlotHeld("quiet_hours", "inside quiet hours: skipped (the alert's choice)")


#: A snooze longer than this is a pause (which an operator lifts by hand).
MAX_SNOOZE = timedelta(days=366)


def check_snooze(until: datetime, now: datetime) -> None:
    """Refuse a snooze that is not a later instant with a zone, or longer than :data:`MAX_SNOOZE`."""
    if until.tzinfo is None:
        raise AlertValidationError(
            "snooze until: give a time with its UTC offset, e.g. 2027-01-04T09:00+01:00"
        )
    if until <= now:
        raise AlertValidationError(f"snooze until {until.isoformat()}: that time has passed")
    if until - now > MAX_SNOOZE:
        raise AlertValidationError("snooze until: at most a year ahead (pause the alert for longer)")
