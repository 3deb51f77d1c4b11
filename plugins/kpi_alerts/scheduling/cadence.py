"""When a threshold alert is checked: every 5, 10, 15, 30 or 60 minutes, or daily at a time; optionally only
within active hours (e.g. weekdays 08:00-18:00) in the alert's timezone.

Interval checks sit on a grid of UTC instants (every 15 minutes: :00, :15, :30, :45 UTC), as the hourly
checks always did ("on the hour, in UTC"); active hours keep the grid instants whose local time falls in
the window ``[from, to)`` on an active day. Daily checks are a daily schedule (the schedules' DST rule).
Several checks in one UTC hour stamp ``cron_jobs`` once (``ledger.queries.LATER_SLOT_IN_HOUR``), so the
seed's per-hour trigger keeps its meaning.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.schedule import Schedule, next_run_after
from kpi_alerts.scheduling.timezones import zone
from kpi_alerts.scheduling.wording import WEEKDAY_NAMES

INTERVALS = (5, 10, 15, 30, 60)
DEFAULT_INTERVAL = 60
_DAY_MINUTES = 24 * 60
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: An active day comes round within a week; one more day covers a window that starts late on it.
_LOOK_AHEAD_DAYS = 8


def clock(minute_of_day: int) -> str:
    """``510`` -> ``08:30``; ``1440`` -> ``24:00``."""
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


def parse_clock(text: object, field: str, *, allow_end_of_day: bool = False) -> int:
    """``"08:30"`` -> 510 (minutes after midnight); ``"24:00"`` only where it ends a day."""
    if (
        isinstance(text, str)
        and len(text) == 5
        and text[2] == ":"
        and text[:2].isdigit()
        and text[3:].isdigit()
    ):
        hours, minutes = int(text[:2]), int(text[3:])
        if minutes < 60 and (hours < 24 or (allow_end_of_day and hours == 24 and minutes == 0)):
            return hours * 60 + minutes
    end = " (or 24:00)" if allow_end_of_day else ""
    raise AlertValidationError(f"{field} must be a time HH:MM from 00:00 to 23:59{end}, got {text!r}"[:200])


@dataclass(frozen=True)
class CheckCadence:
    """A threshold alert's check times; minutes are minutes after local midnight."""

    timezone: str = "UTC"
    every_minutes: int | None = None  # None: hourly (the default)
    daily_at_minute: int | None = None
    active_days: tuple[int, ...] = ()  # 0 = Sunday ... 6; empty: every day
    active_from_minute: int | None = None
    active_until_minute: int | None = None  # exclusive; 1440 = midnight at the day's end

    @property
    def interval(self) -> int:
        return self.every_minutes or DEFAULT_INTERVAL

    @property
    def has_window(self) -> bool:
        return self.active_from_minute is not None or bool(self.active_days)

    def validate(self) -> None:
        """Raise :class:`AlertValidationError` naming the first problem (one line)."""
        _validate(self)

    def next_check_after(self, after: datetime) -> datetime:
        """The first check strictly after ``after`` (UTC-aware)."""
        if self.daily_at_minute is not None:
            return next_run_after(self._daily(), after)
        return self._next_on_grid(_grid_after(after, self.interval))

    def first_check_at_or_after(self, at: datetime) -> datetime:
        return self.next_check_after(at - timedelta(microseconds=1))

    def current_check(self, at: datetime) -> datetime:
        """A new alert's first slot: the grid instant at or before ``at`` when active (check soon), else the
        next check."""
        if self.daily_at_minute is None:
            floor = _grid_after(at, self.interval) - timedelta(minutes=self.interval)
            if self._active(floor):
                return floor
        return self.next_check_after(at)

    def covers(self, instant: datetime) -> bool:
        """Whether ``instant`` is within the active days (and hours): a check there may run."""
        return self._active(instant)

    def _daily(self) -> Schedule:
        assert self.daily_at_minute is not None
        hour, minute = divmod(self.daily_at_minute, 60)
        return Schedule("day", hour, minute, self.active_days, self.timezone)

    def _active(self, instant: datetime) -> bool:
        local = instant.astimezone(zone(self.timezone))
        if self.active_days and local.isoweekday() % 7 not in self.active_days:
            return False
        if self.active_from_minute is None or self.active_until_minute is None:
            return True
        return self.active_from_minute <= local.hour * 60 + local.minute < self.active_until_minute

    def _next_on_grid(self, candidate: datetime) -> datetime:
        """``candidate`` (on the grid) if active, else the first active grid instant of a later window."""
        if self._active(candidate):
            return candidate
        tz = zone(self.timezone)
        first_day = candidate.astimezone(tz).date()
        start_minute = self.active_from_minute or 0
        end_minute = self.active_until_minute if self.active_until_minute is not None else _DAY_MINUTES
        for offset in range(_LOOK_AHEAD_DAYS):
            day = first_day + timedelta(days=offset)
            if self.active_days and day.isoweekday() % 7 not in self.active_days:
                continue
            opens = wall_instant(day, start_minute, tz)
            closes = wall_instant(day, end_minute, tz)
            check = max(candidate, _grid_after(opens - timedelta(microseconds=1), self.interval))
            if check < closes and self._active(check):
                return check
        raise AlertValidationError(f"this check never runs: {describe_cadence(self)}")


@functools.lru_cache(maxsize=1024)
def _validate(c: CheckCadence) -> None:
    zone(c.timezone)
    if c.every_minutes is not None and c.every_minutes not in INTERVALS:
        raise AlertValidationError(
            f"check_every_minutes must be one of 5, 10, 15, 30 or 60, got {c.every_minutes!r}"[:200]
        )
    if c.daily_at_minute is not None:
        if c.every_minutes is not None:
            raise AlertValidationError("give check_every_minutes or check_daily_at, not both")
        if c.active_from_minute is not None:
            raise AlertValidationError(
                "a daily check has no active hours: its time is check_daily_at (active days may be given)"
            )
    for day in c.active_days:
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise AlertValidationError(f"active_hours.days: {day!r} is not a weekday 0-6 (Sunday = 0)")
    if (c.active_from_minute is None) != (c.active_until_minute is None):
        raise AlertValidationError("active_hours needs both 'from' and 'to'")
    if c.active_from_minute is not None and c.active_until_minute is not None:
        if c.active_until_minute <= c.active_from_minute:
            raise AlertValidationError(
                f"active_hours end at {clock(c.active_until_minute)}, not after they start at "
                f"{clock(c.active_from_minute)} (a window across midnight is two alerts, or 00:00-24:00)"
            )
        if c.active_until_minute - c.active_from_minute < c.interval:
            raise AlertValidationError(
                f"active_hours {clock(c.active_from_minute)}-{clock(c.active_until_minute)} are shorter than "
                f"the check interval ({c.interval} minutes)"
            )
    c.next_check_after(datetime(2000, 1, 1, tzinfo=UTC))  # raises if it never runs


def _grid_after(after: datetime, interval: int) -> datetime:
    """The first instant strictly after ``after`` on the UTC grid of ``interval`` minutes."""
    minutes = (after.astimezone(UTC) - _EPOCH) // timedelta(minutes=1)
    return _EPOCH + timedelta(minutes=(minutes // interval + 1) * interval)


def wall_instant(day: date, minute_of_day: int, tz: ZoneInfo) -> datetime:
    """A local wall time (a gap shifts it forward, as schedules do) as a UTC instant."""
    midnight = datetime.combine(day, time())
    return (midnight + timedelta(minutes=minute_of_day)).replace(tzinfo=tz).astimezone(UTC)


def describe_cadence(c: CheckCadence) -> str:
    """E.g. ``Checked every 15 minutes (on the UTC quarter hours), Monday-Friday 08:00-18:00 (Europe/London)``."""
    days = ""
    if c.active_days:
        names = [WEEKDAY_NAMES[d] for d in sorted(set(c.active_days), key=lambda d: (d + 6) % 7)]
        days = ", on " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0])
    if c.daily_at_minute is not None:
        return f"Checked daily at {clock(c.daily_at_minute)}{days} ({c.timezone})"
    every = "every hour, at :00 UTC" if c.interval == 60 else f"every {c.interval} minutes (on the UTC grid)"
    hours = ""
    if c.active_from_minute is not None and c.active_until_minute is not None:
        hours = f", between {clock(c.active_from_minute)} and {clock(c.active_until_minute)}"
    window = f"{hours}{days}" if c.has_window else ""
    return f"Checked {every}{window} (values in {c.timezone})"
