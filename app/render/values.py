"""Tag field values as data for the templates to draw, and as JSON.

Values arrive as app/bmdb/columns.py decodes them from a page's document (datetime,
Decimal, UUID, ipaddress, timedelta, list for arrays, str for text, json/jsonb and any
type without a better form, `Blob` for bytea, `PgSpecial` for what Python cannot hold
such as 'infinity'); plain `bytes` too. Here they are classified (`value_kind`), and what
needs decoding is decoded (arrays read as text, JSON, protobuf); app/partials/values.html
draws each kind, so no HTML is written here.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from app.bmdb.columns import Blob, PgSpecial
from app.bmdb.reflection import Field
from app.render.formatting import duration
from app.render.protobuf_decode import (
    PbField,
    bytes_json,
    decode_message,
    float32_text,
    looks_like_protobuf,
    to_jsonable,
)
from app.render.protobuf_names import NamedMessage, ProtoNames, named_json, named_tree

# Columns that hold serialized protobuf messages (the BMDB's hardware report and OS
# installation request and report).
PROTOBUF_COLUMNS = frozenset(
    {"hardware_report_raw", "os_installation_request_raw", "os_installation_report_raw"}
)
JSON_UDTS = frozenset({"json", "jsonb"})

TEXT_CUT = 500  # characters shown before a text value is folded into <details>
TEXT_MAX_LINES = 20  # ...or lines
JSON_CUT = 2000
JSON_MAX_LINES = 20
HEX_CUT = 64  # bytes shown as hex before folding
HEX_FULL_MAX = 4 * 1024  # bytes of hex put in the page at most, even folded (then: download)
PB_MAX_FIELDS = 5000  # decoded fields rendered at most (bigger blobs show as hex)
PB_FOLD_LINES = 20  # a decoded message longer than this shows its start (values.html)

_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)
# Python types and the kind of value they are drawn as, in the order they are tried:
# bool before int (a bool is an int), datetime before date (a datetime is a date).
_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "bool"),
    (datetime, "timestamp"),
    (date, "date"),
    (time, "clock"),
    (timedelta, "interval"),
    ((int, float, Decimal), "number"),
    (UUID, "id"),
    ((bytes, bytearray, memoryview), "bytes"),
    (_IP_TYPES, "addr"),
)


def value_kind(value: object, field: Field | None) -> str:
    """How a value is drawn (app/partials/values.html has a branch for each kind).
    `field` may be None: the kind is then read off the value."""
    if value is None:
        return "null"
    if isinstance(value, PgSpecial):
        return "special"
    if isinstance(value, Blob):
        return "blob"
    if field is not None and field.is_enum and isinstance(value, str):
        return "enum_array" if field.is_array else "enum"
    if isinstance(value, list | tuple):
        return "array"
    for types, kind in _KINDS:
        if isinstance(value, types):
            return kind
    if isinstance(value, str) and field is not None and is_json(field):
        return "json"
    return "text"


def is_json(field: Field) -> bool:
    return field.element_udt in JSON_UDTS and not field.is_array


def element_field(field: Field | None) -> Field | None:
    """The field an array's elements are drawn as."""
    if field is None:
        return None
    return replace(field, data_type=field.element_udt, udt_name=field.element_udt)


def enum_element(field: Field) -> Field:
    """An enum array's element, as a plain enum field."""
    return replace(field, data_type="USER-DEFINED", udt_name=field.element_udt)


def human_interval(td: timedelta) -> str:
    seconds = td.total_seconds()
    sign = "-" if seconds < 0 else ""
    if seconds and abs(seconds) < 1:
        return f"{sign}{abs(seconds) * 1000:g}ms"
    return sign + duration(seconds)


def fold(text: str, cut: int, max_lines: int) -> str | None:
    """The start of a text too long to show whole (at most `cut` characters of its
    first `max_lines` lines); None when it fits."""
    lines = text.split("\n")
    if len(text) <= cut and len(lines) <= max_lines:
        return None
    return "\n".join(lines[:max_lines])[:cut]


def pretty_json(text: str) -> str:
    """JSON indented by two; text that is not JSON as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def nbytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n:,} bytes"


def parse_array_literal(text: str) -> list[str | None] | None:
    """Elements of a one-dimensional PostgreSQL array literal (`{a,"b c",NULL}`).

    None when the text is not one (multi-dimensional, bounds decoration, malformed).
    """
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        return None
    body, items, i = text[1:-1], [], 0
    if not body:
        return []
    while True:
        if i < len(body) and body[i] == '"':
            i += 1
            chars = []
            while i < len(body) and body[i] != '"':
                if body[i] == "\\":
                    i += 1
                    if i >= len(body):
                        return None
                chars.append(body[i])
                i += 1
            if i >= len(body):
                return None
            i += 1
            items.append("".join(chars))
        else:
            j = body.find(",", i)
            j = len(body) if j < 0 else j
            token = body[i:j]
            if any(c in token for c in '{}"\\'):
                return None
            items.append(None if token == "NULL" else token)
            i = j
        if i == len(body):
            return items
        if body[i] != ",":
            return None
        i += 1


# --- bytes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a bytea value holds: a message decoded with its descriptor (`named`), one
    decoded without a schema (`fields`), or neither (shown as hex)."""

    data: bytes
    named: NamedMessage | None = None
    fields: list[PbField] | None = None


def decode_bytes(data: bytes, field: Field | None, names: ProtoNames | None) -> Decoded:
    """`data` decoded with the descriptor set that maps its column, else schema-less when
    its column is known to hold protobuf or it looks like a message."""
    column = field.name if field is not None else None
    named = named_tree(names, column, data)
    if named is not None:
        return Decoded(data, named=named)
    if data and (column in PROTOBUF_COLUMNS or looks_like_protobuf(data)):
        fields = decode_message(data, max_fields=PB_MAX_FIELDS)
        if fields:
            return Decoded(data, fields=fields)
    return Decoded(data)


def pb_lines(decoded: Decoded) -> int:
    """How many lines a decoded message's tree takes (a field each, and its fields)."""
    if decoded.named is not None:
        return _named_lines(decoded.named)
    return _fields_lines(decoded.fields or [])


def _named_lines(message: NamedMessage) -> int:
    nested = sum(1 + (_named_lines(f.message) if f.message else 0) for f in message.fields)
    return nested + (1 if message.unknown else 0)


def _fields_lines(fields: list[PbField]) -> int:
    return sum(1 + (_fields_lines(f.value) if isinstance(f.value, list) else 0) for f in fields)


@dataclass(frozen=True, slots=True)
class Reading:
    """A schema-less number as it is shown, with its other readings on hover."""

    shown: str
    title: str


def pb_reading(f: PbField) -> Reading:
    """A varint or fixed field: the reading most likely meant, and all of them."""
    assert isinstance(f.value, int)
    if f.kind == "varint":
        signed = f.signed
        shown = signed if signed is not None and signed < 0 else f.value
        title = f"uint64 {f.value} · int64 {signed} · sint64 (zigzag) {f.zigzag}"
        return Reading(str(shown), title)
    x = f.as_float
    assert x is not None
    bits = "32" if f.kind == "fixed32" else "64"
    float_text = float32_text(x) if f.kind == "fixed32" else repr(x)
    title = f"fixed{bits} {f.value} · sfixed{bits} {f.signed} · " + (
        f"float {float_text}" if f.kind == "fixed32" else f"double {float_text}"
    )
    if x == 0 or (math.isfinite(x) and 1e-6 <= abs(x) <= 1e15):
        return Reading(float_text, title)  # an int stored as fixed reads as a tiny/huge float
    return Reading(str(f.value), title)


# --- JSON ----------------------------------------------------------------------------


def value_to_json(field: Field | None, value: object) -> object:
    """A JSON-serialisable twin of the value (for JSON APIs)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, PgSpecial):
        return value.text
    if isinstance(value, Blob):
        data = value.data
        if data is None:  # the page has its start only: no decoding
            return {**bytes_json(value.head), "length": value.length, "complete": False}
        return {**value_to_json(field, data), "complete": True}  # type: ignore[dict-item]
    if isinstance(value, str):
        if field is not None and is_json(field):
            try:
                return json.loads(value)
            except ValueError:
                return value
        if field is not None and field.is_enum and field.is_array:  # `::text` form
            labels = parse_array_literal(value)
            return value if labels is None else labels
        return value
    if isinstance(value, list | tuple):
        element = element_field(field)
        return [value_to_json(element, item) for item in value]
    if isinstance(value, datetime):
        if value.tzinfo is None:  # `timestamp without time zone`: as stored
            return value.isoformat()
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out: dict[str, Any] = bytes_json(data)
        out.update(named_json(field.name if field is not None else None, data) or {})
        known = field is not None and field.name in PROTOBUF_COLUMNS
        if data and (known or looks_like_protobuf(data)):
            fields = decode_message(data)
            if fields:
                out["protobuf"] = to_jsonable(fields)
        return out
    # Decimal, UUID, ip addresses and anything else: their text form.
    return str(value)
