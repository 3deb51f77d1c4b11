"""Recipient addresses: validated once, the same way, wherever an alert is created or sent.

A bare ``addr-spec`` only: a display name, a comma or a line break in a stored recipient could
add a recipient or a header, so they are refused rather than parsed. Addresses are returned in
their ASCII form (an internationalised domain becomes punycode) because the SMTP path does not
assume SMTPUTF8; mailboxes with a non-ASCII local part are therefore refused.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from kpi_alerts.errors import AlertValidationError

MAX_RECIPIENTS = 100
_FORBIDDEN = frozenset('\r\n,;<>"')


def validate_address(value: object) -> str:
    """One address, normalised (domain lower-cased, ASCII); AlertValidationError names a bad one."""
    if not isinstance(value, str):
        raise AlertValidationError(f"recipient {value!r} is not a string")
    return _validated(value)


@functools.lru_cache(maxsize=4096)  # a batch sends to the same people again and again
def _validated(value: str) -> str:
    text = value.strip()
    if not text or any(ch in _FORBIDDEN or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise AlertValidationError(f"invalid recipient address {value!r}: a single plain address is expected")
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(
            text,
            check_deliverability=False,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_smtputf8=False,
            test_environment=True,  # accept the reserved *.test domain of local stacks
        )
    except EmailNotValidError as exc:
        raise AlertValidationError(f"invalid recipient address {value!r}: {exc}") from None
    return str(result.ascii_email or result.normalized)


def validate_recipients(values: Sequence[str]) -> list[str]:
    """Normalised addresses, deduplicated case-insensitively in their first order (1 to 100)."""
    if isinstance(values, str):
        raise AlertValidationError("recipients must be a list of addresses, not one string")
    if not values:
        raise AlertValidationError("an alert needs at least one recipient")
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        address = validate_address(value)
        if address.casefold() not in seen:
            seen.add(address.casefold())
            out.append(address)
    if len(out) > MAX_RECIPIENTS:
        raise AlertValidationError(f"{len(out)} recipients; at most {MAX_RECIPIENTS} are allowed")
    return out


def validate_domain(value: object) -> str:
    """A recipient domain of an organization's allow-list, normalised as addresses are (lower case,
    punycode); AlertValidationError names a bad one."""
    if not isinstance(value, str) or not value.strip() or "@" in value:
        raise AlertValidationError(
            f"invalid recipient domain {value!r}: a domain such as example.com is expected"
        )
    address = validate_address(f"postmaster@{value.strip().lstrip('.')}")
    return address.rpartition("@")[2].lower()


def outside_domains(addresses: Sequence[str], domains: Sequence[str] | None) -> list[str]:
    """The addresses whose domain is neither one of ``domains`` nor a subdomain of one (None: no list,
    every address is allowed)."""
    if domains is None:
        return []
    allowed = tuple(d.lower() for d in domains)
    out = []
    for address in addresses:
        domain = address.rpartition("@")[2].lower()
        if not any(domain == d or domain.endswith("." + d) for d in allowed):
            out.append(address)
    return out


def check_recipient_domains(
    addresses: Sequence[str], domains: Sequence[str] | None, organization_id: int, what: str = "recipient"
) -> None:
    """Refuse addresses outside the organization's allow-list, naming them and the list (one line)."""
    outside = outside_domains(addresses, domains)
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        raise AlertValidationError(
            f"{what} {shown} is outside organization {organization_id}'s allowed recipient domains "
            f"({', '.join((domains or [])[:10])})"
        )
