"""Schedules in words, as ``show``, the API and the UI page print them.

Cron expressions are described by ``cron-descriptor`` (24-hour clock). It is asked about the times, the
months and each day field on its own, and the day fields are joined here, because its own joining does
not follow Vixie cron: it leaves out the "or" between a ``L`` / ``#`` day-of-month and day-of-week, and
says "or" where Vixie cron means "and" (``*/2`` in day-of-month with a weekday).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cron_descriptor import ExpressionDescriptor, Options

from kpi_alerts.scheduling.cron import parse_cron

if TYPE_CHECKING:
    from kpi_alerts.scheduling.definition import Schedule

WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MIDNIGHT = "At 00:00, "


def describe_schedule(s: Schedule) -> str:
    """E.g. ``Every Monday and Friday at 09:00 (Europe/London)``; the schedule is taken as valid."""
    at = f"{s.schedule_hour:02d}:{s.schedule_minute:02d}"
    days = sorted(set(s.selected_days))
    if s.frequency_interval == "cron":
        assert s.cron_expression is not None
        text = describe_cron(s.cron_expression)
    elif s.frequency_interval == "month" and s.business_day is not None:
        text = f"Every month on the {_business_day(s.business_day)} at {at}"
    elif s.frequency_interval == "month":
        late = " (or the month's last day)" if days[-1] > 28 else ""
        text = f"Every month on the {_join([ordinal(d) for d in days])}{late} at {at}"
    else:
        every_day = len(days) in (0, 7)
        weekdays = _join([WEEKDAY_NAMES[d] for d in sorted(days, key=lambda d: (d + 6) % 7)])
        if s.frequency_interval == "hour":
            text = f"Every hour at :{s.schedule_minute:02d}" + ("" if every_day else f" on {weekdays}")
        elif (s.every_n_weeks or 1) > 1 and s.start_date is not None:
            every = "other week" if s.every_n_weeks == 2 else f"{s.every_n_weeks} weeks"
            text = f"Every {every} on {weekdays} at {at}, starting the week of {s.start_date:%Y-%m-%d}"
        else:
            text = f"Every {'day' if every_day else weekdays} at {at}"
    if s.start_date is not None and (s.every_n_weeks or 1) == 1:
        text += f", from {s.start_date:%Y-%m-%d}"
    return f"{text}{_holidays(s)} ({s.timezone})"


def _business_day(n: int) -> str:
    if n == 1:
        return "first business day"
    if n == -1:
        return "last business day"
    return f"{ordinal(n)} business day" if n > 0 else f"{ordinal(-n)}-to-last business day"


def _holidays(s: Schedule) -> str:
    if s.holiday_country is None:
        return ""
    region = s.holiday_country + (f"-{s.holiday_subdivision}" if s.holiday_subdivision else "")
    if s.business_day is not None:
        return f", business days by the holidays of {region}"
    if s.on_holiday == "next_business_day":
        return f", moved to the next business day on a public holiday in {region}"
    return f", except on public holidays in {region}"


def describe_cron(expression: str) -> str:
    """A cron expression in words, e.g. ``At 09:00, Monday through Friday``."""
    cron = parse_cron(expression)
    minute, hour, dom, month, dow = cron.text.split(" ")
    parts = [_descriptor(f"{minute} {hour} * * *")]
    restricted_dom, restricted_dow = dom != "*", dow != "*"
    dom_text = _month_days(dom, cron.last_month_day) if restricted_dom else ""
    dow_text = _descriptor(f"0 0 * * {dow}").removeprefix(_MIDNIGHT) if restricted_dow else ""
    if restricted_dom and restricted_dow:
        if cron.day_of_month_star or cron.day_of_week_star:  # Vixie: both must match
            parts.append(f"{dom_text}, but only {dow_text.removeprefix('only ')}")
        else:
            parts.append(f"{dom_text}, or {dow_text.removeprefix('only ')}")
    elif dom_text or dow_text:
        parts.append(dom_text or dow_text)
    if month != "*":
        parts.append(_descriptor(f"0 0 * {month} *").removeprefix(_MIDNIGHT))
    return ", ".join(parts)


def _month_days(field: str, last: bool) -> str:
    numbered = ",".join(item for item in field.split(",") if item.upper() != "L")
    if not numbered:
        return "on the last day of the month"
    text = _descriptor(f"0 0 {numbered} * *").removeprefix(_MIDNIGHT)
    return f"{text}, and on its last day" if last else text


def _descriptor(expression: str) -> str:
    options = Options()
    options.use_24hour_time_format = True
    return str(ExpressionDescriptor(expression, options).get_description())


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(words: list[str]) -> str:
    return ", ".join(words) if len(words) < 2 else f"{', '.join(words[:-1])} and {words[-1]}"


def run_in_words(local: datetime) -> str:
    """One run, as a person reads it: ``Monday 4 January 2027, 09:00 GMT``."""
    return f"{WEEKDAY_NAMES[local.isoweekday() % 7]} {local.day} {local:%B %Y, %H:%M %Z}"
