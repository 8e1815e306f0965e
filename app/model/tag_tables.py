"""The tag types (/tags) and each tag type as a table (/tags/{TagName}): their page
models, shared by the HTML pages and the JSON twins, and what reads them
(app/bmdb/tag_tables.py; app/model/live_list.py for what the keyset lists share).

A table's columns are what reflection found: the machine, then one column per field,
each value decoded by its type (app/bmdb/columns.py) as on the machine page.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from typing import Annotated
from uuid import UUID

from fastapi import HTTPException, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    computed_field,
)

from app.bmdb import tag_tables as bmdb
from app.bmdb.columns import Blob, decoder
from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache
from app.bmdb.filters import FilterError
from app.bmdb.keyset import Cursor
from app.bmdb.reflection import Field as TagField
from app.bmdb.reflection import Schema, TagType
from app.bmdb.sql import unchunk
from app.model import csv_export, live_list
from app.model.entities import Model, PageModel
from app.model.polling import Poll, PollTag
from app.render import urls
from app.render.fragments import fingerprint
from app.render.values import value_to_json

HOVER_CHARS = 2000  # of a value in its cell's tooltip


class FieldJSON(BaseModel):
    name: str
    data_type: str  # as information_schema.columns reports it: bigint, USER-DEFINED, ARRAY…
    udt_name: str  # the underlying type: int8, provider_status, _text…
    human_type: str  # what webug shows: "enum provider_status", "bigint not null"…
    nullable: bool
    is_array: bool
    enum_values: list[str]  # labels in order; empty unless an enum (or enum array)


def field_json(f: TagField) -> FieldJSON:
    return FieldJSON(
        name=f.name,
        data_type=f.data_type,
        udt_name=f.udt_name,
        human_type=f.human_type,
        nullable=f.nullable,
        is_array=f.is_array,
        enum_values=list(f.enum_values),
    )


def known_tag(schema: Schema, name: str) -> TagType:
    """The tag type reflection knows by that name; a 400 that lists them otherwise."""
    tag = schema.tag(name)
    if tag is None or tag.name != name:
        known = ", ".join(t.name for t in schema.tag_types) or "none"
        raise HTTPException(400, f"{name[:80]!r} is not a tag type of this BMDB: {known}")
    return tag


# --- /tags ------------------------------------------------------------------------------


class TagTypeCount(Model):
    name: str
    table: str
    machines: int  # machines with this tag (rows of its table)
    url: str  # its table
    fields: list[FieldJSON]


class TagTypesPage(PageModel):
    tags: list[TagTypeCount]
    counted_at: datetime  # when the machines were counted (shared, app/bmdb/counts.py)


async def load_types(
    request: Request, reader: Reader, counts: CountCache, schema: Schema, poll: Poll
) -> live_list.Live[TagTypesPage]:
    """Every tag type with its machines: one statement when the counts are due, none
    while they are shared; None when the poll's copy is current."""
    found, counted_at = await counts.get(
        ("tag counts", schema.version, schema.layout_key),
        lambda: _count(reader, schema),
    )
    tag = PollTag(poll, "tags", schema.layout_key)
    digest = fingerprint((found, counted_at))
    if tag.known == digest:
        return live_list.Live(tag.of(digest), None)
    return live_list.Live(tag.of(digest), TagTypesPage(
        tags=[
            TagTypeCount(name=t.name, table=t.table, machines=n, url=urls.tag_table(t.name),
                         fields=[field_json(f) for f in t.fields])
            for t, n in zip(schema.tag_types, found, strict=True)
        ],
        counted_at=counted_at,
    ))  # fmt: skip


async def _count(reader: Reader, schema: Schema) -> list[int]:
    doc = reader.parse(await reader.fetchval(bmdb.counts_statement(schema)))
    return unchunk(doc, len(schema.tag_types)) if schema.tag_types else []


# --- /tags/{TagName} --------------------------------------------------------------------


class FieldValues(dict):
    """A row's values: field name -> value as decoded, with its tag type for the JSON twin
    (values serialized by their reflected column type)."""

    __slots__ = ("tag",)

    def __init__(self, values: dict[str, object], tag: TagType) -> None:
        super().__init__(values)
        self.tag = tag


def _field_values(values: object) -> FieldValues:
    if not isinstance(values, FieldValues):
        raise ValueError("a row's values come decoded, with their tag type")
    return values


def _values_json(values: FieldValues) -> dict[str, object]:
    return {k: value_to_json(values.tag.field(k), v) for k, v in values.items()}


Values = Annotated[
    FieldValues,
    PlainValidator(_field_values),
    PlainSerializer(_values_json),
    WithJsonSchema({
        "type": "object",
        "description": "field name -> value (bytes as {length, hex, base64, ...})",
    }),
]


class TagRow(Model):
    machine_id: UUID
    values: Values
    downloads: dict[str, str]  # blob fields that hold bytes -> the whole value's download

    @computed_field
    @property
    def machine_url(self) -> str:
        return urls.machine_tag(self.machine_id, self.values.tag.name)

    def hover(self, field: TagField) -> str:
        """The whole value as text, for its cell's tooltip (cells show one line)."""
        value = self.values.get(field.name)
        if value is None:
            return "NULL"
        if isinstance(value, Blob):
            return f"{value.length:,} bytes"
        shown = value_to_json(field, value)
        text = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)
        return text if len(text) <= HOVER_CHARS else text[:HOVER_CHARS] + "…"


class TagTablePage(PageModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    tag: str  # its name
    table: str
    fields: list[FieldJSON]  # the table's columns after the machine
    rows: list[TagRow]
    total: int  # under every filter
    limit: int
    sort: str  # machine_id or a field, '-' for descending
    after: str | None
    next_after: str | None
    query: bmdb.TagQuery = Field(exclude=True)
    nulls: dict[str, int]  # per field: rows whose value is NULL, under every filter
    values: dict[str, dict[str, int]]  # enum and boolean fields: value (NULL too) -> rows
    counted_at: datetime

    @computed_field
    @property
    def filters(self) -> list[list[str]]:
        """The filters in use, as [parameter, value]."""
        return [[f.param, f.value] for f in self.query.filters]


def parse_query(
    schema: Schema, name: str, pairs: list[tuple[str, str]], sort: str, after: str | None
) -> tuple[bmdb.TagQuery, Cursor | None]:
    """The tag table's query and the page's cursor; a 400 for a tag, a field or a value
    reflection does not know."""
    try:
        query = bmdb.TagQuery.parse(known_tag(schema, name), pairs, sort)
    except FilterError as exc:
        raise live_list.bad_request(exc) from None
    return query, live_list.cursor(query.keyset(), after)


def _decoders(schema: Schema, tag: TagType) -> tuple:
    return schema.derived(
        ("tag table decoders", tag.table), lambda: tuple((f, decoder(f)) for f in tag.fields)
    )


def tag_row(schema: Schema, tag: TagType, document: list) -> TagRow:
    machine_id, raw = document
    decoders = _decoders(schema, tag)
    values = {
        f.name: None if v is None else decode(v)
        for (f, decode), v in zip(decoders, unchunk(raw, len(decoders)), strict=True)
    }
    downloads = {
        name: urls.machine_tag_value(machine_id, tag.name, name)
        for name, v in values.items() if isinstance(v, Blob) and v.length
    }  # fmt: skip
    return TagRow(machine_id=machine_id, values=FieldValues(values, tag), downloads=downloads)


async def load_table(
    request: Request, reader: Reader, counts: CountCache, schema: Schema,
    query: bmdb.TagQuery, after: Cursor | None, limit: int, poll: Poll,
) -> live_list.Live[TagTablePage]:  # fmt: skip
    """A page of the tag's table (one statement; None when the poll's copy is current)."""
    tag = query.tag

    def build(read: live_list.Page) -> TagTablePage:
        c = read.counts
        facets = unchunk(c["values"], len(query.facet_fields)) if query.facet_fields else []
        return TagTablePage(
            tag=tag.name, table=tag.table, fields=[field_json(f) for f in tag.fields],
            rows=[tag_row(schema, tag, r) for r in read.rows], total=c["total"],
            limit=read.limit, sort=query.sort, after=read.after, next_after=read.next_after,
            query=query,
            nulls=dict(zip((f.name for f in tag.fields),
                           unchunk(c["nulls"], len(tag.fields)), strict=False)),
            values={f.name: {bmdb.NULL if v is None else v: n for v, n in counted}
                    for f, counted in zip(query.facet_fields, facets, strict=True)},
            counted_at=read.counted_at,
        )  # fmt: skip

    count_query = bmdb.TagQuery(tag, query.filters)
    return await live_list.load(
        request, reader, counts, query,
        count_key=("tag table", schema.version, schema.layout_key, count_query),
        view=("tag table", schema.layout_key, query), after=after, limit=limit, poll=poll,
        build=build,
    )  # fmt: skip


def csv(reader: Reader, schema: Schema, query: bmdb.TagQuery, base_url: str, cap: int):
    """Every row of the tag's table under its filters, in the page's order, as a streamed
    CSV: machine_id, then each field (a blob: its length and download URL)."""
    tag = query.tag
    header = ["machine_id"] + [h for f in tag.fields for h in csv_export.field_header(f)]

    def row(document: list) -> list[object]:
        r = tag_row(schema, tag, document)
        cells: list[object] = [str(r.machine_id)]
        for f in tag.fields:
            url = partial(urls.machine_tag_value, r.machine_id, tag.name, f.name)
            cells += csv_export.field_cells(f, r.values[f.name], lambda u=url: base_url + u())
        return cells

    return live_list.csv_download(
        reader, query, header, row, cap,
        f"webug-{tag.name}.csv",
    )  # fmt: skip
