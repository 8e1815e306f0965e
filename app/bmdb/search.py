"""Search: machines and sessions named by whatever ID an operator pasted, in ONE statement.

Each kind of thing the text can name is a subquery of one document, present only when
the text can be one (a UUID prefix needs hex digits, an IP address its punctuation):

    {"machine": [[machine_id, provided]], "session": [[session_id, component, alive]],
     "provider_id": [[machine_id, provided]], "reservation_id": [...], "ip": [...]}

where `provided` is [provider, provider_id, reservation ID, IP address] or null.

UUID prefixes are index range scans on the primary keys (`BETWEEN low AND high`), never
a LIKE on the UUID's text; provider ID prefixes escape LIKE's wildcards. machine_provided
is a tag table (reflected): every subquery checks it exists and reads only the columns
this BMDB has (reservation and IP came with a later migration).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.bmdb import tables
from app.bmdb.connection import Reader
from app.bmdb.filters import SqlWhere, like_prefix, uuid_prefix_range
from app.bmdb.reflection import Schema, TagType, quote_ident

RESERVATION = "provider_reservation_id"
IP_ADDRESS = "provider_ip_address"


def provided_tag(schema: Schema) -> TagType | None:
    return schema.tag(tables.PROVIDED)


def has_provided_column(schema: Schema, column: str) -> bool:
    tag = provided_tag(schema)
    return tag is not None and tag.field(column) is not None


def _provided_of(tag: TagType, machine: str) -> str:
    """[provider, provider_id, reservation, ip] of `machine`, NULL for a column this BMDB
    lacks."""
    optional = ", ".join(
        f"p.{quote_ident(c)}" if tag.field(c) is not None else "NULL"
        for c in (RESERVATION, IP_ADDRESS)
    )
    return (
        f"(SELECT json_build_array(p.provider, p.provider_id, {optional})"
        f" FROM {quote_ident(tag.table)} p WHERE p.machine_id = {machine})"
    )


@dataclass(frozen=True)
class SearchKinds:
    """Which kinds of thing to look for (the text decides, see app/pages/search.py)."""

    id_prefix: bool  # machine and session IDs starting with the text
    provider_prefix: bool  # provider IDs starting with it (exact ones always)
    ip: bool  # an IP address
    machines_only: bool = False  # /machine/<prefix>: machine IDs alone


def search_statement(
    schema: Schema, text: str, kinds: SearchKinds, limit: int
) -> tuple[str, list[object]]:
    params = SqlWhere()
    tag = provided_tag(schema)
    parts: list[str] = []
    bounds = uuid_prefix_range(text) if kinds.id_prefix else None
    if bounds is not None:
        low, high = params.param(bounds[0]), params.param(bounds[1])
        n = params.param(limit)
        provided = _provided_of(tag, "m.machine_id") if tag is not None else "NULL"
        parts.append(
            "'machine', (SELECT coalesce(json_agg(json_build_array(m.machine_id,"
            f" {provided}) ORDER BY m.machine_id), '[]'::json) FROM (SELECT machine_id"
            f" FROM machines WHERE machine_id BETWEEN {low}::uuid AND {high}::uuid"
            f" ORDER BY machine_id LIMIT {n}) m)"
        )
        if not kinds.machines_only:
            parts.append(
                "'session', (SELECT coalesce(json_agg(json_build_array(s.session_id,"
                " s.session_component_name, coalesce(s.session_deadline > now(), false))"
                " ORDER BY s.session_id), '[]'::json) FROM (SELECT * FROM sessions"
                f" WHERE session_id BETWEEN {low}::uuid AND {high}::uuid"
                f" ORDER BY session_id LIMIT {n}) s)"
            )
    if tag is not None and not kinds.machines_only:
        exact = params.param(text)
        n = params.param(limit)
        condition = f"p.provider_id = {exact}"
        if kinds.provider_prefix:
            condition += f" OR p.provider_id LIKE {params.param(like_prefix(text))}"
        parts.append(
            "'provider_id', (SELECT coalesce(json_agg(json_build_array(x.machine_id,"
            f" {_provided_of(tag, 'x.machine_id')})), '[]'::json) FROM (SELECT p.machine_id"
            f" FROM {quote_ident(tag.table)} p WHERE {condition}"
            f" ORDER BY p.provider_id = {exact} DESC, p.provider_id, p.provider::text"
            f" LIMIT {n}) x)"
        )
        for kind, column in (("reservation_id", RESERVATION), ("ip", IP_ADDRESS)):
            if (kind == "ip" and not kinds.ip) or tag.field(column) is None:
                continue  # the IP column has no index: only scanned for what can be one
            parts.append(
                f"'{kind}', (SELECT coalesce(json_agg(json_build_array(x.machine_id,"
                f" {_provided_of(tag, 'x.machine_id')})), '[]'::json) FROM (SELECT p.machine_id"
                f" FROM {quote_ident(tag.table)} p WHERE p.{quote_ident(column)} = {exact}"
                f" ORDER BY p.machine_id LIMIT {n}) x)"
            )
    if not parts:
        return "SELECT json_build_object() AS doc", []
    return f"SELECT json_build_object({', '.join(parts)}) AS doc", params.params


async def search(reader: Reader, schema: Schema, text: str, kinds: SearchKinds, limit: int) -> dict:
    """The search document (see the module's docstring) for `text`."""
    sql, params = search_statement(schema, text, kinds, limit)
    return reader.parse(await reader.fetchval(sql, *params))
