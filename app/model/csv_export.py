"""CSV downloads of the machine and session lists (`?format=csv`): cells, rows, the stream.

A file is a header row, then one row per machine (or session). Every cell is quoted,
and a text cell that a spreadsheet would read as a formula (it starts with `=`, `+`,
`-`, `@`, a tab or a carriage return) gets a leading `'`, as OWASP's CSV injection
advice says; numbers webug formats itself stay numbers. Blobs are their length, with a
download URL in a column of their own: never their bytes.

The rows are written page by page as keyset pages are read, each by one statement of its
own (`machines_csv`, `sessions_csv`): a CSV of the whole fleet is many pages by design,
each its own consistent read, and never the whole fleet in memory, in webug or the BMDB.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi.responses import StreamingResponse

from app.bmdb import machines as machines_bmdb
from app.bmdb import sessions as sessions_bmdb
from app.bmdb.columns import Blob
from app.bmdb.connection import Reader
from app.bmdb.filters import SqlWhere
from app.bmdb.machines import MachineLayout
from app.bmdb.ordering import Cursor, Order
from app.bmdb.reflection import Field, Schema
from app.model.entities import Machine, Session, machine_from
from app.render import urls
from app.render.values import value_to_json

ROW_CAP_HEADER = "X-Webug-Row-Cap"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """One cell's text: numbers as written, text defused against formula injection."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_text(rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


# read(after, n): up to n rows after the cursor `after` (None: from the first) and the
# cursor after the last of them: one keyset page, one statement.
ReadPage = Callable[[Any, int], Awaitable[tuple[list[list[object]], Any]]]


PAGE_ROWS = 1000  # rows per statement of a CSV download


def stream(
    header: list[str], read: ReadPage, row_cap: int, filename: str
) -> StreamingResponse:
    """A CSV download: `header`, then the rows of page after page (`read`, PAGE_ROWS
    rows each) as they are read, until a page comes back short or `row_cap` rows are out."""

    async def body() -> AsyncIterator[str]:
        yield _csv_text([header])
        after, sent = None, 0
        while sent < row_cap:
            size = min(PAGE_ROWS, row_cap - sent)
            rows, after = await read(after, size)
            yield _csv_text([[cell(v) for v in row] for row in rows])
            sent += len(rows)
            if len(rows) < size:
                return

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            ROW_CAP_HEADER: str(row_cap),
        },
    )


# --- machines ---------------------------------------------------------------------------


def machines_csv(
    reader: Reader, schema: Schema, where: SqlWhere, order: Order, base_url: str, row_cap: int
) -> StreamingResponse:
    """Every machine of the filter in `order`, up to `row_cap`, as a streamed CSV."""
    layout = machines_bmdb.csv_layout(schema)

    async def read(after: Cursor | None, size: int) -> tuple[list[list[object]], Cursor | None]:
        doc = await machines_bmdb.machine_list(
            Reader(reader.db), layout, where, after=after, limit=size, with_total=False,
            order=order, schema=schema,
        )  # fmt: skip
        assert doc.machines is not None and doc.sort_keys is not None
        machines = [machine_from(d, layout) for _, d in doc.machines]
        last = Cursor(doc.sort_keys[-1], machines[-1].machine_id) if machines else None
        return [machine_row(m, layout, base_url) for m in machines], last

    return stream(machine_header(layout), read, row_cap, "webug-machines.csv")


def machine_header(layout: MachineLayout) -> list[str]:
    """machine_id, created_at, work, backoffs, then `TagName.field` for every field of every
    tag (a blob adds `TagName.field.url`; a tag without fields is a column of its own)."""
    header = ["machine_id", "created_at", "work", "backoffs"]
    for tag, fields in layout.tags:
        if not fields:
            header.append(tag.name)
        for f in fields:
            header += field_header(f, f"{tag.name}.")
    return header


def field_header(field: Field, prefix: str = "") -> list[str]:
    """A tag field's columns: its value, and a blob's download URL."""
    name = prefix + field.name
    return [name, f"{name}.url"] if _is_blob(field) else [name]


def _is_blob(field: Field) -> bool:
    return field.udt_name == "bytea"


def _lengths(value: object) -> object:
    """An array of blobs as the lengths of its elements."""
    if isinstance(value, list):
        return [_lengths(v) for v in value]
    return len(value) if isinstance(value, bytes) else value


def machine_row(machine: Machine, layout: MachineLayout, base_url: str) -> list[object]:
    row: list[object] = [
        str(machine.machine_id),
        value_to_json(None, machine.created_at),
        " | ".join(
            f"{w.process}: {w.component or 'no session'} (session {w.session_id},"
            f" {'stale' if w.stale else 'alive'})"
            for w in machine.work
        ),
        " | ".join(
            f"{b.process} until {value_to_json(None, b.until)}"
            f" ({'active' if b.active else 'expired'}"
            f"{f', {b.last_interval_seconds} s' if b.last_interval_seconds is not None else ''}"
            f"): {b.cause}"
            for b in machine.backoffs
        ),
    ]
    for tag, fields in layout.tags:
        values = machine.tags.get(tag.name)
        if not fields:
            row.append("yes" if values is not None else None)
        for f in fields:
            value = None if values is None else values.get(f.name)
            row += field_cells(f, value, lambda t=tag.name, f=f.name: base_url
                               + urls.machine_tag_value(machine.machine_id, t, f))  # fmt: skip
    return row


def field_cells(field: Field, value: object, url: Callable[[], str]) -> list[object]:
    """A tag field's cells (`field_header`): its value as JSON has it; a blob's length
    and `url()`, its download (arrays of blobs: their lengths)."""
    if field.element_udt == "bytea" and field.is_array:
        return [_lengths(value)]
    if not _is_blob(field):
        return [value_to_json(field, value) if value is not None else None]
    return [value.length, url()] if isinstance(value, Blob) else [None, None]


# --- sessions ---------------------------------------------------------------------------

SESSION_HEADER = [
    "session_id", "component", "runtime_info", "created_at", "interval_seconds", "deadline",
    "alive", "held_work",
]  # fmt: skip


def sessions_csv(
    reader: Reader, filters: sessions_bmdb.SessionFilters, row_cap: int
) -> StreamingResponse:
    """Every session of the filter by ID, up to `row_cap`, as a streamed CSV."""

    async def read(after: UUID | None, size: int) -> tuple[list[list[object]], UUID | None]:
        docs = await sessions_bmdb.session_page(Reader(reader.db), filters, after=after, limit=size)
        sessions = [Session.model_validate(d) for d in docs]
        last = sessions[-1].session_id if sessions else None
        return [session_row(s) for s in sessions], last

    return stream(SESSION_HEADER, read, row_cap, "webug-sessions.csv")


def session_row(session: Session) -> list[object]:
    return [
        str(session.session_id),
        session.component,
        session.runtime_info,
        value_to_json(None, session.created_at),
        session.interval_seconds,
        value_to_json(None, session.deadline),
        session.alive,
        session.held_work,
    ]
