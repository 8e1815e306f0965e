"""Schema-less protobuf wire-format decoding: show what a blob holds without .proto files.

Without a schema the wire format is ambiguous: a length-delimited field may be a
string, raw bytes, a nested message or a packed repeated scalar, and a varint may be
unsigned, two's-complement signed or zigzag-encoded. The decoder keeps every reading
available on `PbField` and picks a primary one by heuristics:

- printable UTF-8 text is a string (so short strings are not misread as messages),
  unless it starts the way messages start (a tab/newline/CR byte is the key of field
  1 with wire type 1, 2 or 5) and parses completely as a plausible message;
- otherwise a payload that parses completely as a plausible message is a message;
- otherwise mostly-printable UTF-8 is a string, and anything else is bytes.

Groups (wire types 3 and 4, deprecated since proto2) are rejected: they are vanishingly
rare in practice and accepting them makes random bytes parse far more often.

The work is bounded: nesting stops at `max_depth` (deeper payloads stay bytes), and a
budget of `max_fields` decoded fields (failed nested attempts included) makes a hostile
value return None instead of running long. The decoder never recurses deeper than
`max_depth`, so Python's recursion limit is never in play.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_SGROUP, WIRE_EGROUP, WIRE_I32 = 0, 1, 2, 3, 4, 5
WIRE_NAMES = {WIRE_VARINT: "varint", WIRE_I64: "fixed64", WIRE_LEN: "len", WIRE_I32: "fixed32"}

MAX_FIELD_NUMBER = (1 << 29) - 1  # protobuf's own limit
# Field numbers above this are legal but so rare (real schemas, even extension ranges
# in practice, stay far below) that seeing one means the bytes are probably not protobuf.
PLAUSIBLE_FIELD_NUMBER = 1 << 16
DEFAULT_MAX_DEPTH = 8
HARD_MAX_DEPTH = 32
DEFAULT_MAX_FIELDS = 10_000
_U64 = 1 << 64


class _Invalid(Exception):
    """The bytes are not a (plausible) complete message."""


class _Exhausted(Exception):
    """The field budget ran out: give up on the whole value."""


@dataclass(frozen=True, slots=True)
class PbField:
    """One decoded field.

    `value` is an int (varint, fixed32, fixed64: the unsigned reading), a list of
    PbField (nested message), a str (string) or bytes (anything else length-delimited,
    including empty payloads). `raw` is the payload of a length-delimited field.
    """

    number: int
    wire_type: int
    value: int | str | bytes | list[PbField]
    raw: bytes = b""

    @property
    def kind(self) -> str:
        """varint, fixed32, fixed64, message, string or bytes."""
        if self.wire_type != WIRE_LEN:
            return WIRE_NAMES[self.wire_type]
        if isinstance(self.value, list):
            return "message"
        return "string" if isinstance(self.value, str) else "bytes"

    @property
    def signed(self) -> int | None:
        """Two's-complement reading: int64 for varint/fixed64, int32 for fixed32."""
        if not isinstance(self.value, int) or self.wire_type == WIRE_LEN:
            return None
        bits = 32 if self.wire_type == WIRE_I32 else 64
        v = self.value
        return v - (1 << bits) if v >= 1 << (bits - 1) else v

    @property
    def zigzag(self) -> int | None:
        """sint32/sint64 reading of a varint."""
        if self.wire_type != WIRE_VARINT:
            return None
        v = self.value
        assert isinstance(v, int)
        return (v >> 1) ^ -(v & 1)

    @property
    def as_float(self) -> float | None:
        """float reading of fixed32, double reading of fixed64."""
        if self.wire_type == WIRE_I32:
            return struct.unpack("<f", struct.pack("<I", self.value))[0]
        if self.wire_type == WIRE_I64:
            return struct.unpack("<d", struct.pack("<Q", self.value))[0]
        return None

    @property
    def packed_varints(self) -> list[int] | None:
        """A bytes payload read as a packed repeated varint field, when it is one."""
        if self.kind != "bytes" or not self.raw:
            return None
        return _packed_varints(self.raw)


def decode_message(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_fields: int = DEFAULT_MAX_FIELDS,
) -> list[PbField] | None:
    """Decode `data` as one complete message; None when it is not one.

    An empty buffer is the empty message ([]). None on: an invalid or truncated key or
    varint, field number 0, wire types 3/4/6/7, a length running past the end, or more
    than `max_fields` fields in total.
    """
    data = bytes(data)
    decoder = _Decoder(data, min(max(max_depth, 0), HARD_MAX_DEPTH), max_fields)
    try:
        return decoder.message(0, len(data), 0)
    except (_Invalid, _Exhausted):
        return None


def looks_like_protobuf(data: bytes | bytearray | memoryview | None) -> bool:
    """Conservatively: does an arbitrary bytea look like a serialized message?

    Requires at least two bytes, that the whole buffer parses, and a plausible shape
    (every field number below PLAUSIBLE_FIELD_NUMBER, minimal varint keys, one wire
    type per field number apart from packed/unpacked mixes). Printable text is text.
    """
    if data is None or len(data) < 2:
        return False
    data = bytes(data)
    if _printable_text(data) is not None:
        return False
    fields = decode_message(data)
    return bool(fields) and _plausible_top(data)


def to_jsonable(fields: Sequence[PbField]) -> dict[str, object]:
    """Nested dicts for a JSON API: {"<field number>": value, ...}.

    A number seen more than once becomes a list in wire order. Varints are integers
    (a value >= 2**63 as its negative int64 reading); fixed32/fixed64 are
    {"fixed32"|"fixed64": int, "float"|"double": x}; strings are strings; bytes are
    {"hex", "length"}; messages nest.
    """
    out: dict[str, object] = {}
    repeated: set[str] = set()
    for f in fields:
        key = str(f.number)
        value = _field_json(f)
        if key not in out:
            out[key] = value
        elif key in repeated:
            out[key].append(value)  # type: ignore[attr-defined]
        else:
            out[key] = [out[key], value]
            repeated.add(key)
    return out


def float32_text(x: float) -> str:
    """Shortest decimal that reads back as the same float32 (0.97, not 0.9700000286)."""
    if not math.isfinite(x):
        return repr(x)
    packed = struct.pack("<f", x)
    for digits in range(6, 10):
        text = f"{x:.{digits}g}"
        if struct.pack("<f", float(text)) == packed:
            return text
    return repr(x)


def bytes_json(data: bytes) -> dict[str, object]:
    return {
        "hex": data.hex(),
        "base64": base64.b64encode(data).decode("ascii"),
        "length": len(data),
    }


# --- internals ----------------------------------------------------------------------


def _field_json(f: PbField) -> object:
    kind = f.kind
    if kind == "varint":
        return f.signed
    if kind in ("fixed32", "fixed64"):
        name = "float" if kind == "fixed32" else "double"
        out: dict[str, object] = {kind: f.value}
        x = f.as_float
        if x is not None and math.isfinite(x):
            out[name] = float(float32_text(x)) if kind == "fixed32" else x
        return out
    if kind == "message":
        assert isinstance(f.value, list)
        return to_jsonable(f.value)
    if kind == "string":
        return f.value
    return {"hex": f.raw.hex(), "length": len(f.raw)}


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(10):
        if pos >= end:
            raise _Invalid("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if i == 9 and b > 1:
                raise _Invalid("varint overflows 64 bits")
            return result, pos
        shift += 7
    raise _Invalid("varint longer than 10 bytes")


def _packed_varints(data: bytes, limit: int = 1000) -> list[int] | None:
    values, pos, end = [], 0, len(data)
    try:
        while pos < end:
            if len(values) >= limit:
                return None
            start = pos
            v, pos = _read_varint(data, pos, end)
            if pos - start != _varint_size(v):
                return None  # encoders never pad varints; random bytes often do
            values.append(v)
    except _Invalid:
        return None
    return values


def _printable_text(data: bytes) -> str | None:
    """The text when `data` is UTF-8 of printable characters (tab, LF, CR allowed)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.isprintable() or all(c.isprintable() or c in "\t\n\r" for c in text):
        return text
    return None


def _mostly_text(data: bytes) -> str | None:
    """UTF-8 with a few control characters (ANSI colours, form feeds...), no NUL."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\0" in text:
        return None
    control = sum(1 for c in text if not c.isprintable() and c not in "\t\n\r")
    return text if control * 10 <= len(text) else None


class _Decoder:
    def __init__(self, data: bytes, max_depth: int, max_fields: int) -> None:
        self.data = data
        self.max_depth = max_depth
        self.budget = max_fields

    def message(self, start: int, end: int, depth: int) -> list[PbField]:
        data = self.data
        fields: list[PbField] = []
        pos = start
        while pos < end:
            key, pos = _read_varint(data, pos, end)
            if key > 0xFFFFFFFF:
                raise _Invalid("key does not fit 32 bits")
            number, wire_type = key >> 3, key & 7
            if number == 0 or number > MAX_FIELD_NUMBER:
                raise _Invalid("bad field number")
            self.budget -= 1
            if self.budget < 0:
                raise _Exhausted
            if wire_type == WIRE_VARINT:
                value, pos = _read_varint(data, pos, end)
                fields.append(PbField(number, wire_type, value))
            elif wire_type == WIRE_I64:
                if end - pos < 8:
                    raise _Invalid("truncated fixed64")
                value = int.from_bytes(data[pos : pos + 8], "little")
                fields.append(PbField(number, wire_type, value))
                pos += 8
            elif wire_type == WIRE_I32:
                if end - pos < 4:
                    raise _Invalid("truncated fixed32")
                value = int.from_bytes(data[pos : pos + 4], "little")
                fields.append(PbField(number, wire_type, value))
                pos += 4
            elif wire_type == WIRE_LEN:
                length, pos = _read_varint(data, pos, end)
                if length > end - pos:
                    raise _Invalid("length past the end")
                raw = data[pos : pos + length]
                payload = self.payload(pos, pos + length, depth)
                fields.append(PbField(number, wire_type, payload, raw))
                pos += length
            else:
                raise _Invalid(f"wire type {wire_type}")
        return fields

    def payload(self, start: int, end: int, depth: int) -> str | bytes | list[PbField]:
        raw = self.data[start:end]
        if not raw:
            return b""  # empty string, bytes and message all look alike: keep bytes
        text = _printable_text(raw)
        if text is not None and raw[0] not in (0x09, 0x0A, 0x0D):
            return text
        if depth < self.max_depth:
            try:
                nested = self.message(start, end, depth + 1)
            except _Invalid:
                nested = None
            if nested and _plausible(nested):
                return nested
        if text is not None:
            return text
        mostly = _mostly_text(raw)
        return mostly if mostly is not None else raw


def _plausible(fields: list[PbField]) -> bool:
    """Cheap shape checks that random bytes fail far more often than real messages."""
    wire_types: dict[int, int] = {}
    for f in fields:
        if f.number > PLAUSIBLE_FIELD_NUMBER:
            return False
        seen = wire_types.setdefault(f.number, f.wire_type)
        # A repeated scalar may arrive packed (LEN) and unpacked; nothing else mixes.
        if seen != f.wire_type and WIRE_LEN not in (seen, f.wire_type):
            return False
    return True


def _plausible_top(data: bytes) -> bool:
    """Top-level checks for looks_like_protobuf: plausible fields and minimal keys."""
    fields = decode_message(data, max_depth=0)
    if not fields or not _plausible(fields):
        return False
    # Encoders write keys minimally: re-encode each key and compare with the wire.
    pos, end = 0, len(data)
    for f in fields:
        key_start = pos
        key, pos = _read_varint(data, pos, end)
        if pos - key_start != _varint_size(key):
            return False
        if f.wire_type == WIRE_VARINT:
            v_start = pos
            _, pos = _read_varint(data, pos, end)
            if pos - v_start != _varint_size(f.value):  # type: ignore[arg-type]
                return False
        elif f.wire_type == WIRE_I64:
            pos += 8
        elif f.wire_type == WIRE_I32:
            pos += 4
        else:
            l_start = pos
            length, pos = _read_varint(data, pos, end)
            if pos - l_start != _varint_size(length):
                return False
            pos += length
    return True


def _varint_size(v: int) -> int:
    return max(1, (v.bit_length() + 6) // 7)
