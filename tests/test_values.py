"""Rendering tag values by type: escaping, NULL, folding, protobuf trees, JSON twins."""

from __future__ import annotations

import ipaddress
import json
import re
import struct
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from google.protobuf import timestamp_pb2
from markupsafe import Markup

from app.bmdb.reflection import Field
from app.render.environment import build_environment
from app.render.values import (
    HEX_CUT,
    HEX_FULL_MAX,
    PB_FOLD_LINES,
    TEXT_CUT,
    parse_array_literal,
    value_to_json,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
XSS = "<script>alert(1)</script>"
PROVIDERS = ("Equinix", "Lumen", "None")


# --- protobuf wire bytes, built by hand (field numbers as in Monogon's agent protos) -----


def varint(n: int) -> bytes:
    n = n + (1 << 64) if n < 0 else n
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def pb_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def pb_len(number: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def pb_float(number: int, value: float) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<f", value)


def installation_report(generation: int, error: str) -> bytes:
    return pb_varint(1, generation) + pb_len(3, pb_len(1, error))


def hardware_report() -> bytes:
    cpu = (
        pb_len(1, pb_varint(1, 23) + pb_varint(2, 49))
        + pb_varint(8, 32)
        + pb_len(10, "AuthenticAMD")
    )
    disk = pb_len(1, "ATA") + pb_len(2, "MZ7KH240HAHQ0D3") + pb_varint(6, 240 * 10**9)
    nic = pb_len(1, bytes.fromhex("b8599f61b55e")) + pb_len(2, "mlx5_core")
    node = (
        pb_len(1, "Dell Inc.")
        + pb_varint(8, 256 << 30)
        + pb_float(9, 0.97)
        + pb_len(10, cpu)
        + pb_len(11, disk) * 2
        + pb_len(12, nic)
    )
    return pb_len(1, node) + pb_len(2, "warning: <script>")


def field(name="f", data_type="text", udt="text", enum_values=()) -> Field:
    return Field(name, data_type, udt, True, tuple(enum_values))


VALUES = build_environment(None).get_template("partials/values.html").module


def render(f: Field | None, value: object) -> str:
    """The value as app/partials/values.html's `value` macro draws it."""
    out = VALUES.value(f, value)
    assert isinstance(out, Markup)
    return str(out)


def assert_no_raw_script(html: str) -> None:
    assert "<script" not in html.lower()


# --- NULL and text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "f", [field(), field(udt="bytea", data_type="bytea"), field(udt="int8"), None]
)
def test_null(f):
    assert render(f, None) == '<span class="null">NULL</span>'


def test_empty_string_is_not_null():
    assert render(field(), "") == '<span class="empty">empty string</span>'


def test_text_is_escaped():
    html = render(field(), XSS)
    assert html == '<span class="text">&lt;script&gt;alert(1)&lt;/script&gt;</span>'


def test_multi_line_text_keeps_its_lines():
    html = render(field(), "line one\n  <b>two</b>\nthree")
    assert html == '<pre class="text">line one\n  &lt;b&gt;two&lt;/b&gt;\nthree</pre>'


def test_long_text_is_cut_with_the_full_value_in_details():
    text = "a" * 600 + XSS + "END"
    html = render(field(), text)
    assert html.startswith('<details class="long"><summary>')
    preview = re.search(r'<span class="text preview">(.*?)</span>', html).group(1)
    assert preview == "a" * TEXT_CUT
    assert f"({len(text)} chars)" in html
    full = re.search(r'</summary><pre class="text">(.*?)</pre></details>$', html, re.S).group(1)
    assert full == "a" * 600 + "&lt;script&gt;alert(1)&lt;/script&gt;END"
    assert_no_raw_script(html)


def test_many_short_lines_are_folded_too():
    text = "\n".join(f"line {i}" for i in range(30))
    html = render(field(), text)
    assert "<details" in html and "line 19" in html.split("</summary>")[0]
    assert "line 20" not in html.split("</summary>")[0]
    assert "line 29" in html.split("</summary>")[1]


def test_thousands_of_chars_count_is_grouped():
    html = render(field(), "x" * 12345)
    assert "(12,345 chars)" in html


def test_varchar_and_unknown_text_types():
    assert render(field(data_type="character varying", udt="varchar"), "sda") == (
        '<span class="text">sda</span>'
    )
    # A type asyncpg has no codec for arrives as its ::text form.
    f = field(data_type="USER-DEFINED", udt="ltree")
    assert f.read_as_text
    assert render(f, "a.b.<c>") == '<span class="text">a.b.&lt;c&gt;</span>'


# --- times -----------------------------------------------------------------------------


def test_timestamptz_absolute_utc_and_relative():
    ts = datetime(2024, 5, 1, 11, 57, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    html = render(field(data_type="timestamp with time zone", udt="timestamptz"), ts)
    assert (
        '<span class="ts" title="2024-05-01T13:57:00+02:00"><time datetime='
        '"2024-05-01T13:57:00+02:00" data-absolute>2024-05-01 11:57:00Z</time></span>'
    ) in html
    # A <time> the browser shows relative and keeps current (times.js): a live fragment
    # answered 304 ages too. Its text is the absolute time: the server writes no "ago".
    assert (
        '<span class="rel">(<time datetime="2024-05-01T13:57:00+02:00" data-relative>'
        "2024-05-01 11:57:00Z</time>)</span>"
    ) in html
    assert "ago" not in html


def test_future_timestamp_and_naive_timestamp():
    html = render(field(udt="timestamptz"), NOW + timedelta(seconds=20))
    assert 'data-relative>2024-05-01 12:00:20Z</time>)' in html and " in " not in html
    html = render(field(data_type="timestamp without time zone", udt="timestamp"),
                  datetime(2024, 5, 1, 11, 0))  # fmt: skip
    assert html == '<span class="ts" title="2024-05-01T11:00:00">2024-05-01 11:00:00</span>'
    assert "data-relative" not in html  # no time zone: no instant for the browser to tick from


def test_infinite_timestamps_do_not_crash():
    assert "9999-12-31" in render(field(udt="timestamptz"), datetime.max.replace(tzinfo=UTC))
    assert "0001-01-01" in render(field(udt="timestamptz"), datetime.min.replace(tzinfo=UTC))


def test_date_time_and_interval():
    assert render(field(data_type="date", udt="date"), date(2024, 4, 28)) == (
        '<span class="ts">2024-04-28</span>'
    )
    assert render(field(udt="time"), time(8, 30)) == '<span class="ts">08:30:00</span>'
    f = field(data_type="interval", udt="interval")
    assert render(f, timedelta(minutes=3, seconds=20)) == (
        '<span class="interval" title="200 seconds">3m 20s</span>'
    )
    assert ">-2h 5m<" in render(f, -timedelta(hours=2, minutes=5))
    assert ">250ms<" in render(f, timedelta(milliseconds=250))
    assert ">4d 3h<" in render(f, timedelta(days=4, hours=3))


# --- enums, numbers, bools, ids, addresses ---------------------------------------------


def test_enum_with_allowed_values_in_title():
    f = field("provider", "USER-DEFINED", "provider", PROVIDERS)
    assert render(f, "Lumen") == (
        '<span class="enum" title="enum provider: Equinix, Lumen, None">Lumen</span>'
    )


def test_enum_value_added_after_reflection_is_marked_and_escaped():
    f = field("provider", "USER-DEFINED", "provider", PROVIDERS)
    html = render(f, XSS)
    assert 'class="enum unknown"' in html and "not among the labels" in html
    assert_no_raw_script(html)


def test_enum_array_read_as_text_is_split():
    f = field("ps", "ARRAY", "_provider", PROVIDERS)
    assert f.read_as_text
    html = render(f, '{Lumen,NULL,"we <ird>"}')
    assert html == (
        '<ol class="array">'
        '<li><span class="enum" title="enum provider: Equinix, Lumen, None">Lumen</span></li>'
        '<li><span class="null">NULL</span></li>'
        '<li><span class="enum unknown" title="enum provider: Equinix, Lumen, None (value not '
        'among the labels reflected at startup)">we &lt;ird&gt;</span></li></ol>'
    )


@pytest.mark.parametrize(
    ("udt", "value", "expected"),
    [
        ("int8", 42, '<span class="num">42</span>'),
        ("int8", -7, '<span class="num">-7</span>'),
        ("int8", 274877906944, '<span class="num" title="274,877,906,944">274877906944</span>'),
        ("numeric", Decimal("1.50"), '<span class="num">1.50</span>'),
        ("float8", 0.25, '<span class="num">0.25</span>'),
        ("float8", float("nan"), '<span class="num">nan</span>'),
        ("bool", True, '<span class="bool true">true</span>'),
        ("bool", False, '<span class="bool false">false</span>'),
    ],
)
def test_numbers_and_bools(udt, value, expected):
    assert render(field(udt=udt, data_type=udt), value) == expected


def test_uuid_inet_cidr():
    u = UUID("12345678-1234-5678-1234-567812345678")
    assert render(field(udt="uuid"), u) == f'<code class="id">{u}</code>'
    assert render(field(udt="inet"), ipaddress.ip_interface("10.1.2.3/24")) == (
        '<code class="addr">10.1.2.3/24</code>'
    )
    assert render(field(udt="inet"), ipaddress.ip_address("2001:db8::1")) == (
        '<code class="addr">2001:db8::1</code>'
    )
    assert render(field(udt="cidr"), ipaddress.ip_network("10.0.0.0/8")) == (
        '<code class="addr">10.0.0.0/8</code>'
    )


def test_anything_else_is_its_escaped_str():
    class Odd:
        def __str__(self) -> str:
            return XSS

    html = render(field(udt="mystery"), Odd())
    assert html == '<span class="text">&lt;script&gt;alert(1)&lt;/script&gt;</span>'


# --- JSON and arrays -------------------------------------------------------------------


def test_jsonb_pretty_printed_and_escaped():
    html = render(field(data_type="jsonb", udt="jsonb"), '{"a":[1,"' + XSS + '"]}')
    assert html == (
        '<pre class="json">{\n  &#34;a&#34;: [\n    1,\n'
        "    &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;\n  ]\n}</pre>"
    )


def test_json_scalar_and_invalid_json():
    assert render(field(udt="json"), "3") == '<pre class="json">3</pre>'
    assert render(field(udt="json"), "{nope <b>") == '<pre class="json">{nope &lt;b&gt;</pre>'


def test_arrays_render_each_element_by_type():
    f = field("xs", "ARRAY", "_int8")
    assert render(f, [1, None, 3]) == (
        '<ol class="array"><li><span class="num">1</span></li>'
        '<li><span class="null">NULL</span></li><li><span class="num">3</span></li></ol>'
    )
    assert render(f, []) == '<span class="empty">empty array</span>'
    nested = render(f, [[1, 2], [3, 4]])
    assert nested.count('<ol class="array">') == 3
    ts = render(field("ts", "ARRAY", "_timestamptz"), [NOW - timedelta(minutes=1)])
    assert "2024-05-01 11:59:00Z" in ts and 'data-relative>2024-05-01 11:59:00Z</time>)' in ts
    texts = render(field("t", "ARRAY", "_text"), [XSS, "a\nb"])
    assert_no_raw_script(texts)
    assert '<pre class="text">a\nb</pre>' in texts


def test_text_form_of_unknown_array_is_text():
    f = field("m", "ARRAY", "_macaddr8")
    assert render(f, "{08:00:2b:01:02:03:04:05}") == (
        '<span class="text">{08:00:2b:01:02:03:04:05}</span>'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", []),
        ("{a,b}", ["a", "b"]),
        ('{"a b","c,d",NULL,"NULL","q\\"x"}', ["a b", "c,d", None, "NULL", 'q"x']),
        ("{{a,b},{c,d}}", None),
        ("[1:2]={a,b}", None),
        ('{"open}', None),
        ("nope", None),
    ],
)
def test_parse_array_literal(text, expected):
    assert parse_array_literal(text) == expected


# --- bytes and protobuf ----------------------------------------------------------------


def test_short_bytes_as_hex_with_length():
    assert render(field(udt="bytea"), b"\x00\xff<") == (
        '<code class="hex">00ff3c</code> <span class="size">3 bytes</span>'
    )
    assert render(field(udt="bytea"), b"") == '<span class="empty">0 bytes</span>'
    assert 'class="size">1 byte<' in render(field(udt="bytea"), b"\xff")


def test_long_bytes_are_cut_with_full_hex_in_details():
    data = bytes(range(256)) * 2  # starts 00 01: does not parse as protobuf
    html = render(field("agent_public_key", udt="bytea"), data)
    summary, rest = html.split("</summary>")
    assert f'<code class="hex preview">{data[:HEX_CUT].hex()}</code>' in summary
    assert "(512 bytes)" in summary
    assert f'<code class="hex">{data.hex()}</code>' in rest
    assert 'class="pb' not in html


def test_random_public_key_shows_as_hex_only():
    key = bytes.fromhex("ff" * 32)
    assert render(field("agent_public_key", udt="bytea"), key) == (
        f'<code class="hex">{key.hex()}</code> <span class="size">32 bytes</span>'
    )


def test_known_protobuf_column_shows_a_tree_and_escapes_strings():
    data = installation_report(3, XSS + "\ndisk full")
    html = render(field("os_installation_report_raw", udt="bytea"), data)
    assert_no_raw_script(html)
    assert html.startswith(
        '<div class="pb-value"><span class="pb-label">protobuf</span> '
        f'<span class="size">{len(data)} bytes</span><ul class="pb">'
    )
    assert (
        '<li><span class="pb-num">1</span> <span class="pb-kind">varint</span> '
        '<span class="num" title="uint64 3 · int64 3 · sint64 (zigzag) -2">3</span></li>'
    ) in html
    assert (
        '<li><span class="pb-num">3</span> <span class="pb-kind">message</span> <ul class="pb">'
        '<li><span class="pb-num">1</span> <span class="pb-kind">string</span> '
        '<pre class="text pb-str">&lt;script&gt;alert(1)&lt;/script&gt;\ndisk full</pre></li>'
        "</ul></li>"
    ) in html
    assert f'<details class="pb-hex"><summary>hex</summary><code class="hex">{data.hex()}' in html


def test_hardware_report_tree_nests_and_shows_float_and_bytes():
    html = render(field("hardware_report_raw", udt="bytea"), hardware_report())
    assert_no_raw_script(html)
    assert html.count('<ul class="pb">') == 7  # report, node, cpu, cpuid, 2 disks, nic
    assert '<span class="pb-kind">string</span> <span class="text pb-str">Dell Inc.</span>' in html
    assert '<span class="num" title="uint64 274877906944 ' in html  # memory, 256 GiB
    fixed32 = struct.unpack("<I", struct.pack("<f", 0.97))[0]
    assert (
        '<span class="pb-kind">fixed32</span> '
        f'<span class="num" title="fixed32 {fixed32} · sfixed32 {fixed32} · float 0.97">0.97<'
    ) in html
    mac = '<code class="hex">b8599f61b55e</code> <span class="size">6 bytes</span>'
    assert mac in html
    assert "warning: &lt;script&gt;" in html


def test_a_long_decoded_message_shows_its_first_lines_and_all_of_them_on_request():
    """A hardware report runs to hundreds of lines: the page folds it to its first 20,
    and a <details> after it unfolds it (a click, or Enter on its summary; CSS, no JS)."""
    html = render(field("hardware_report_raw", udt="bytea"), hardware_report())
    body, toggle = html.split('<details class="fold">', 1)
    assert '<div class="folded"><div class="fold-body">' in body
    lines = body.count("<li>") + body.count('<li class="pb-unknown">')
    assert lines > PB_FOLD_LINES
    assert f"… show all {lines} lines</span>" in toggle.split("</summary>")[0]
    assert "Dell Inc." in body and "warning: &lt;script&gt;" in body  # drawn once, whole
    short = render(field("os_installation_report_raw", udt="bytea"), installation_report(3, "ok"))
    assert "fold" not in short


def test_unknown_bytea_that_is_protobuf_is_decoded():
    data = timestamp_pb2.Timestamp(seconds=-1, nanos=5).SerializeToString()
    html = render(field("some_new_blob", udt="bytea"), data)
    assert '<ul class="pb">' in html
    # The negative int64 is shown as such; the uint64 reading is in the title.
    title = "uint64 18446744073709551615 · int64 -1 · sint64 (zigzag) -9223372036854775808"
    assert f'title="{title}">-1<' in html


def test_reused_protobuf_rendering_still_depends_on_the_column():
    # Field 100000, varint 1: too unusual to guess as protobuf in an arbitrary bytea column,
    # decoded in a column known to hold protobuf. Rendered HTML is reused by content, and
    # must not carry one column's rendering over to the other.
    data = b"\x80\xea\x30\x01"
    blob, known = field("some_blob", udt="bytea"), field("hardware_report_raw", udt="bytea")
    for _ in range(2):
        assert "pb-value" not in render(blob, data) and "80ea3001" in render(blob, data)
        assert '<span class="pb-num">100000</span>' in render(known, data)


def test_known_protobuf_column_with_garbage_falls_back_to_hex():
    html = render(field("hardware_report_raw", udt="bytea"), b"\x0a\x05ab<")
    assert html == '<code class="hex">0a0561623c</code> <span class="size">5 bytes</span>'


def test_protobuf_bytes_field_with_html_bytes_and_huge_value_are_safe():
    data = pb_varint(1, 1) + pb_len(2, XSS.encode() + b"\x00")
    html = render(field("hardware_report_raw", udt="bytea"), data)
    assert_no_raw_script(html)
    assert (XSS.encode() + b"\x00").hex() in html

    hostile = pb_varint(1, 1) * 500_000  # 1 MB: too many fields, shown as folded hex
    html = render(field("hardware_report_raw", udt="bytea"), hostile)
    assert 'class="pb' not in html and "(1,000,000 bytes)" in html
    assert f"(first {HEX_FULL_MAX:,} of 1,000,000 bytes)" in html
    assert len(html) < 3 * HEX_FULL_MAX


# --- Jinja: Markup is not escaped twice ------------------------------------------------


def test_markup_survives_autoescaping_templates():
    env = build_environment(None)
    tpl = env.from_string(
        '{% from "partials/values.html" import value %}<td>{{ value(f, v) }}</td>'
    )
    html = tpl.render(f=field(), v=XSS)
    assert html == '<td><span class="text">&lt;script&gt;alert(1)&lt;/script&gt;</span></td>'


# --- JSON twins ------------------------------------------------------------------------


def test_value_to_json_by_type():
    u = UUID("12345678-1234-5678-1234-567812345678")
    ts = datetime(2024, 5, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    cases = [
        (field(), None, None),
        (field(), XSS, XSS),
        (field(udt="int8"), 5, 5),
        (field(udt="bool"), True, True),
        (field(udt="timestamptz"), ts, "2024-05-01T12:00:00Z"),
        (field(udt="timestamp"), datetime(2024, 5, 1, 12, 0), "2024-05-01T12:00:00"),
        (field(udt="date"), date(2024, 5, 1), "2024-05-01"),
        (field(udt="numeric"), Decimal("1.50"), "1.50"),
        (field(udt="float8"), float("inf"), "inf"),
        (field(udt="uuid"), u, str(u)),
        (field(udt="inet"), ipaddress.ip_interface("10.0.0.1/24"), "10.0.0.1/24"),
        (field(udt="interval"), timedelta(minutes=1, milliseconds=500), 60.5),
        (field(udt="jsonb"), '{"a": [1, null]}', {"a": [1, None]}),
        (field(udt="jsonb"), "{broken", "{broken"),
        (field("xs", "ARRAY", "_timestamptz"), [ts, None], ["2024-05-01T12:00:00Z", None]),
        (field("ps", "ARRAY", "_provider", PROVIDERS), "{Lumen,NULL}", ["Lumen", None]),
        (field(udt="bytea"), b"\xff\x00", {"hex": "ff00", "base64": "/wA=", "length": 2}),
    ]
    for f, value, expected in cases:
        got = value_to_json(f, value)
        assert got == expected, (f, value)
        json.dumps(got, allow_nan=False)


def test_value_to_json_bytes_with_protobuf():
    data = installation_report(2, "boom")
    got = value_to_json(field("os_installation_report_raw", udt="bytea"), data)
    assert got["length"] == len(data) and got["hex"] == data.hex()
    assert got["protobuf"] == {"1": 2, "3": {"1": "boom"}}
    assert "protobuf" not in value_to_json(field("k", udt="bytea"), b"\xff" * 32)
