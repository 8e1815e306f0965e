"""How a reflected column travels inside a page's JSON document, and how it comes back.

Every page reads its data as one JSON document built by the BMDB (json_build_object,
json_agg). JSON has strings, numbers, booleans and null; a column's PostgreSQL type
says how its value is put into the document (`select_expr`) and re-typed from it
(`decode`), so the two directions are written side by side and cannot drift:

| type | in the document | back in Python |
|---|---|---|
| text, varchar, char, name, enum, macaddr | string | str |
| int2, int4, int8, oid, bool | number, boolean | int, bool |
| float4, float8 | number ("NaN", "Infinity" as strings) | float |
| numeric | its text (a JSON number would round through a float) | Decimal |
| timestamp(tz), date | ISO text ('infinity', BC dates as written) | datetime, date or `PgSpecial` |
| time, timetz | ISO text | time |
| interval | [seconds, its text] | timedelta, or `PgSpecial` beyond Python's range |
| uuid | string | UUID |
| inet, cidr | string | ipaddress objects |
| json, jsonb | its text | str (rendered as JSON by type) |
| bytea | [length, base64 of the first `blob_cap` bytes] | `Blob` |
| arrays of the above | JSON arrays (nested for more dimensions) | lists |
| bytea arrays, `blob_cap` 0 | the elements' lengths (flat) | list of int |
| anything else (ranges, composites, money, ...) | `::text` | str |
"""

from __future__ import annotations

import base64
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from uuid import UUID

from app.bmdb.reflection import NATIVE_UDTS, Field, quote_ident
from app.bmdb.sql import json_array

# The first bytes of a bytea value put into a document: enough for a preview and for
# decoding real hardware reports; the whole value is a download of its own.
BLOB_PREVIEW_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Blob:
    """A bytea value as a page holds it: its length and its first bytes."""

    length: int
    head: bytes

    @property
    def truncated(self) -> bool:
        return len(self.head) < self.length

    @property
    def data(self) -> bytes | None:
        """The whole value, when the document carried all of it."""
        return None if self.truncated else self.head


class PgSpecial:
    """A value Python's types cannot hold, kept as PostgreSQL wrote it: 'infinity',
    '-infinity', a timestamp before year 1 or after 9999, an interval of 2^63 µs.

    `sign` places it before (-1) or after (+1) every ordinary value, so comparisons
    with deadlines and backoff ends still say the right thing.
    """

    __slots__ = ("sign", "text")

    def __init__(self, text: str, sign: int) -> None:
        self.text, self.sign = text, sign

    def __repr__(self) -> str:
        return f"PgSpecial({self.text!r})"

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PgSpecial) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def _cmp(self, other: object) -> int:
        if isinstance(other, PgSpecial):
            return (self.sign > other.sign) - (self.sign < other.sign)
        return self.sign

    def __lt__(self, other: object) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: object) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: object) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: object) -> bool:
        return self._cmp(other) >= 0


# --- into the document ------------------------------------------------------------------


def select_expr(field: Field, column: str, *, blob_cap: int = BLOB_PREVIEW_BYTES) -> str:
    """The SQL expression that puts `column` (already qualified and quoted) into a document.

    `blob_cap`: bytes of a bytea value to carry (0: its length only; for an array, its
    elements' lengths).
    """
    udt = field.element_udt
    if field.is_enum:
        return column  # labels are strings; enum arrays are arrays of them
    if udt not in NATIVE_UDTS:  # travels as its text
        return f"{column}::text"
    if field.is_array and udt == "bytea" and blob_cap <= 0:
        # In order and flat (a multi-dimensional array, which CockroachDB has not, too).
        return (
            f"CASE WHEN {column} IS NULL THEN NULL ELSE ARRAY(SELECT octet_length(e)"
            f" FROM unnest({column}) WITH ORDINALITY AS u(e, i) ORDER BY i) END"
        )
    if field.is_array:
        if udt in ("numeric", "interval", "json", "jsonb", "bytea"):
            return f"{column}::text[]"  # each element as text, decoded per element below
        return column
    if udt == "bytea":
        head = (
            f"encode(substring({column} FROM 1 FOR {int(blob_cap)}), 'base64')"
            if blob_cap > 0
            else "''"
        )
        return (
            f"CASE WHEN {column} IS NULL THEN NULL"
            f" ELSE json_build_array(octet_length({column}), {head}) END"
        )
    if udt in ("numeric", "json", "jsonb"):
        return f"{column}::text"
    if udt == "interval":
        return (
            f"CASE WHEN {column} IS NULL THEN NULL"
            f" ELSE json_build_array(extract(epoch FROM {column}), {column}::text) END"
        )
    return column


def tag_expr(
    fields: tuple[Field, ...], alias: str, *, blob_cap: int = BLOB_PREVIEW_BYTES
) -> str:
    """One tag row's fields as a JSON array, in `fields` order."""
    return json_array([select_expr(f, f"{alias}.{quote_ident(f.name)}", blob_cap=blob_cap)
                       for f in fields])  # fmt: skip


# --- out of the document ----------------------------------------------------------------


Decoder = Callable[[object], object]


def decoder(field: Field) -> Decoder:
    """Re-types one field's document value (None stays None)."""
    udt = field.element_udt
    if field.is_enum or udt not in NATIVE_UDTS:
        return _identity
    element = _ELEMENT_DECODERS.get(udt, _identity)
    if field.is_array:
        if udt in ("numeric", "interval"):
            element = _TEXT_ELEMENT_DECODERS[udt]
        elif udt == "bytea":
            element = _hex_bytes
        return _array_of(element)
    if udt == "bytea":
        return _blob
    if udt == "interval":
        return _interval
    return element


def _identity(value: object) -> object:
    return value


def _array_of(element: Decoder) -> Decoder:
    def decode(value: object) -> object:
        if not isinstance(value, list):
            return value
        return [None if v is None else decode(v) if isinstance(v, list) else element(v)
                for v in value]  # fmt: skip

    return decode


def parse_timestamp(text: object) -> datetime | PgSpecial | object:
    """ISO text as PostgreSQL writes timestamps into JSON; specials kept as they are."""
    if not isinstance(text, str):
        return text
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return _special(text)
    if value.year in (1, 9999) and value.tzinfo is not None:
        # Written in a time zone other than UTC, the first and last hours of Python's range
        # parse but cannot be converted to UTC (which every page does): kept as written.
        try:
            value.astimezone(UTC)
        except OverflowError:
            return PgSpecial(text, 1 if value.year > 1 else -1)
    return value


def _special(text: str) -> PgSpecial:
    return PgSpecial(text, -1 if text.startswith("-") or text.endswith(" BC") else 1)


def _date(text: object) -> object:
    if not isinstance(text, str):
        return text
    try:
        return date.fromisoformat(text)
    except ValueError:
        return _special(text)


def _time(text: object) -> object:
    if not isinstance(text, str):
        return text
    try:
        return time.fromisoformat(text)
    except ValueError:
        return text


def _float(value: object) -> object:
    if isinstance(value, str):  # NaN, Infinity, -Infinity
        try:
            return float(value)
        except ValueError:
            return value
    return float(value) if isinstance(value, int) else value


def _int(value: object) -> object:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return value


def _decimal(value: object) -> object:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return value


def _uuid(value: object) -> object:
    return UUID(value) if isinstance(value, str) else value


def _inet(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return ipaddress.ip_interface(value) if "/" in value else ipaddress.ip_address(value)
    except ValueError:
        return value


def _cidr(value: object) -> object:
    try:
        return ipaddress.ip_network(value) if isinstance(value, str) else value
    except ValueError:
        return value


def _interval(value: object) -> object:
    """[seconds, text]: a timedelta, or the text when Python's range ends first."""
    if not isinstance(value, list) or len(value) != 2:
        return value
    seconds, text = value
    try:
        seconds = float(seconds)
        if not math.isfinite(seconds):
            raise OverflowError
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError, TypeError):
        return _special(text)


def _interval_text(text: object) -> object:
    return text  # an element of an interval array: shown as PostgreSQL wrote it


def _hex_bytes(text: object) -> object:
    """An element of a bytea array: its bytes (an int, its length with `blob_cap` 0, stays)."""
    if isinstance(text, str) and text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return text


def _blob(value: object) -> object:
    if not isinstance(value, list) or len(value) != 2:
        return value
    length, head = value
    return Blob(int(length), base64.b64decode(head or ""))


_ELEMENT_DECODERS: dict[str, Decoder] = {
    "oid": _int,  # PostgreSQL writes oid into JSON as a string
    "float4": _float,
    "float8": _float,
    "numeric": _decimal,
    "uuid": _uuid,
    "timestamp": parse_timestamp,
    "timestamptz": parse_timestamp,
    "date": _date,
    "time": _time,
    "timetz": _time,
    "inet": _inet,
    "cidr": _cidr,
}
_TEXT_ELEMENT_DECODERS: dict[str, Decoder] = {"numeric": _decimal, "interval": _interval_text}
