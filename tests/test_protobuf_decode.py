"""Schema-less protobuf decoding: real messages, hand-built wire bytes, garbage, bounds."""

from __future__ import annotations

import random
import struct
import time

import pytest
from google.protobuf import descriptor_pb2, struct_pb2, timestamp_pb2

from app.render.protobuf_decode import (
    WIRE_I32,
    WIRE_I64,
    WIRE_LEN,
    WIRE_VARINT,
    PbField,
    decode_message,
    float32_text,
    looks_like_protobuf,
    to_jsonable,
)


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def f_varint(number: int, value: int) -> bytes:
    return key(number, WIRE_VARINT) + varint(value)


def f_len(number: int, payload: bytes) -> bytes:
    return key(number, WIRE_LEN) + varint(len(payload)) + payload


def shape(fields: list[PbField]) -> list[tuple]:
    """(number, kind, value) with nested messages expanded: easy to compare."""
    return [
        (f.number, f.kind, shape(f.value) if isinstance(f.value, list) else f.value) for f in fields
    ]


# --- real protobuf bytes (google.protobuf) ---------------------------------------------


def test_file_descriptor_proto_nested_messages_and_strings():
    fd = descriptor_pb2.FileDescriptorProto(name="foo.proto", package="pkg")
    msg = fd.message_type.add(name="Msg")
    msg.field.add(name="id", number=1, label=1, type=3)
    msg.field.add(name="names", number=2, label=3, type=9)

    fields = decode_message(fd.SerializeToString())

    assert fields is not None
    assert shape(fields) == [
        (1, "string", "foo.proto"),
        (2, "string", "pkg"),
        (4, "message", [
            (1, "string", "Msg"),
            (2, "message", [(1, "string", "id"), (3, "varint", 1), (4, "varint", 1),
                            (5, "varint", 3)]),
            (2, "message", [(1, "string", "names"), (3, "varint", 2), (4, "varint", 3),
                            (5, "varint", 9)]),
        ]),
    ]  # fmt: skip


def test_timestamp_with_negative_seconds_is_a_negative_int64():
    data = timestamp_pb2.Timestamp(seconds=-1, nanos=5).SerializeToString()

    fields = decode_message(data)

    assert fields is not None
    seconds, nanos = fields
    assert (seconds.number, seconds.kind, seconds.value) == (1, "varint", 2**64 - 1)
    assert seconds.signed == -1
    assert (nanos.number, nanos.value, nanos.signed) == (2, 5, 5)
    assert to_jsonable(fields) == {"1": -1, "2": 5}


def test_struct_map_entries_double_and_repeated_numbers():
    s = struct_pb2.Struct()
    s.update({"a": "<script>", "n": 1.5})
    fields = decode_message(s.SerializeToString(deterministic=True))

    assert fields is not None
    assert to_jsonable(fields) == {
        "1": [  # map entries are a repeated field 1
            {"1": "a", "2": {"3": "<script>"}},
            {"1": "n", "2": {"2": {"fixed64": 0x3FF8000000000000, "double": 1.5}}},
        ]
    }
    double = fields[1].value[1].value[0]  # entry "n" -> Value -> number_value
    assert double.wire_type == WIRE_I64 and double.as_float == 1.5


# --- hand-assembled wire bytes ---------------------------------------------------------


def test_hand_built_nested_repeated_negative_zigzag_fixed():
    inner = f_varint(1, 7) + f_len(2, b"disk\x00")  # NUL: not text; no message either
    data = (
        f_varint(1, -5)  # int64 -5: ten-byte varint
        + f_varint(2, 5)  # sint64 -3 zigzags to 5
        + f_len(3, inner)
        + f_len(3, inner)
        + f_len(4, "héllo wörld".encode())
        + key(5, WIRE_I32)
        + struct.pack("<f", 0.97)
        + key(6, WIRE_I64)
        + struct.pack("<d", -2.25)
        + f_len(7, varint(1) + varint(300) + varint(2**40))  # packed repeated
    )

    fields = decode_message(data)

    assert fields is not None
    by_number = {f.number: f for f in fields}
    assert len(varint(-5)) == 10
    assert by_number[1].value == 2**64 - 5 and by_number[1].signed == -5
    assert by_number[2].value == 5 and by_number[2].zigzag == -3
    assert [f.number for f in fields] == [1, 2, 3, 3, 4, 5, 6, 7]
    assert shape([fields[2]]) == [(3, "message", [(1, "varint", 7), (2, "bytes", b"disk\x00")])]
    assert by_number[4].value == "héllo wörld"
    assert by_number[5].kind == "fixed32" and float32_text(by_number[5].as_float) == "0.97"
    assert by_number[6].kind == "fixed64" and by_number[6].as_float == -2.25
    assert by_number[6].signed == struct.unpack("<q", struct.pack("<d", -2.25))[0]
    assert by_number[7].kind == "bytes" and by_number[7].packed_varints == [1, 300, 2**40]

    js = to_jsonable(fields)
    assert js["1"] == -5
    assert js["3"] == [{"1": 7, "2": {"hex": "6469736b00", "length": 5}},
                       {"1": 7, "2": {"hex": "6469736b00", "length": 5}}]  # fmt: skip
    assert js["5"] == {"fixed32": struct.unpack("<I", struct.pack("<f", 0.97))[0], "float": 0.97}
    assert js["7"] == {"hex": (varint(1) + varint(300) + varint(2**40)).hex(), "length": 9}


def test_short_printable_text_stays_text_even_when_it_parses():
    # b" A" is also a valid message {4: 65}; text wins for printable UTF-8.
    assert decode_message(b" A") == [PbField(4, WIRE_VARINT, 65)]
    fields = decode_message(f_len(1, b" A") + f_len(2, b"hello"))
    assert shape(fields) == [(1, "string", " A"), (2, "string", "hello")]


def test_message_that_happens_to_be_printable_is_still_a_message():
    # {1: 40-char string} is "\n(" + text: printable, but it starts like a message.
    nested = f_len(1, b"x" * 40)
    fields = decode_message(f_len(2, nested))
    assert shape(fields) == [(2, "message", [(1, "string", "x" * 40)])]
    # ...while text that merely starts with a newline stays text.
    assert shape(decode_message(f_len(2, b"\nhello"))) == [(2, "string", "\nhello")]


def test_empty_payload_and_empty_message():
    assert decode_message(b"") == []
    fields = decode_message(f_varint(1, 3) + f_len(2, b""))
    assert shape(fields) == [(1, "varint", 3), (2, "bytes", b"")]
    assert to_jsonable(fields) == {"1": 3, "2": {"hex": "", "length": 0}}


def test_random_bytes_payload_is_bytes_not_message():
    payload = bytes.fromhex("ff00fe01fd02fc03")
    fields = decode_message(f_len(1, payload))
    assert shape(fields) == [(1, "bytes", payload)]
    assert to_jsonable(fields) == {"1": {"hex": "ff00fe01fd02fc03", "length": 8}}


# --- garbage and truncation ------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x08",  # key without its varint
        b"\x08\x80",  # truncated varint
        b"\x0a\x05ab",  # length past the end
        b"\x0a",  # length missing
        b"\x00\x01",  # field number 0
        b"\x0b\x08\x01\x0c",  # group (wire type 3) rejected
        b"\x0c",  # end group (4)
        b"\x0e\x01",  # wire type 6
        b"\x0f\x01",  # wire type 7
        b"\x09\x01\x02\x03",  # truncated fixed64
        b"\x0d\x01\x02",  # truncated fixed32
        b"\x08\x01\xff",  # trailing garbage
        b"\x08" + b"\xff" * 10 + b"\x01",  # varint longer than 10 bytes
        b"\x08" + b"\xff" * 9 + b"\x02",  # varint overflows 64 bits
        b"\xff\xff\xff\xff\xff\x0f\x01",  # key beyond 32 bits
        b"\xff\xff\xff\xff\x7f\x01",  # field number beyond 2**29 - 1
        b"plain <\xff",  # text-ish bytes ending mid-field
    ],
)
def test_garbage_and_truncated_bytes_do_not_decode(data):
    assert decode_message(data) is None
    assert looks_like_protobuf(data) is False


def test_truncation_of_a_real_message_is_rejected_except_on_field_boundaries():
    data = descriptor_pb2.FileDescriptorProto(name="foo.proto", package="pkg").SerializeToString()
    assert len(data) == 16  # 0a 09 "foo.proto" | 12 03 "pkg"
    valid_prefixes = {cut for cut in range(1, len(data)) if decode_message(data[:cut]) is not None}
    assert valid_prefixes == {11}  # exactly the end of field 1


# --- looks_like_protobuf ---------------------------------------------------------------


def test_looks_like_protobuf_accepts_real_messages():
    assert looks_like_protobuf(timestamp_pb2.Timestamp(seconds=1700000000).SerializeToString())
    fd = descriptor_pb2.FileDescriptorProto(name="a.proto", package="p")
    assert looks_like_protobuf(fd.SerializeToString())
    assert looks_like_protobuf(b"\x08\x01")
    assert looks_like_protobuf(b"\x08\x01\x15\x00\x00\x00\x00")  # field 2 as fixed32


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"\x08",  # one byte: too short to tell
        b"hello world",  # printable text is text
        b"\x88\x00\x01",  # parses, but with a padded (non-minimal) key
        b"\x08\x81\x00",  # ...or a padded varint
        b"\x08\x01\x0d\x00\x00\x00\x00",  # field 1 both as varint and as fixed32
    ],
)
def test_looks_like_protobuf_is_conservative(data):
    assert looks_like_protobuf(data) is False


def test_looks_like_protobuf_rarely_accepts_random_keys():
    rng = random.Random(1234)
    hits = sum(looks_like_protobuf(rng.randbytes(32)) for _ in range(5000))
    assert hits < 25  # < 0.5 % of random 32-byte values (e.g. agent public keys)


# --- bounds ----------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    data = f_varint(1, 1)
    for _ in range(levels):
        data = f_len(1, data)
    return data


def depth_of(fields: list[PbField]) -> tuple[int, object]:
    """How many message levels below the top, and what the deepest payload is."""
    depth = 0
    while len(fields) == 1 and isinstance(fields[0].value, list):
        fields = fields[0].value
        depth += 1
    return depth, fields[0].value


def test_nesting_stops_at_max_depth_and_keeps_bytes():
    data = nested(50)
    fields = decode_message(data, max_depth=8)
    assert fields is not None
    depth, deepest = depth_of(fields)
    assert depth == 8
    assert isinstance(deepest, bytes) and deepest == nested(41)

    depth, deepest = depth_of(decode_message(nested(5)))
    assert depth == 5 and deepest == 1


def test_hostile_deep_nesting_is_fast_and_bounded():
    data = nested(20_000)  # ~ 60 KB, 20k levels: no RecursionError, no quadratic work
    started = time.perf_counter()
    fields = decode_message(data, max_depth=1000)  # capped internally
    assert fields is not None
    assert depth_of(fields)[0] <= 32
    assert time.perf_counter() - started < 2


def test_hostile_megabyte_of_fields_hits_the_budget():
    data = f_varint(1, 1) * 500_000  # 1 MB, half a million fields
    started = time.perf_counter()
    assert decode_message(data) is None
    assert looks_like_protobuf(data) is False
    assert time.perf_counter() - started < 2
    assert decode_message(data[:2000], max_fields=1000) is not None
    assert decode_message(data[:2002], max_fields=1000) is None


def test_random_megabyte_is_quick():
    data = random.Random(5).randbytes(1 << 20)
    started = time.perf_counter()
    decode_message(data)
    looks_like_protobuf(data)
    assert time.perf_counter() - started < 2
