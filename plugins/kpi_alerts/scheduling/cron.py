"""Five-field cron expressions: which local dates and wall times they name (no timezone, no DST here).

Semantics are Vixie cron's (``man 5 crontab``), plus two extensions many schedulers share:

* fields ``minute hour day-of-month month day-of-week``; lists ``1,15``, ranges ``1-5``, steps ``*/15``,
  ``8-18/2`` and ``5/15`` (from 5 to the field's end); month names ``jan``-``dec`` and day names
  ``sun``-``sat`` (any case); day-of-week 0-7 where both 0 and 7 are Sunday;
* when day-of-month and day-of-week are **both restricted**, a day matches when **either** matches;
  a field counts as unrestricted when it *starts with* ``*`` (so ``*/2`` in day-of-month with ``1`` in
  day-of-week means "odd days that are Mondays", as in Vixie cron);
* ``L`` in day-of-month: the month's last day (alone or in a list: ``1,15,L``);
* ``d#k`` in day-of-week: the k-th (1-5) weekday ``d`` of the month (``1#1`` the first Monday,
  ``fri#3`` the third Friday); ``dL``: the last weekday ``d`` of the month (``5L`` the last Friday);
* the macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``),
  ``@hourly``.

Anything else (six fields, ``?``, ``W``, ``@reboot``, a value out of range, a backwards range) is refused
with one line naming the field.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import date

from kpi_alerts.errors import AlertValidationError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
#: Longer expressions are a paste error, not a schedule.
MAX_LENGTH = 200

_NTH = re.compile(r"^(\w+)#(\d+)$")
_LAST_WEEKDAY = re.compile(r"^(\w+)L$", re.IGNORECASE)


@dataclass(frozen=True)
class CronExpression:
    """A parsed expression: the sets each field allows, plus the day extensions."""

    text: str  # as given (macros expanded), what cron-descriptor describes
    minutes: frozenset[int]
    hours: frozenset[int]
    month_days: frozenset[int]  # 1-31
    last_month_day: bool  # ``L`` in day-of-month
    months: frozenset[int]  # 1-12
    weekdays: frozenset[int]  # 0-6, Sunday = 0
    nth_weekdays: frozenset[tuple[int, int]]  # (weekday 0-6, k 1-5)
    last_weekdays: frozenset[int]  # weekdays 0-6 whose last occurrence in the month matches
    day_of_month_star: bool  # the field starts with ``*``: Vixie's "unrestricted"
    day_of_week_star: bool

    @property
    def times_of_day(self) -> tuple[tuple[int, int], ...]:
        """Every (hour, minute) the expression names, in order."""
        return tuple((h, m) for h in sorted(self.hours) for m in sorted(self.minutes))

    def matches_date(self, day: date) -> bool:
        """Does the expression fire on this local date (at some time of day)?"""
        if day.month not in self.months:
            return False
        by_month_day = day.day in self.month_days or (
            self.last_month_day and day.day == calendar.monthrange(day.year, day.month)[1]
        )
        weekday = day.isoweekday() % 7
        by_weekday = (
            weekday in self.weekdays
            or (weekday, (day.day - 1) // 7 + 1) in self.nth_weekdays
            or (weekday in self.last_weekdays and day.day + 7 > calendar.monthrange(day.year, day.month)[1])
        )
        if self.day_of_month_star or self.day_of_week_star:
            return by_month_day and by_weekday
        return by_month_day or by_weekday


def _number(token: str, field: int, low: int, high: int, names: tuple[str, ...]) -> int:
    lowered = token.lower()
    if lowered in names:
        return names.index(lowered) + (1 if names is MONTH_NAMES else 0)
    if not token.isdigit():
        raise AlertValidationError(f"cron {FIELD_NAMES[field]}: {token[:20]!r} is not a number or a name")
    value = int(token)
    if not low <= value <= high:
        raise AlertValidationError(f"cron {FIELD_NAMES[field]}: {value} is outside {low}-{high}")
    return value


def _range(item: str, field: int, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """One list item without the day extensions: ``*``, ``a``, ``a-b``, each with an optional ``/step``."""
    body, _, step_text = item.partition("/")
    if body == "*":
        first, last = low, high
    elif "-" in body:
        a, _, b = body.partition("-")
        first, last = _number(a, field, low, high, names), _number(b, field, low, high, names)
        if first > last:
            raise AlertValidationError(f"cron {FIELD_NAMES[field]}: range {body!r} runs backwards")
    else:
        first = _number(body, field, low, high, names)
        last = high if step_text else first  # `5/15`: from 5 to the field's end
    step = 1
    if step_text:
        if not step_text.isdigit() or not 0 < int(step_text) <= high:
            raise AlertValidationError(f"cron {FIELD_NAMES[field]}: step {step_text[:10]!r} is not 1-{high}")
        step = int(step_text)
    return set(range(first, last + 1, step))


def _split(text: str, field: int) -> list[str]:
    items = text.split(",")
    if any(not item for item in items):
        raise AlertValidationError(f"cron {FIELD_NAMES[field]}: empty item in {text[:40]!r}")
    return items


def _day_of_month(text: str) -> tuple[frozenset[int], bool]:
    days: set[int] = set()
    last = False
    for item in _split(text, 2):
        if item.upper() == "L":
            last = True
        else:
            days |= _range(item, 2, 1, 31, ())
    return frozenset(days), last


def _day_of_week(text: str) -> tuple[frozenset[int], frozenset[tuple[int, int]], frozenset[int]]:
    plain: set[int] = set()
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for item in _split(text, 4):
        if match := _NTH.match(item):
            k = match.group(2)
            if not k.isdigit() or not 1 <= int(k) <= 5:
                raise AlertValidationError(f"cron day-of-week: in {item[:20]!r} the week must be 1-5")
            nth.add((_number(match.group(1), 4, 0, 7, DAY_NAMES) % 7, int(k)))
        elif (match := _LAST_WEEKDAY.match(item)) and item.upper() != "L":
            last.add(_number(match.group(1), 4, 0, 7, DAY_NAMES) % 7)
        else:
            plain |= {d % 7 for d in _range(item, 4, 0, 7, DAY_NAMES)}
    return frozenset(plain), frozenset(nth), frozenset(last)


@functools.lru_cache(maxsize=1024)
def parse_cron(expression: str) -> CronExpression:
    """Parse a five-field expression (or a macro); raise :class:`AlertValidationError` with one line."""
    if not isinstance(expression, str) or not expression.strip():
        raise AlertValidationError("cron_expression must be five fields, e.g. '0 9 * * 1-5'")
    if len(expression) > MAX_LENGTH:
        raise AlertValidationError(f"cron_expression is longer than {MAX_LENGTH} characters")
    text = " ".join(expression.split())
    text = MACROS.get(text.lower(), text)
    if text.startswith("@"):
        raise AlertValidationError(
            f"cron_expression: unknown macro {text[:20]!r} (expected one of {', '.join(MACROS)})"
        )
    fields = text.split(" ")
    if len(fields) != 5:
        raise AlertValidationError(
            f"cron_expression must have 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}: {text[:60]!r}"
        )
    for field, value in enumerate(fields):
        if "?" in value or "W" in value.upper().replace("WED", ""):
            raise AlertValidationError(
                f"cron {FIELD_NAMES[field]}: {value[:20]!r} uses Quartz syntax (? or W), not cron's"
            )
    minute, hour, dom, month, dow = fields
    month_days, last_month_day = _day_of_month(dom)
    weekdays, nth_weekdays, last_weekdays = _day_of_week(dow)
    return CronExpression(
        text=text,
        minutes=frozenset(_range_list(minute, 0, 0, 59, ())),
        hours=frozenset(_range_list(hour, 1, 0, 23, ())),
        month_days=month_days,
        last_month_day=last_month_day,
        months=frozenset(_range_list(month, 3, 1, 12, MONTH_NAMES)),
        weekdays=weekdays,
        nth_weekdays=nth_weekdays,
        last_weekdays=last_weekdays,
        day_of_month_star=dom.startswith("*"),
        day_of_week_star=dow.startswith("*"),
    )


def _range_list(text: str, field: int, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    for item in _split(text, field):
        values |= _range(item, field, low, high, names)
    return values
