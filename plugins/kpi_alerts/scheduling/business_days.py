"""Business days: Monday to Friday, less the public holidays of a country (and subdivision).

Holidays come from the ``holidays`` library (observed days included: the 4th of July on a Saturday is
observed on Friday the 3rd in the US, and that Friday is not a business day). Without a country every
weekday is a business day.
"""

from __future__ import annotations

import calendar
import functools
import threading
from dataclasses import dataclass
from datetime import date, timedelta

import holidays

from kpi_alerts.errors import AlertValidationError

_ONE_DAY = timedelta(days=1)
#: Longer than any run of public holidays plus weekends anywhere (Chinese New Year: 9 days).
MAX_HOLIDAY_RUN = timedelta(days=31)


@functools.cache
def _holiday_table(country: str, subdivision: str | None) -> tuple[holidays.HolidayBase, threading.Lock]:
    try:
        table = holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError:
        if subdivision is None:
            raise AlertValidationError(
                f"unknown holiday country {country[:20]!r} (expected a code the holidays library knows, "
                "e.g. 'US', 'GB', 'DE')"
            ) from None
        known = holidays.list_supported_countries().get(country, [])
        listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise AlertValidationError(
            f"unknown holiday subdivision {subdivision[:20]!r} of {country} (known: {listed or 'none'})"
        ) from None
    return table, threading.Lock()  # the table fills in a year on first lookup: one thread at a time


def check_holiday_region(country: object, subdivision: object) -> None:
    """Raise :class:`AlertValidationError` unless ``country`` (and ``subdivision``) name a holiday table."""
    if not isinstance(country, str) or not country:
        raise AlertValidationError(f"holiday_country must be a country code like 'US', got {country!r}"[:200])
    if subdivision is not None and (not isinstance(subdivision, str) or not subdivision):
        raise AlertValidationError(f"holiday_subdivision must be a code like 'NY', got {subdivision!r}"[:200])
    _holiday_table(country, subdivision)


@dataclass(frozen=True)
class BusinessCalendar:
    """Which dates are business days; ``country=None`` knows no holidays."""

    country: str | None = None
    subdivision: str | None = None

    def holiday(self, day: date) -> str | None:
        """The holiday's name on ``day``, or None."""
        if self.country is None:
            return None
        table, lock = _holiday_table(self.country, self.subdivision)
        with lock:
            return table.get(day)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and self.holiday(day) is None

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after ``day``."""
        day += _ONE_DAY
        while not self.is_business_day(day):
            day += _ONE_DAY
        return day

    def nth_business_day(self, year: int, month: int, n: int) -> date | None:
        """The ``n``-th business day of the month (``n`` < 0 counts from its end); None if it has fewer."""
        last = calendar.monthrange(year, month)[1]
        order = range(1, last + 1) if n > 0 else range(last, 0, -1)
        seen = 0
        for day_number in order:
            day = date(year, month, day_number)
            if self.is_business_day(day):
                seen += 1
                if seen == abs(n):
                    return day
        return None
