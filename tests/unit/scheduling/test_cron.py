"""Cron parsing, refusals, wording, business days and the calendar refusals (examples; the properties are in
test_calendar_properties.py)."""

from __future__ import annotations

from datetime import date

import pytest

from kpi_alerts.alerts.spec import parse_schedule_spec
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.scheduling.business_days import BusinessCalendar
from kpi_alerts.scheduling.cron import parse_cron
from kpi_alerts.scheduling.schedule import describe
from kpi_alerts.scheduling.wording import describe_cron


class TestParse:
    def test_names_ranges_steps_and_sunday_as_7(self) -> None:
        cron = parse_cron("5/20 8-18/5 * JAN,mar-May Sun,7,fri")
        assert cron.minutes == {5, 25, 45}
        assert cron.hours == {8, 13, 18}
        assert cron.months == {1, 3, 4, 5}
        assert cron.weekdays == {0, 5}
        assert cron.day_of_month_star and not cron.day_of_week_star

    def test_day_extensions(self) -> None:
        cron = parse_cron("0 9 1,L * mon#1,5L")
        assert cron.month_days == {1} and cron.last_month_day
        assert cron.nth_weekdays == {(1, 1)} and cron.last_weekdays == {5}

    def test_macros(self) -> None:
        assert parse_cron("@weekly").text == "0 0 * * 0"
        assert parse_cron("  @Daily ").text == "0 0 * * *"

    @pytest.mark.parametrize(
        ("expression", "message"),
        [
            pytest.param("0 9 * *", "must have 5 fields", id="four-fields"),
            pytest.param("0 0 9 * * *", "must have 5 fields", id="six-fields"),
            pytest.param("60 * * * *", "cron minute: 60 is outside 0-59", id="minute-60"),
            pytest.param("0 24 * * *", "cron hour: 24 is outside 0-23", id="hour-24"),
            pytest.param("0 9 0 * *", "cron day-of-month: 0 is outside 1-31", id="day-0"),
            pytest.param("0 9 * 13 *", "cron month: 13 is outside 1-12", id="month-13"),
            pytest.param("0 9 * * 8", "cron day-of-week: 8 is outside 0-7", id="weekday-8"),
            pytest.param("0 9 * * fri-mon", "runs backwards", id="backwards"),
            pytest.param("*/0 * * * *", "step '0' is not 1-59", id="step-0"),
            pytest.param("0 9 ? * 1", "Quartz syntax", id="question-mark"),
            pytest.param("0 9 15W * *", "Quartz syntax", id="nearest-weekday"),
            pytest.param("0 9 * * 1#6", "the week must be 1-5", id="sixth-monday"),
            pytest.param("0 9 * * funday", "is not a number or a name", id="bad-name"),
            pytest.param("0 9 1,,2 * *", "empty item", id="empty-item"),
            pytest.param("@reboot", "unknown macro", id="reboot"),
            pytest.param("", "must be five fields", id="empty"),
        ],
    )
    def test_refusals_are_one_line(self, expression: str, message: str) -> None:
        with pytest.raises(AlertValidationError, match=message) as exc:
            parse_cron(expression)
        assert "\n" not in str(exc.value)

    @pytest.mark.parametrize(
        ("day", "matches"),
        [
            (date(2027, 1, 1), True),  # day 1, a Friday: either field matches (both restricted)
            (date(2027, 1, 4), True),  # the first Monday
            (date(2027, 1, 11), False),  # the second Monday
            (date(2027, 1, 29), True),  # the last Friday
            (date(2027, 1, 31), True),  # L
            (date(2027, 1, 30), False),
        ],
    )
    def test_vixie_or_between_restricted_day_fields(self, day: date, matches: bool) -> None:
        assert parse_cron("0 9 1,L * mon#1,5L").matches_date(day) is matches

    def test_a_day_field_starting_with_star_makes_it_and(self) -> None:
        cron = parse_cron("0 9 */2 * 1")  # odd days that are Mondays (Vixie)
        assert cron.matches_date(date(2027, 1, 11)) and not cron.matches_date(date(2027, 1, 18))
        assert not cron.matches_date(date(2027, 1, 13))  # odd, a Wednesday


class TestWords:
    @pytest.mark.parametrize(
        ("expression", "text"),
        [
            ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
            ("*/15 9-16 * * mon-fri", "Every 15 minutes, between 09:00 and 16:59, Monday through Friday"),
            ("0 9 L * *", "At 09:00, on the last day of the month"),
            ("0 9 1,15,L * *", "At 09:00, on day 1 and 15 of the month, and on its last day"),
            ("0 9 L * 5#1", "At 09:00, on the last day of the month, or on the first Friday of the month"),
            ("0 9 1 * 1", "At 09:00, on day 1 of the month, or on Monday"),
            ("0 9 */2 * 1", "At 09:00, every 2 days, but only on Monday"),
            ("30 17 * * 5L", "At 17:30, on the last Friday of the month"),
            (
                "0 9 * 1,4,7,10 1#1",
                "At 09:00, on the first Monday of the month, only in January, April, July, and October",
            ),
            ("@daily", "At 00:00"),
        ],
    )
    def test_cron_in_words(self, expression: str, text: str) -> None:
        assert describe_cron(expression) == text


class TestBusinessDays:
    def test_weekdays_without_a_country(self) -> None:
        weekdays = BusinessCalendar()
        assert weekdays.nth_business_day(2027, 5, -1) == date(2027, 5, 31)
        assert weekdays.nth_business_day(2027, 5, 1) == date(2027, 5, 3)  # the 1st is a Saturday
        assert weekdays.next_business_day(date(2027, 5, 28)) == date(2027, 5, 31)

    def test_public_holidays_of_a_subdivision(self) -> None:
        new_york = BusinessCalendar("US", "NY")
        assert new_york.holiday(date(2027, 5, 31)) == "Memorial Day"
        assert new_york.nth_business_day(2027, 5, -1) == date(2027, 5, 28)
        assert new_york.is_business_day(date(2027, 7, 5)) is False  # the 4th of July observed
        england = BusinessCalendar("GB", "ENG")
        assert england.nth_business_day(2027, 1, 1) == date(2027, 1, 4)  # New Year's Day (Fri), weekend


class TestScheduleRefusals:
    @pytest.mark.parametrize(
        ("schedule", "message"),
        [
            ({"frequency_interval": "cron", "cron_expression": "0 9 30 2 *"}, "this schedule never fires"),
            (
                {"frequency_interval": "cron", "cron_expression": "0 0 31 4,6,9,11 *"},
                "this schedule never fires",
            ),
            (
                {"frequency_interval": "cron", "cron_expression": "0 9 25 12 *", "holiday_country": "GB"},
                "this schedule never fires",
            ),
            ({"frequency_interval": "cron"}, "needs a cron_expression"),
            ({"frequency_interval": "cron", "cron_expression": "* * * * *"}, "fires 1 minute"),
            ({"frequency_interval": "cron", "cron_expression": "0,3 9 * * *"}, "fires 3 minute"),
            ({"frequency_interval": "cron", "cron_expression": "58 23 * * *"}, None),
            ({"frequency_interval": "cron", "cron_expression": "0,58 * * * *"}, "fires 2 minute"),
            ({"frequency_interval": "cron", "cron_expression": "*/5 * * * *"}, None),
            (
                {"frequency_interval": "day", "cron_expression": "0 9 * * *"},
                "only for frequency_interval 'cron'",
            ),
            ({"frequency_interval": "week", "selected_days": [1], "every_n_weeks": 0}, "from 1 to 52, got 0"),
            ({"frequency_interval": "week", "selected_days": [1], "every_n_weeks": 2}, "needs a start_date"),
            ({"frequency_interval": "day", "every_n_weeks": 2}, "only for frequency_interval 'week'"),
            ({"frequency_interval": "month", "business_day": 0}, "business_day 0 means nothing"),
            ({"frequency_interval": "month", "business_day": 11}, "from -10 to 10"),
            (
                {"frequency_interval": "week", "selected_days": [1], "business_day": 1},
                "only for frequency_interval 'month'",
            ),
            (
                {"frequency_interval": "month", "business_day": 1, "selected_days": [1]},
                "leave out selected_days",
            ),
            ({"frequency_interval": "day", "holiday_country": "XX"}, "unknown holiday country 'XX'"),
            (
                {"frequency_interval": "day", "holiday_country": "US", "holiday_subdivision": "ZZ"},
                "unknown holiday subdivision",
            ),
            ({"frequency_interval": "day", "on_holiday": "skip"}, "need a holiday_country"),
            (
                {
                    "frequency_interval": "month",
                    "business_day": -1,
                    "holiday_country": "US",
                    "on_holiday": "skip",
                },
                "does not apply to a business-day schedule",
            ),
            ({"frequency_interval": "day", "holiday_country": "US", "on_holiday": "later"}, "on_holiday"),
            ({"frequency_interval": "fortnight"}, "Invalid schedule: frequency_interval"),
        ],
    )
    def test_one_readable_line(self, schedule: dict[str, object], message: str | None) -> None:
        if message is None:  # accepted
            parse_schedule_spec(schedule)
            return
        with pytest.raises(AlertValidationError, match=message) as exc:
            parse_schedule_spec(schedule)
        assert "\n" not in str(exc.value) and len(str(exc.value)) <= 300

    def test_calendar_words(self) -> None:
        every_third = {
            "frequency_interval": "week",
            "every_n_weeks": 3,
            "start_date": "2027-01-06",
            "selected_days": [3],
        }
        assert describe(parse_schedule_spec(every_third)) == (
            "Every 3 weeks on Wednesday at 00:00, starting the week of 2027-01-06 (UTC)"
        )
        second_to_last = {"frequency_interval": "month", "business_day": -2, "schedule_hour": 8}
        assert describe(parse_schedule_spec(second_to_last)) == (
            "Every month on the 2nd-to-last business day at 08:00 (UTC)"
        )
        moved = {"frequency_interval": "day", "holiday_country": "NZ", "on_holiday": "next_business_day"}
        assert describe(parse_schedule_spec(moved)) == (
            "Every day at 00:00, moved to the next business day on a public holiday in NZ (UTC)"
        )
        started = {"frequency_interval": "day", "start_date": "2027-02-01"}
        assert describe(parse_schedule_spec(started)) == "Every day at 00:00, from 2027-02-01 (UTC)"
