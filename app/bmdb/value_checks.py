"""Checks of values that come as text from a URL (a filter, a page's cursor) before they
are bound and cast to a column's type: each returns the text to bind, or raises
ValueError. They accept what PostgreSQL's input functions accept of those types (a
subset where Python is laxer: `1_000`, `urn:uuid:`, week dates, JSON's NaN), so a bound
value never fails its cast: bad input is a 400, not a 500."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import date, datetime, time
from uuid import UUID

_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,1000}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_SPECIAL_NUMBERS = {"nan": "NaN", "infinity": "Infinity", "-infinity": "-Infinity"}
_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
_ZONE = r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
_CLOCK = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
_TIMESTAMP = re.compile(rf"([0-9]{{4,6}})-([0-9]{{2}})-([0-9]{{2}})(?:[T ]{_CLOCK}{_ZONE})?( BC)?")
_TIME = re.compile(rf"{_CLOCK}{_ZONE}")
TRUE = ("1", "true", "t", "yes", "on")
FALSE = ("0", "false", "f", "no", "off")


def check_integer(text: str) -> str:
    if not _INTEGER.fullmatch(text):
        raise ValueError("an integer")
    return text


def check_number(text: str) -> str:
    """A decimal number (NaN and ±Infinity too: numeric and float8 have them)."""
    if _NUMBER.fullmatch(text):
        return text
    special = _SPECIAL_NUMBERS.get(text.lower())
    if special is None:
        raise ValueError("a number")
    return special


def check_bool(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError("true or false")


def check_uuid(text: str) -> str:
    if not _UUID.fullmatch(text):
        raise ValueError("a UUID")
    return str(UUID(text))


def check_timestamp(text: str) -> str:
    """A timestamp or a date as ISO 8601 (`2024-05-01`, `2024-05-01T10:00:00Z`), the way
    PostgreSQL writes one (a space for the T, `+00`, ` BC`), or ±infinity."""
    if text.lower() in ("infinity", "-infinity"):
        return text
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError("an ISO 8601 time, such as 2024-05-01T10:00:00Z")
    plain = text.removesuffix(" BC")
    if len(match[1]) == 4:
        # Python reads years 1-9999: month, day and clock are checked by it.
        datetime.fromisoformat(plain) if len(plain) > 10 else date.fromisoformat(plain)
    elif not (1 <= int(match[2]) <= 12 and 1 <= int(match[3]) <= 28):
        raise ValueError("a time whose month and day exist")
    return text


def check_time(text: str) -> str:
    if not _TIME.fullmatch(text):
        raise ValueError("a time of day, such as 10:30:00")
    time.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return text


def check_inet(text: str) -> str:
    if "/" in text:
        return str(ipaddress.ip_interface(text))
    return str(ipaddress.ip_address(text))


def check_cidr(text: str) -> str:
    return str(ipaddress.ip_network(text))


def _no_constant(name: str) -> None:
    raise ValueError(f"JSON has no {name}")


def check_json(text: str) -> str:
    json.loads(text, parse_constant=_no_constant)
    if "\\u0000" in text:
        raise ValueError("JSONB cannot hold \\u0000")
    return text


def check_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text without NUL characters")
    return text
