"""The one rule for which timezone names an alert may use — at creation, at run time and for Cube.

A name is accepted when it is a canonical IANA key of the tz database (``zoneinfo.available_timezones()``)
and Cube.js knows it too. PostgreSQL's ``pg_timezone_names`` and Python's ``ZoneInfo`` accept more: the
system's ``localtime`` link and the tzdata placeholder ``Factory``, and the ``posix/…`` / ``right/…`` trees
and ``posixrules`` — every one of them answered by Cube (moment-timezone) with ``500 Unknown timezone``,
late, at run time. ``tests/cube/test_timezones.py`` checks the rule against the real Cube's list.
Names are case-sensitive (``utc`` is refused; ``UTC`` is the name).
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from kpi_alerts.errors import AlertValidationError

#: Keys of the system's tz database that are not timezones (Cube refuses them).
NOT_TIMEZONES = frozenset({"Factory", "localtime", "posixrules"})


@cache
def known_timezones() -> frozenset[str]:
    """Every name :func:`zone` accepts."""
    return frozenset(available_timezones()) - NOT_TIMEZONES


@cache
def zone(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` for an accepted timezone name; anything else raises AlertValidationError."""
    if not isinstance(name, str) or name not in known_timezones():
        shown = repr(name)[:80]
        raise AlertValidationError(f"unknown timezone {shown} (expected an IANA name like 'Europe/Paris')")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # listed, but its file is unreadable
        raise AlertValidationError(f"unknown timezone {name!r}") from exc
