"""Machines: the statements behind the machine list, the machine page and its history.

Each page reads its data in ONE statement that returns one JSON document (see
app/bmdb/columns.py for how values travel in it). A machine's document:

    {"machine_id", "created_at",
     "tags": [one entry per tag type of the layout, in its order: null when the machine
              lacks the tag, else the tag's selected fields as an array],
     "work": [{"process", "session_id", "component", "runtime_info", "session_created_at",
               "session_interval_seconds", "session_deadline", "session_alive", "started"}],
     "backoffs": [{"process", "until", "cause", "last_interval_seconds", "active"}],
     "workflow_conditions": [per known workflow, whether each condition holds] (when asked:
              the machine page, and lists filtered by workflow; app/bmdb/workflows.py),
     "facts": [whether each of workflows.FACTS holds] (lists filtered by workflow)}

Tags, work and backoffs are correlated subqueries on each table's primary key or unique
index (per machine, never a join whose rows multiply). Polled documents come with their
md5, computed by the BMDB: the statement returns the document only when its md5 differs
from the one the browser holds, so an unchanged poll transfers nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from uuid import UUID

from app.bmdb import tables
from app.bmdb.columns import BLOB_PREVIEW_BYTES, decoder, tag_expr
from app.bmdb.connection import Reader
from app.bmdb.filters import SqlWhere
from app.bmdb.ordering import ID_ORDER, Cursor, Order
from app.bmdb.reflection import Field, Schema, TagType, quote_ident
from app.bmdb.sql import json_array, polled, unchunk
from app.bmdb.workflows import (
    HEARTBEAT_WINDOW,
    Fleet,
    counts_sql,
    document_sql,
    page_conditions,
)
from app.slices import loads_in_slices


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per schema and use
class MachineLayout:
    """Which fields of which tag types a machine document carries, in order: how its SQL
    is built (`machine_doc`, `page_documents`) and how its `tags` decode (`decode_tags`)."""

    tags: tuple[tuple[TagType, tuple[Field, ...]], ...]
    blob_cap: int = BLOB_PREVIEW_BYTES
    # Statements built for this layout (`machine`): they depend on nothing else that can
    # change while the layout lives (one per schema), and a poll need not rebuild them.
    statements: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def full(cls, schema: Schema) -> MachineLayout:
        """Every field of every tag, blobs up to BLOB_PREVIEW_BYTES (the machine page)."""
        return schema.derived(("machine layout", "full"), lambda: cls(
            tuple((t, t.fields) for t in schema.tag_types)
        ))  # fmt: skip

    @cached_property
    def _decoders(self) -> tuple:
        return tuple(
            (tag, len(fields), tuple((f.name, decoder(f)) for f in fields))
            for tag, fields in self.tags
        )

    def decode_tags(self, document: list) -> tuple[dict[str, dict], dict[str, TagType]]:
        """A document's `tags` as {tag name: {field: value}} (the tags the machine has) and
        {tag name: its type}."""
        decoders = self._decoders
        tags, types = {}, {}
        entries = unchunk(document, len(decoders))
        for (tag, count, fields), entry in zip(decoders, entries, strict=True):
            if entry is None:
                continue
            values = unchunk(entry, count)
            tags[tag.name] = {
                name: None if item is None else decode(item)
                for (name, decode), item in zip(fields, values, strict=True)
            }
            types[tag.name] = tag
        return tags, types


HEARTBEAT_AT = "agent_heartbeat_at"

# One work item with its session, one backoff: objects of a machine's document.
WORK_OBJECT = (
    "json_build_object('process', w.process, 'session_id', w.session_id,"
    " 'component', s.session_component_name, 'runtime_info', s.session_runtime_info,"
    " 'session_created_at', s.session_created_at,"
    " 'session_interval_seconds', s.session_interval_seconds,"
    " 'session_deadline', s.session_deadline,"
    " 'session_alive', coalesce(s.session_deadline > now(), false),"
    # Since when: the last Started event of its process on the machine (work_history is
    # indexed by machine_id; a probe per work row, and a page holds a few).
    " 'started', (SELECT max(h.timestamp) FROM work_history h WHERE h.machine_id = w.machine_id"
    " AND h.process = w.process AND h.event = 'Started'))"
)
WORK_FROM = "work w LEFT JOIN sessions s ON s.session_id = w.session_id"
BACKOFF_OBJECT = (
    "json_build_object('process', b.process, 'until', b.until, 'cause', b.cause,"
    " 'last_interval_seconds', b.last_interval_seconds, 'active', b.until > now())"
)
WORK_AGG = f"json_agg({WORK_OBJECT} ORDER BY w.process)"
BACKOFFS_AGG = f"json_agg({BACKOFF_OBJECT} ORDER BY b.until DESC, b.process)"
# ...of one machine `{m}`, as correlated subqueries:
WORK_DOC = (
    f"(SELECT coalesce({WORK_AGG}, '[]'::json) FROM {WORK_FROM}"
    " WHERE w.machine_id = {m}.machine_id)"
)
BACKOFFS_DOC = (
    f"(SELECT coalesce({BACKOFFS_AGG}, '[]'::json) FROM work_backoff b"
    " WHERE b.machine_id = {m}.machine_id)"
)


def machine_doc(layout: MachineLayout, m: str = "m", extra: str = "") -> str:
    """SQL for the document of machine `m` (a row of `machines`); `extra`: more of its
    fields (`, 'name', expr`)."""
    tags = [
        f"(SELECT {tag_expr(fields, 't', blob_cap=layout.blob_cap)}"
        f" FROM {quote_ident(tag.table)} t WHERE t.machine_id = {m}.machine_id)"
        for tag, fields in layout.tags
    ]
    return (
        f"json_build_object('machine_id', {m}.machine_id, 'created_at', {m}.machine_created_at,"
        f" 'tags', {json_array(tags)},"
        f" 'work', {WORK_DOC.format(m=m)}, 'backoffs', {BACKOFFS_DOC.format(m=m)}{extra})"
    )


def heartbeat_sql(has_heartbeat: bool, params: SqlWhere, m: str = "m") -> str:
    """[agent_heartbeat_at or null, whether it is recent] of machine `m`, decided by the
    BMDB's clock (so a document's md5 changes when the heartbeat goes stale); NULL when
    this BMDB has no heartbeat tag. An aggregate, so a machine without a heartbeat has
    a row."""
    if not has_heartbeat:
        return "NULL::json"
    return (
        "(SELECT json_build_array(max(h.agent_heartbeat_at),"
        " coalesce(bool_or(h.agent_heartbeat_at > now()"
        f" - {params.param(HEARTBEAT_WINDOW)}::interval), false))"
        f" FROM {tables.HEARTBEAT} h WHERE h.machine_id = {m}.machine_id)"
    )


def workflow_fields(fleet: Fleet | None, params: SqlWhere, m: str = "m") -> str:
    """The `extra` document field with whether each workflow condition holds for `m`."""
    return "" if fleet is None else f", 'workflow_conditions', {document_sql(fleet, params, m)}"


# --- the list ---------------------------------------------------------------------------


def page_documents(
    layout: MachineLayout, page_sql: str, fleet: Fleet | None = None, params: SqlWhere | None = None
) -> str:
    """SQL: (machine_id, sort_key, pos, doc) of each machine of `page_sql` (machine_id,
    sort_key, pos: see app/bmdb/ordering.py's `Order.page_sql`); with the conditions of
    `fleet`'s workflows (values bound into `params`) when given.

    Each tag table, work and backoffs are read for exactly the page's machines, by their
    primary key or unique index (`machine_id = ANY(the page's IDs)`: an index scan of as
    many keys as the page has, whatever the fleet's size), then joined to the page, at
    most one row per machine (work and backoffs aggregated per machine first).
    """
    page_ids = "ANY(ARRAY(SELECT machine_id FROM ids))"
    joins, tags, extra = [], [], ""
    if fleet is not None:
        conditions, facts, condition_joins = page_conditions(fleet, params, page_ids)
        joins.append(condition_joins)
        extra = f", 'workflow_conditions', {conditions}, 'facts', {facts}"
    for i, (tag, fields) in enumerate(layout.tags):
        alias = f"t{i}"
        joins.append(
            f" LEFT JOIN (SELECT t.machine_id, {tag_expr(fields, 't', blob_cap=layout.blob_cap)}"
            f" AS v FROM {quote_ident(tag.table)} t WHERE t.machine_id = {page_ids}) {alias}"
            f" ON {alias}.machine_id = m.machine_id"
        )
        tags.append(f"{alias}.v")
    return (
        f"WITH ids AS ({page_sql})"
        " SELECT m.machine_id, i.sort_key, i.pos, json_build_object('machine_id', m.machine_id,"
        f" 'created_at', m.machine_created_at, 'tags', {json_array(tags)},"
        " 'work', coalesce(w.work, '[]'::json), 'backoffs', coalesce(b.backoffs, '[]'::json)"
        f"{extra}) AS doc FROM ids i JOIN machines m ON m.machine_id = i.machine_id"
        f"{''.join(joins)}"
        f" LEFT JOIN (SELECT w.machine_id, {WORK_AGG} AS work FROM {WORK_FROM}"
        f" WHERE w.machine_id = {page_ids} GROUP BY w.machine_id) w"
        " ON w.machine_id = m.machine_id"
        f" LEFT JOIN (SELECT b.machine_id, {BACKOFFS_AGG} AS backoffs FROM work_backoff b"
        f" WHERE b.machine_id = {page_ids} GROUP BY b.machine_id) b"
        " ON b.machine_id = m.machine_id"
    )


def list_statement(
    layout: MachineLayout,
    where: SqlWhere,
    *,
    after: Cursor | UUID | None,
    limit: int,
    with_total: bool,
    known_ptag: str | None,
    known_total: int | None = None,
    order: Order = ID_ORDER,
    schema: Schema | None = None,
    fleet: Fleet | None = None,
) -> tuple[str, list[object]]:
    """One keyset page of filtered machines in `order` (by ID unless given; `schema` is
    needed for the heartbeat order), each as [md5 of its document, document, its sort
    key's text]; with the conditions of `fleet`'s workflows in each document when given.

    The page's total is the count of all filtered machines when `with_total`, else
    `known_total` (a count kept from before, or NULL). Either way it is part of the
    document, so its md5 depends on the rows and the total shown, never on which process
    counted when: retaking a count that did not change keeps the poll a 304.

    `after` (a UUID: a machine ID in ID order) changes the SQL rather than being a
    `$n IS NULL OR` condition, so the plan is the same for every value.
    """
    if isinstance(after, UUID):
        after = Cursor(None, after)
    params = where.copy()
    page = order.page_sql(schema, params, after, limit)
    total = (
        f"(SELECT count(*) FROM machines m WHERE {where.sql})"
        if with_total
        else f"{params.param(known_total)}::bigint"
    )
    document = (
        "SELECT json_build_object('machines', p.machines, 'total', c.total) AS doc, c.total"
        f" FROM (SELECT {total} AS total) c, (SELECT coalesce(json_agg(json_build_array("
        "md5(r.doc::text), r.doc, r.sort_key) ORDER BY r.pos), '[]'::json) AS machines"
        f" FROM ({page_documents(layout, page, fleet, params)}) r) p"
    )
    return polled(document, f"{params.param(known_ptag)}::text", "total"), params.params


@dataclass
class ListDocument:
    ptag: str  # md5 of the page's document
    machines: list[tuple[str, dict]] | None  # (md5, document) per machine; None: unchanged
    total: int | None  # counted (`with_total`), or the known total given
    sort_keys: list[str | None] | None = None  # per machine: its sort key's text (cursors)


async def machine_list(
    reader: Reader,
    layout: MachineLayout,
    where: SqlWhere,
    *,
    after: Cursor | UUID | None,
    limit: int,
    with_total: bool,
    known_ptag: str | None = None,
    known_total: int | None = None,
    order: Order = ID_ORDER,
    schema: Schema | None = None,
    fleet: Fleet | None = None,
) -> ListDocument:
    sql, params = list_statement(
        layout, where, after=after, limit=limit, with_total=with_total, known_ptag=known_ptag,
        known_total=known_total, order=order, schema=schema, fleet=fleet,
    )  # fmt: skip
    # Planned for its filters' values when it has some (app/bmdb/connection.py).
    row = await reader.fetchrow(sql, *params, plan_per_values=bool(where.params))
    if row["doc"] is None:
        return ListDocument(row["ptag"], None, row["total"])
    # Megabytes for a page of thousands: decoded a slice at a time (app/slices.py).
    doc = await loads_in_slices(row["doc"], "machines")
    rows = doc["machines"]
    return ListDocument(
        row["ptag"], [(md5, d) for md5, d, _ in rows], row["total"], [k for _, _, k in rows]
    )


# --- one machine ------------------------------------------------------------------------


@dataclass
class MachineDocument:
    ptag: str | None  # md5 of the machine's document; None when there is no such machine
    machine: dict | None  # None: unchanged since `known_ptag`, or no such machine
    history_by_process: dict[str, int] | None  # of a machine that does not exist (any more)


async def machine(
    reader: Reader,
    layout: MachineLayout,
    machine_id: UUID,
    *,
    known_ptag: str | None = None,
    fleet: Fleet | None = None,
) -> MachineDocument:
    """The machine's document (unless unchanged since `known_ptag`), with the conditions
    of `fleet`'s workflows when given and its heartbeat's freshness (`heartbeat_sql`);
    for a machine that does not exist, how much work history it left behind."""
    key = ("machine", id(fleet))  # the fleet lives as long as the layout: one per schema
    if key not in layout.statements:
        params = SqlWhere(params=[None, None])  # $1 the machine, $2 the ptag it had
        has_heartbeat = any(
            t.table == tables.HEARTBEAT and any(f.name == HEARTBEAT_AT for f in fields)
            for t, fields in layout.tags
        )
        heartbeat = f", 'heartbeat', {heartbeat_sql(has_heartbeat, params)}"
        doc = machine_doc(layout, extra=workflow_fields(fleet, params) + heartbeat)
        document = f"SELECT (SELECT {doc} FROM machines m WHERE m.machine_id = $1) AS doc"
        layout.statements[key] = (
            f"SELECT polled.ptag, polled.doc, CASE WHEN polled.ptag IS NULL THEN"
            f" {HISTORY_BY_PROCESS} END AS history FROM ({polled(document, '$2::text')}) polled",
            params.params[2:],
        )
    sql, values = layout.statements[key]
    row = await reader.fetchrow(sql, machine_id, known_ptag, *values)
    history = reader.parse(row["history"])
    return MachineDocument(
        row["ptag"], reader.parse(row["doc"]), dict(history) if history is not None else None
    )


HISTORY_BY_PROCESS = (
    "(SELECT coalesce(json_agg(json_build_array(h.process, h.n) ORDER BY h.process), '[]'::json)"
    " FROM (SELECT process::text AS process, count(*) AS n FROM work_history"
    " WHERE machine_id = $1 GROUP BY 1) h)"
)
_HISTORY_EVENT = (
    "json_build_object('process', h.process, 'event', h.event, 'timestamp', h.timestamp,"
    " 'failed_cause', h.failed_cause)"
)


@dataclass
class HistoryDocument:
    ptag: str  # the version of the machine's history, work and backoffs (see `history`)
    doc: dict | None  # None: unchanged since `known_ptag`


def history_statement(
    machine_id: UUID,
    *,
    process: str | None,
    offset: int,
    limit: int,
    timeline_events: int | None,
    since: datetime | None,
    known_ptag: str | None,
) -> tuple[str, list[object]]:
    """SQL and parameters of `history`."""
    p = SqlWhere(params=[machine_id])  # $1
    by_process = "" if process is None else f" AND process::text = {p.param(process)}"
    timeline = "NULL"
    if timeline_events is not None:
        since_sql = "" if since is None else f" AND timestamp >= {p.param(since)}"
        timeline = (
            "json_build_object("
            f"'work', {WORK_DOC.format(m='mm')}, 'backoffs', {BACKOFFS_DOC.format(m='mm')},"
            " 'last_success', (SELECT max(timestamp) FROM work_history"
            " WHERE machine_id = $1 AND event = 'Finished'),"
            " 'events', (SELECT coalesce(json_agg("
            f"{_HISTORY_EVENT} ORDER BY h.timestamp), '[]'::json)"
            f" FROM (SELECT * FROM work_history WHERE machine_id = $1{since_sql}"
            f" ORDER BY timestamp DESC LIMIT {p.param(timeline_events)}) h))"
        )
    document = (
        "json_build_object("
        "'exists', EXISTS (SELECT 1 FROM machines WHERE machine_id = $1),"
        f" 'events', (SELECT coalesce(json_agg({_HISTORY_EVENT} ORDER BY h.timestamp DESC),"
        " '[]'::json) FROM (SELECT * FROM work_history"
        f" WHERE machine_id = $1{by_process} ORDER BY timestamp DESC"
        f" OFFSET {p.param(offset)} LIMIT {p.param(limit)}) h),"
        f" 'by_process', {HISTORY_BY_PROCESS},"
        f" 'timeline', {timeline})"
    )
    # The version: work_history is append-only, so its count and newest time change with
    # every event; work and backoffs (with whether each is alive, active) complete it.
    # The document is computed only when the version differs from the browser's.
    version = (
        "md5(json_build_array((SELECT json_build_array(count(*), max(timestamp))"
        " FROM work_history WHERE machine_id = $1),"
        " EXISTS (SELECT 1 FROM machines WHERE machine_id = $1),"
        f" {WORK_DOC.format(m='mm')}, {BACKOFFS_DOC.format(m='mm')})::text)"
    )
    sql = (
        f"SELECT v.ptag, CASE WHEN v.ptag IS DISTINCT FROM {p.param(known_ptag)}::text"
        f" THEN {document} END AS doc"
        " FROM (SELECT $1::uuid AS machine_id) mm,"
        f" LATERAL (SELECT {version} AS ptag OFFSET 0) v"
    )
    return sql, p.params


async def history(
    reader: Reader,
    machine_id: UUID,
    *,
    process: str | None,
    offset: int,
    limit: int,
    timeline_events: int | None,
    since: datetime | None = None,
    known_ptag: str | None = None,
) -> HistoryDocument:
    """A page of a machine's work history, newest first, and what frames it: whether the
    machine exists, its events per process and, when `timeline_events`, the newest that
    many events since `since` (all when None; oldest first) with its work, backoffs and
    last success for the timeline. Nothing but its version (`ptag`) when that is
    `known_ptag`: an unchanged poll reads a count and two small documents.

    work_history has no key, so pages are offsets; it is indexed by machine_id.
    """
    sql, params = history_statement(
        machine_id, process=process, offset=offset, limit=limit,
        timeline_events=timeline_events, since=since, known_ptag=known_ptag,
    )  # fmt: skip
    row = await reader.fetchrow(sql, *params)
    return HistoryDocument(row["ptag"], reader.parse(row["doc"]))


async def machine_by_provider(reader: Reader, provider: str, provider_id: str) -> UUID | None:
    # The label is matched against the enum's own values in any letter case (links are
    # typed by hand: `equinix`), the exact one first should two differ only in case; an
    # unknown one matches nothing instead of failing a cast. The lookup then uses UNIQUE
    # (provider, provider_id); IDs are matched exactly.
    return await reader.fetchval(
        f"SELECT machine_id FROM {tables.PROVIDED} WHERE provider ="
        " (SELECT e FROM unnest(enum_range(NULL::provider)) e WHERE lower(e::text) = lower($1)"
        " ORDER BY e::text = $1 DESC LIMIT 1)"
        " AND provider_id = $2",
        provider,
        provider_id,
    )


async def tag_value(
    reader: Reader, tag: TagType, field: Field, machine_id: UUID
) -> tuple[bool, object]:
    """(whether the machine has the tag, the field's whole value: bytes for bytea, else its
    text) for a download."""
    column = quote_ident(field.name)
    value = column if field.element_udt == "bytea" and not field.is_array else f"{column}::text"
    row = await reader.fetchrow(
        f"SELECT {value} AS value FROM {quote_ident(tag.table)} WHERE machine_id = $1",
        machine_id,
    )
    return (row is not None, row["value"] if row is not None else None)


# --- the list's counts ------------------------------------------------------------------


def facets_statement(
    schema: Schema, where: SqlWhere, fleet: Fleet | None = None
) -> tuple[str, list[object]]:
    """Counts over the filtered machines, in one statement: the total, machines per tag
    type, per provider/status/location, per work process (and how many machines have
    stale work), per active backoff process; with `fleet`, the groups of machines alike
    in their workflows' states and facts (app/bmdb/workflows.py, `counts_sql`), which give
    the workflow facets and the state tabs (app/bmdb/machine_states.py). The groups count
    the machines of the filters but a state tab's (`t`), as the tabs are counted under
    the other filters. Returns (SQL, parameters).

    The filters are evaluated (and planned) once, into `f`, which every count joins: five
    copies of them planned for hundreds of milliseconds with many tag filters, and a text
    search ran five times.
    """
    # One pass over `f`, each tag table left-joined: a machine has at most one row of each.
    tag_counts = json_array([f"count(t{i}.machine_id)" for i in range(len(schema.tag_types))])
    tag_joins = "".join(
        f" LEFT JOIN {quote_ident(t.table)} t{i} ON t{i}.machine_id = f.machine_id"
        for i, t in enumerate(schema.tag_types)
    )
    tag_counts = f"(SELECT {tag_counts} FROM f{tag_joins})"
    provided = "NULL::json"
    if schema.tag(tables.PROVIDED) is not None:
        provided = (
            "(SELECT coalesce(json_agg(json_build_array(g.provider, g.status, g.location, g.n)),"
            " '[]'::json) FROM (SELECT p.provider::text AS provider,"
            " p.provider_status::text AS status, p.provider_location AS location, count(*) AS n"
            f" FROM f JOIN {tables.PROVIDED} p ON p.machine_id = f.machine_id"
            " GROUP BY 1, 2, 3) g)"
        )
    params = SqlWhere(["TRUE"], list(where.params))  # the counts' values follow the filters'
    tabs = ""
    if where.tab_conditions:
        tabs = f", t AS (SELECT m.machine_id FROM machines m WHERE {where.sql_without_tabs})"
    workflows = "NULL::json" if fleet is None else counts_sql(fleet, params, "t" if tabs else "f")
    sql = (
        f"WITH f AS (SELECT m.machine_id FROM machines m WHERE {where.sql}){tabs}"
        " SELECT json_build_object("
        "'total', (SELECT count(*) FROM f),"
        f" 'workflows', {workflows},"
        f" 'tags', {tag_counts},"
        f" 'provided', {provided},"
        " 'work', (SELECT coalesce(json_agg(json_build_array(g.process, g.n, g.stale)"
        " ORDER BY g.process), '[]'::json) FROM (SELECT w.process::text AS process,"
        " count(*) AS n, count(*) FILTER (WHERE s.session_deadline <= now()) AS stale"
        " FROM f JOIN work w ON w.machine_id = f.machine_id"
        " JOIN sessions s ON s.session_id = w.session_id GROUP BY 1) g),"
        " 'backoff', (SELECT coalesce(json_agg(json_build_array(g.process, g.n)"
        " ORDER BY g.process), '[]'::json) FROM (SELECT b.process::text AS process,"
        " count(*) AS n FROM f JOIN work_backoff b ON b.machine_id = f.machine_id"
        " WHERE b.until > now() GROUP BY 1) g)) AS doc"
    )
    return sql, params.params


async def facets(
    reader: Reader, schema: Schema, where: SqlWhere, fleet: Fleet | None = None
) -> dict:
    """The facets document (see `facets_statement`); `tags` by position in the schema."""
    sql, params = facets_statement(schema, where, fleet)
    doc = reader.parse(await reader.fetchval(
        sql, *params, plan_per_values=bool(where.params),
        purpose="the total and facets, shared with other views of the filter",
    ))  # fmt: skip
    doc["tags"] = unchunk(doc["tags"], len(schema.tag_types))
    return doc


LIST_BLOB_BYTES = 256  # of each blob in the list's JSON twin: small ones whole


def list_layout(
    schema: Schema, fields: Callable[[TagType], tuple[Field, ...]] | None
) -> MachineLayout:
    """The list's machine documents: only `fields(tag)` of each tag when given, every field
    otherwise, with blobs cut to their first LIST_BLOB_BYTES (a page of machines must not
    carry a page of hardware reports; each machine's own page decodes them). One per
    schema and `fields`."""
    return schema.derived(("machine layout", "list", fields), lambda: MachineLayout(
        tuple((t, t.fields if fields is None else fields(t)) for t in schema.tag_types),
        blob_cap=LIST_BLOB_BYTES,
    ))  # fmt: skip


def csv_layout(schema: Schema) -> MachineLayout:
    """Every field of every tag, blobs as their length only: a CSV row carries no bytes
    (app/model/csv_export.py). One per schema."""
    return schema.derived(("machine layout", "csv"), lambda: MachineLayout(
        tuple((t, t.fields) for t in schema.tag_types), blob_cap=0
    ))  # fmt: skip
