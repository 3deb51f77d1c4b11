"""What a measure's numbers mean and how they are written: currency, percent, count or plain number.

The unit comes from Cube's meta (``format: currency`` / ``percent``, the member's ``meta.currency`` and
``meta.percent_scale``) unless the alert or its organization says otherwise; numbers are written with
Babel by the alert's locale (``en-US`` by default): thousands separators, decimal mark, the currency's
symbol and position. Counts are whole, currencies have their minor-unit digits, percents one decimal.

``percent_scale`` says what a percent measure holds: ``fraction`` (0.125 is 12.5 %, the convention of
Excel's ``0.0%`` and of Cube's data-modeling docs) or ``percent`` (12.5 is 12.5 %).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal

from kpi_alerts.errors import AlertValidationError

if TYPE_CHECKING:
    from babel import Locale
    from babel.numbers import NumberPattern

    from kpi_alerts.kpi_data import Column, KpiData

PercentScale = Literal["fraction", "percent"]
UnitKind = Literal["currency", "percent", "count", "number"]
PERCENT_SCALES: tuple[str, ...] = ("fraction", "percent")
DEFAULT_LOCALE = "en-US"
#: Cube's counting aggregations: their values are whole numbers.
COUNT_TYPES = frozenset({"count", "countDistinct", "countDistinctApprox", "count_distinct"})
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class DisplaySettings:
    """An alert's display choices (all optional; see migration 0008).

    :param locale: BCP 47 / POSIX name (``en-US``, ``de_DE``, ``fr-CH``).
    :param currency: ISO 4217 code for the alert's currency measures; wins over the organization's.
    :param organization_currency: the organization's currency (``kpi_organization_settings``).
    :param percent_scale: whether the alert's percent measures hold fractions or percents.
    :param column_labels: a column's label by member key (``orders.total_amount``; a time column by its
        dimension, ``orders.created_at``, or with its granularity, ``orders.created_at.day``).
    """

    locale: str = DEFAULT_LOCALE
    currency: str | None = None
    organization_currency: str | None = None
    percent_scale: PercentScale | None = None
    column_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    """How one measure's values are written. ``decimals`` is the precision shown (not stored)."""

    kind: UnitKind
    decimals: int = 2
    currency: str | None = None
    percent_scale: PercentScale = "fraction"

    @property
    def code(self) -> str:
        """The unit as a header or a chart names it: ``USD``, ``%``, or nothing."""
        if self.kind == "currency":
            return self.currency or ""
        return "%" if self.kind == "percent" else ""

    @property
    def header_note(self) -> str:
        """What a CSV header says about raw values: ``USD``, ``fraction, 0.25 = 25 %``, ``%``."""
        if self.kind == "percent":
            return "fraction, 0.25 = 25 %" if self.percent_scale == "fraction" else "%"
        return self.code

    @property
    def excel_format(self) -> str:
        """An Excel number format: Excel shows separators by the reader's own locale."""
        places = "." + "0" * self.decimals if self.decimals else ""
        if self.kind == "currency":
            return f'#,##0{places} "{self.currency}"' if self.currency else f"#,##0{places}"
        if self.kind == "percent":
            # a fraction is shown x100 by Excel's %, a percent value gets a literal "%" instead
            return f"0{places}%" if self.percent_scale == "fraction" else f'0{places}"%"'
        return f"#,##0{places}"


def check_locale(name: str) -> str:
    """The locale name if Babel knows it; raise :class:`AlertValidationError` otherwise."""
    try:
        _locale(name)
    except (ValueError, TypeError) as exc:
        raise AlertValidationError(f"unknown locale {name!r}: use a name such as en-US or de-DE") from exc
    return name


def check_currency(code: str) -> str:
    """An ISO 4217 code (three capital letters Babel knows)."""
    from babel.numbers import get_currency_name

    if not _CURRENCY_CODE.match(code) or get_currency_name(code, locale="en_US") == code:
        raise AlertValidationError(f"unknown currency {code!r}: use an ISO 4217 code such as USD or EUR")
    return code


@functools.cache
def _locale(name: str) -> Locale:
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(name.replace("-", "_"))
    except UnknownLocaleError as exc:
        raise ValueError(str(exc)) from None


def unit_for(column: Column, data: KpiData | None, settings: DisplaySettings) -> Unit:
    """The unit of a measure column: the alert's settings over the organization's over Cube's meta."""
    if column.format == "currency":
        code = settings.currency or settings.organization_currency or column.currency
        return Unit("currency", 2, code.upper() if code else None)
    if column.format == "percent":
        scale = settings.percent_scale or column.percent_scale or "fraction"
        return Unit("percent", 1, percent_scale="percent" if scale == "percent" else "fraction")
    if column.type in COUNT_TYPES or (data is not None and _whole_numbers(data, column)):
        return Unit("count", 0)
    return Unit("number", 2)


def _whole_numbers(data: KpiData, column: Column) -> bool:
    """An unformatted measure holding integers only (a sum of integers, a count typed ``number``)."""
    seen = False
    for row in data.rows:
        value = row.get(column.key)
        if value is None:
            continue
        if not isinstance(value, Decimal) or not value.is_finite():
            return False
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < 0:
            return False
        seen = True
    return seen


def _quantized(value: Decimal, places: int) -> Decimal:
    try:
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return value


def _decimal_pattern(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places else "")


@functools.cache
def _parsed_decimal_pattern(places: int) -> NumberPattern:
    """The pattern parsed once (Babel parses a text pattern at every call; a parsed one is used as is)."""
    from babel.numbers import parse_pattern

    return parse_pattern(_decimal_pattern(places))


def format_number(value: Decimal, places: int, locale: str) -> str:
    """``1,234.50`` in en-US, ``1.234,50`` in de-DE."""
    from babel.numbers import format_decimal

    return format_decimal(
        _quantized(value, places), format=_parsed_decimal_pattern(places), locale=_locale(locale)
    )


def _percent_number(value: Decimal, unit: Unit) -> Decimal:
    return value * 100 if unit.percent_scale == "fraction" else value


@functools.lru_cache(maxsize=256)
def _unit_pattern(kind: Literal["currency", "percent"], locale: str, places: int) -> NumberPattern:
    """The locale's currency or percent pattern with ``places`` decimals, parsed once per combination."""
    from babel.numbers import parse_pattern

    loc = _locale(locale)
    decimals = "0" + ("." + "0" * places if places else "")
    if kind == "currency":
        return parse_pattern(
            re.sub(r"0\.0+", decimals, loc.currency_formats["standard"].pattern.split(";")[0])
        )
    return parse_pattern(re.sub(r"0(?!.*0)", decimals, loc.percent_formats[None].pattern.split(";")[0]))


def format_value(value: Decimal | None, unit: Unit, locale: str, *, places: int | None = None) -> str:
    """A value as a reader sees it: ``$219,795.42``, ``12.5%``, ``1,234``; ``n/a`` for no value."""
    if value is None:
        return "n/a"
    if not value.is_finite():
        return str(value)
    places = unit.decimals if places is None else places
    loc = _locale(locale)
    if unit.kind == "currency" and unit.currency:
        from babel.numbers import format_currency

        return format_currency(
            _quantized(value, places),
            unit.currency,
            format=_unit_pattern("currency", locale, places),
            locale=loc,
            currency_digits=False,
        )
    if unit.kind == "percent":
        from babel.numbers import format_percent

        return format_percent(
            _quantized(_percent_number(value, unit), places) / 100,
            format=_unit_pattern("percent", locale, places),
            locale=loc,
        )
    return format_number(value, places, locale)


def format_plain(value: Decimal | None, unit: Unit, locale: str, *, places: int | None = None) -> str:
    """A value with its unit code after the number, as a subject or a table header reads it:
    ``219,795 USD``, ``12.5 %``, ``1,234``."""
    if value is None:
        return "n/a"
    if not value.is_finite():
        return str(value)
    places = unit.decimals if places is None else places
    if unit.kind == "percent":
        return f"{format_number(_percent_number(value, unit), places, locale)} %"
    number = format_number(value, places, locale)
    return f"{number} {unit.code}" if unit.code else number


def format_signed(value: Decimal, unit: Unit, locale: str) -> str:
    """A change: ``+8,870.42 USD``, ``-12``, ``+1.5 pp`` (percentage points for percent measures)."""
    sign = "+" if value > 0 else ("-" if value < 0 else "±")
    magnitude = abs(value)
    if unit.kind == "percent":
        return f"{sign}{format_number(_percent_number(magnitude, unit), unit.decimals, locale)} pp"
    return sign + format_plain(magnitude, unit, locale)


def format_percent_change(percent: Decimal, locale: str) -> str:
    """``+4.2 %``, ``-0.8 %``, ``±0.0 %`` (one decimal)."""
    sign = "+" if percent > 0 else ("-" if percent < 0 else "±")
    return f"{sign}{format_number(abs(percent), 1, locale)} %"


def headline_places(value: Decimal, unit: Unit) -> int:
    """Digits for a figure in a subject: whole currency units from 1,000 on (``219,795 USD``)."""
    if unit.kind == "currency" and abs(value) >= 1000:
        return 0
    return unit.decimals
