"""Render one tag field's value by its type: HTML for the pages, JSON-ready for APIs.

Values arrive as app/bmdb/columns.py decodes them from a page's document (datetime,
Decimal, UUID, ipaddress, timedelta, list for arrays, str for text, json/jsonb and any
type without a better form, `Blob` for bytea, `PgSpecial` for what Python cannot hold
such as 'infinity'); plain `bytes` render too.

Everything that comes from the database goes through `Markup.format` or `escape`:
no raw value is ever concatenated into HTML.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

from markupsafe import Markup

from app.bmdb.columns import Blob, PgSpecial
from app.bmdb.reflection import Field
from app.render.formatting import absolute, duration
from app.render.fragment_cache import FragmentCache
from app.render.protobuf_decode import (
    PbField,
    bytes_json,
    decode_message,
    float32_text,
    looks_like_protobuf,
    to_jsonable,
)
from app.render.protobuf_names import named_html, named_json
from app.render.relative_times import later

# Columns that hold serialized protobuf messages (see BMDB.md).
PROTOBUF_COLUMNS = frozenset(
    {"hardware_report_raw", "os_installation_request_raw", "os_installation_report_raw"}
)
JSON_UDTS = frozenset({"json", "jsonb"})

TEXT_CUT = 500  # characters shown before a text value is folded into <details>
TEXT_MAX_LINES = 20  # ...or lines
JSON_CUT = 2000
JSON_MAX_LINES = 40
HEX_CUT = 64  # bytes shown as hex before folding
HEX_FULL_MAX = 4 * 1024  # bytes of hex put in the page at most, even folded (then: download)
PB_MAX_FIELDS = 5000  # decoded fields rendered at most (bigger blobs show as hex)

_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)

NULL = Markup('<span class="null">NULL</span>')

# Rendered byte values by content (see _bytes); a hardware report renders to ~50 KiB.
schemaless_values: FragmentCache[Markup] = FragmentCache(max_chars=32 * 1024 * 1024)


# --- HTML ---------------------------------------------------------------------------


def render_value(
    field: Field | None, value: object, *, download: str | None = None
) -> Markup:
    """HTML for one field value. `field` may be None (type is then read off the value).
    It depends on the value alone: relative times are markers filled in per response
    (app/render/relative_times.py), so the HTML may be reused.

    `download`: the URL of the whole value, linked from blobs.
    """
    if value is None:
        return NULL
    if isinstance(value, PgSpecial):
        return special(value)
    if isinstance(value, Blob):
        return _blob(field, value, download)
    if field is not None and field.is_enum and isinstance(value, str):
        return _enum_array_text(field, value) if field.is_array else _enum(field, value)
    if isinstance(value, list | tuple):
        return _array(field, value)
    if isinstance(value, bool):
        word = "true" if value else "false"
        return Markup('<span class="bool {}">{}</span>').format(word, word)
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, date):
        return _date(value)
    if isinstance(value, time):
        return Markup('<span class="ts">{}</span>').format(value.isoformat())
    if isinstance(value, timedelta):
        return Markup('<span class="interval" title="{:g} seconds">{}</span>').format(
            value.total_seconds(), human_interval(value)
        )
    if isinstance(value, int | float | Decimal):
        return _number(value)
    if isinstance(value, UUID):
        return Markup('<code class="id">{}</code>').format(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(field, bytes(value))
    if isinstance(value, _IP_TYPES):
        return Markup('<code class="addr">{}</code>').format(str(value))
    if isinstance(value, str):
        if field is not None and field.element_udt in JSON_UDTS and not field.is_array:
            return _json_text(value)
        return render_text(value)
    return render_text(str(value))


def render_text(
    text: str, *, css: str = "text", cut: int = TEXT_CUT, max_lines: int = TEXT_MAX_LINES
) -> Markup:
    """Text that keeps its lines; long text folded with the full value in <details>."""
    if text == "":
        return Markup('<span class="empty">empty string</span>')
    lines = text.split("\n")
    if len(text) <= cut and len(lines) <= max_lines:
        tag = "pre" if len(lines) > 1 else "span"
        return Markup('<{tag} class="{css}">{text}</{tag}>').format(tag=tag, css=css, text=text)
    preview = "\n".join(lines[:max_lines])[:cut]
    return Markup(
        '<details class="long"><summary><span class="{css} preview">{preview}</span>'
        '<span class="more">… ({n} chars)</span></summary>'
        '<pre class="{css}">{text}</pre></details>'
    ).format(css=css, preview=preview, n=f"{len(text):,}", text=text)


def human_interval(td: timedelta) -> str:
    seconds = td.total_seconds()
    sign = "-" if seconds < 0 else ""
    if seconds and abs(seconds) < 1:
        return f"{sign}{abs(seconds) * 1000:g}ms"
    return sign + duration(seconds)


def _timestamp(ts: datetime) -> Markup:
    rel = later(ts)  # '' for 'infinity' and friends
    if rel and ts.tzinfo is not None:
        # Ticks in the browser (webug.js), so a live fragment answered 304 stays current.
        # A timestamp without time zone has no instant the browser could count from.
        shown = Markup(' <span class="rel">(<time datetime="{}" data-relative>{}</time>)</span>')
        rel_html = shown.format(ts.isoformat(), rel)
    else:
        rel_html = _rel(rel)
    # `absolute`: a <time> the browser may show in the user's zone (app/static/times.js).
    return Markup('<span class="ts" title="{}">{}</span>{}').format(
        ts.isoformat(), absolute(ts), rel_html
    )


def _date(d: date) -> Markup:
    rel = later(datetime.combine(d, time(), UTC))
    return Markup('<span class="ts">{}</span>{}').format(d.isoformat(), _rel(rel))


def _rel(rel: str) -> Markup:
    return Markup(' <span class="rel">({})</span>').format(rel) if rel else Markup()


def _number(n: int | float | Decimal) -> Markup:
    text = str(n)  # floats: shortest round-trip form; nan, inf as such
    if isinstance(n, int) and abs(n) >= 10_000:
        return Markup('<span class="num" title="{:,}">{}</span>').format(n, text)
    return Markup('<span class="num">{}</span>').format(text)


def _enum(field: Field, label: str) -> Markup:
    known = label in field.enum_values
    title = f"enum {field.element_udt}: " + ", ".join(field.enum_values)
    if not known:
        title += " (value not among the labels reflected at startup)"
    return Markup('<span class="enum{}" title="{}">{}</span>').format(
        "" if known else " unknown", title, label
    )


def _enum_array_text(field: Field, text: str) -> Markup:
    labels = parse_array_literal(text)
    if labels is None:
        return render_text(text)
    element = replace(field, data_type="USER-DEFINED", udt_name=field.element_udt)
    return _list_markup([NULL if label is None else _enum(element, label) for label in labels])


def _array(field: Field | None, items: list | tuple) -> Markup:
    element = None
    if field is not None:
        element = replace(field, data_type=field.element_udt, udt_name=field.element_udt)
    return _list_markup([render_value(element, item) for item in items])


def _list_markup(rendered: list[Markup]) -> Markup:
    if not rendered:
        return Markup('<span class="empty">empty array</span>')
    items = Markup("").join(Markup("<li>{}</li>").format(r) for r in rendered)
    return Markup('<ol class="array">{}</ol>').format(items)


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


def _json_text(text: str) -> Markup:
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = text
    rendered = render_text(pretty, css="json", cut=JSON_CUT, max_lines=JSON_MAX_LINES)
    if rendered.startswith('<span class="json">'):  # one line: still a block
        return Markup('<pre class="json">{}</pre>').format(pretty)
    return rendered


def special(value: PgSpecial) -> Markup:
    """A value kept as PostgreSQL wrote it because Python cannot hold it ('infinity')."""
    return Markup('<span class="special" title="as stored">{}</span>').format(value.text)


def _blob(field: Field | None, blob: Blob, download: str | None) -> Markup:
    """A bytea value: decoded or as hex when the page has all of it, else a hex preview
    of its first bytes; either way with a link to download the whole value."""
    link = (
        Markup(' <a class="download" href="{}" download>download</a>').format(download)
        if download and blob.length
        else Markup()
    )
    data = blob.data
    if data is not None:
        return Markup("{}{}").format(_bytes(field, data), link)
    note = Markup(
        ' <span class="size">(the page holds the first {:,} of {:,} bytes)</span>'
    ).format(len(blob.head), blob.length)
    return Markup("{}{}{}").format(_hex(blob.head, total=blob.length), note, link)


def _hex(data: bytes, *, total: int | None = None) -> Markup:
    """Hex with its length (`total`, when `data` is only its start); long values folded,
    the full hex (bounded) in <details>."""
    n = len(data) if total is None else total
    if n == 0:
        return Markup('<span class="empty">0 bytes</span>')
    size = Markup('<span class="size">{}</span>').format(_nbytes(n))
    if n <= HEX_CUT:
        return Markup('<code class="hex">{}</code> {}').format(data.hex(), size)
    full = data[:HEX_FULL_MAX].hex()
    note = (
        Markup(' <span class="size">(first {:,} of {:,} bytes)</span>').format(HEX_FULL_MAX, n)
        if n > HEX_FULL_MAX and len(data) > HEX_FULL_MAX
        else Markup()
    )
    return Markup(
        '<details class="long"><summary><code class="hex preview">{}</code>'
        '<span class="more">… ({})</span></summary><code class="hex">{}</code>{}</details>'
    ).format(data[:HEX_CUT].hex(), _nbytes(n), full, note)


def _nbytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n:,} bytes"


def _bytes(field: Field | None, data: bytes) -> Markup:
    # With field names when a descriptor set maps this column (app/render/protobuf_names.py).
    tree = named_html(field.name if field is not None else None, data, render_value)
    if tree is not None:
        return _protobuf_value(data, tree)
    known = field is not None and field.name in PROTOBUF_COLUMNS
    # Schema-less HTML depends on the bytes alone and is the costliest value to render
    # (a hardware report is hundreds of fields): reused while the value is unchanged.
    key = (known, hashlib.blake2b(data, digest_size=16).digest())
    return schemaless_values.get(key, lambda: _schemaless(known, data))


def _schemaless(known: bool, data: bytes) -> Markup:
    fields = None
    if data and (known or looks_like_protobuf(data)):
        fields = decode_message(data, max_fields=PB_MAX_FIELDS)
    if not fields:
        return _hex(data)
    return _protobuf_value(data, render_protobuf(fields))


def _protobuf_value(data: bytes, tree: Markup) -> Markup:
    return Markup(
        '<div class="pb-value"><span class="pb-label">protobuf</span> '
        '<span class="size">{}</span>{}'
        '<details class="pb-hex"><summary>hex</summary>{}</details></div>'
    ).format(_nbytes(len(data)), tree, _hex(data))


def render_protobuf(fields: list[PbField]) -> Markup:
    """A decoded message as nested <ul class="pb">: number, kind, value."""
    items = Markup("").join(_pb_field(f) for f in fields)
    return Markup('<ul class="pb">{}</ul>').format(items)


def _pb_field(f: PbField) -> Markup:
    head = Markup('<span class="pb-num">{}</span> <span class="pb-kind">{}</span> ').format(
        f.number, f.kind
    )
    return Markup("<li>{}{}</li>").format(head, _pb_value(f))


def _pb_value(f: PbField) -> Markup:
    kind = f.kind
    if kind == "message":
        assert isinstance(f.value, list)
        if not f.value:
            return Markup('<span class="empty">empty</span>')
        return render_protobuf(f.value)
    if kind == "string":
        assert isinstance(f.value, str)
        return render_text(f.value, css="text pb-str")
    if kind == "bytes":
        packed = f.packed_varints
        hexed = _hex(f.raw)
        if packed and len(f.raw) > 1:
            return Markup('<span title="as packed varints: {}">{}</span>').format(
                ", ".join(map(str, packed)), hexed
            )
        return hexed
    assert isinstance(f.value, int)
    if kind == "varint":
        signed, zigzag = f.signed, f.zigzag
        shown = signed if signed is not None and signed < 0 else f.value
        title = f"uint64 {f.value} · int64 {signed} · sint64 (zigzag) {zigzag}"
        return Markup('<span class="num" title="{}">{}</span>').format(title, shown)
    x = f.as_float
    assert x is not None
    bits = "32" if kind == "fixed32" else "64"
    float_text = float32_text(x) if kind == "fixed32" else repr(x)
    title = f"fixed{bits} {f.value} · sfixed{bits} {f.signed} · " + (
        f"float {float_text}" if kind == "fixed32" else f"double {float_text}"
    )
    if x == 0 or (math.isfinite(x) and 1e-6 <= abs(x) <= 1e15):
        shown = float_text  # an int stored as fixed reads as a tiny/huge float
    else:
        shown = str(f.value)
    return Markup('<span class="num" title="{}">{}</span>').format(title, shown)


# --- JSON ---------------------------------------------------------------------------


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
        return {**value_to_json(field, data), "complete": True}
    if isinstance(value, str):
        if field is not None and field.element_udt in JSON_UDTS and not field.is_array:
            try:
                return json.loads(value)
            except ValueError:
                return value
        if field is not None and field.is_enum and field.is_array:  # `::text` form
            labels = parse_array_literal(value)
            return value if labels is None else labels
        return value
    if isinstance(value, list | tuple):
        element = None
        if field is not None:
            element = replace(field, data_type=field.element_udt, udt_name=field.element_udt)
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
        out = bytes_json(data)
        out.update(named_json(field.name if field is not None else None, data) or {})
        known = field is not None and field.name in PROTOBUF_COLUMNS
        if data and (known or looks_like_protobuf(data)):
            fields = decode_message(data)
            if fields:
                out["protobuf"] = to_jsonable(fields)
        return out
    # Decimal, UUID, ip addresses and anything else: their text form.
    return str(value)


__all__ = [
    "NULL",
    "PROTOBUF_COLUMNS",
    "human_interval",
    "parse_array_literal",
    "render_protobuf",
    "render_text",
    "render_value",
    "value_to_json",
]
