"""Search: machines and sessions named by whatever ID an operator pasted, in ONE statement.

Each kind of thing the text can name is a subquery of one document, present only when
the text can be one (a UUID prefix needs hex digits, an IP address its punctuation):

    {"machine": [[machine_id, provided]], "session": [[session_id, component, alive]],
     "provider_id": [[machine_id, provided]], "reservation_id": [...], "ip": [...]}

where `provided` is [provider, provider_id, reservation ID, IP address] or null. A pasted
text adds what it names, looked up exactly and in any letter case (`Pasted`):

    {"pasted_machine": [[machine_id, provided]], "pasted_session": [...like "session"],
     "pasted_provided": [[machine_id, provided]]}  (rows where any value is in the text)

UUID prefixes are index range scans on the primary keys (`BETWEEN low AND high`), never
a LIKE on the UUID's text; provider ID prefixes escape LIKE's wildcards. machine_provided
is a tag table (reflected): every subquery checks it exists and reads only the columns
this BMDB has (reservation and IP came with a later migration).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from app.bmdb import tables
from app.bmdb.connection import Reader
from app.bmdb.filters import SqlWhere, like_prefix, uuid_prefix_range
from app.bmdb.reflection import Schema, TagType, quote_ident

RESERVATION = "provider_reservation_id"
IP_ADDRESS = "provider_ip_address"


def provided_tag(schema: Schema) -> TagType | None:
    return schema.tag(tables.PROVIDED)


def _provided_row(tag: TagType) -> str:
    """[provider, provider_id, reservation, ip] of the machine_provided row `p`, NULL for
    a column this BMDB lacks."""
    optional = ", ".join(
        f"p.{quote_ident(c)}" if tag.field(c) is not None else "NULL"
        for c in (RESERVATION, IP_ADDRESS)
    )
    return f"json_build_array(p.provider, p.provider_id, {optional})"


def _provided_of(tag: TagType, machine: str) -> str:
    """[provider, provider_id, reservation, ip] of `machine` (see `_provided_row`)."""
    return (
        f"(SELECT {_provided_row(tag)}"
        f" FROM {quote_ident(tag.table)} p WHERE p.machine_id = {machine})"
    )


@dataclass(frozen=True)
class SearchKinds:
    """Which kinds of thing to look for (the text decides, see app/model/search.py)."""

    id_prefix: bool  # machine and session IDs starting with the text
    provider_prefix: bool  # provider IDs starting with it (exact ones always)
    ip: bool  # an IP address
    machines_only: bool = False  # /machine/<prefix>: machine IDs alone
    whole_text: bool = True  # the text is one ID: look it up whole (else only `Pasted`)


@dataclass(frozen=True)
class Pasted:
    """What a pasted text names, lower-cased (app/model/paste.py finds them): looked up
    exactly, machine_provided's values in any letter case."""

    ids: list[UUID]  # machine and session IDs
    words: list[str]  # provider and reservation IDs
    ips: list[str]
    limit: int  # matches read per kind


def _machines_part(key: str, tag: TagType | None, where: str, n: str) -> str:
    """The document's `key` entry: [ID, its provided row] of the machines `where` picks
    (at most `n`, in ID order)."""
    provided = _provided_of(tag, "m.machine_id") if tag is not None else "NULL"
    return (
        f"'{key}', (SELECT coalesce(json_agg(json_build_array(m.machine_id,"
        f" {provided}) ORDER BY m.machine_id), '[]'::json) FROM (SELECT machine_id"
        f" FROM machines WHERE {where} ORDER BY machine_id LIMIT {n}) m)"
    )


def _sessions_part(key: str, where: str, n: str) -> str:
    """The document's `key` entry: [ID, component, alive] of the sessions `where` picks
    (at most `n`, in ID order)."""
    return (
        f"'{key}', (SELECT coalesce(json_agg(json_build_array(s.session_id,"
        " s.session_component_name, coalesce(s.session_deadline > now(), false))"
        " ORDER BY s.session_id), '[]'::json) FROM (SELECT * FROM sessions"
        f" WHERE {where} ORDER BY session_id LIMIT {n}) s)"
    )


def _pasted_parts(
    tag: TagType | None, pasted: Pasted, params: SqlWhere
) -> list[str]:
    """The document's "pasted_*" entries: machines and sessions by the IDs in the text,
    machine_provided rows whose provider ID, reservation ID or IP address is a word of it.

    IDs are primary key lookups. machine_provided has no index that serves a
    case-insensitive match on any of its values (its unique index leads with the
    provider), so it is read once, each row's values probed in the words' hash
    (`= ANY` of an array): one pass whatever the number of words. lower() is most of
    that pass's cost.
    """
    parts: list[str] = []
    if pasted.ids:
        ids, n = params.param(pasted.ids), params.param(pasted.limit)
        parts.append(_machines_part("pasted_machine", tag, f"machine_id = ANY({ids}::uuid[])", n))
        parts.append(_sessions_part("pasted_session", f"session_id = ANY({ids}::uuid[])", n))
    if tag is None or not (pasted.words or pasted.ips):
        return parts
    words, n = params.param(pasted.words), params.param(pasted.limit)
    conditions = [f"lower(p.provider_id) = ANY({words}::text[])"]
    if tag.field(RESERVATION) is not None:
        conditions.append(f"lower(p.{quote_ident(RESERVATION)}) = ANY({words}::text[])")
    if tag.field(IP_ADDRESS) is not None and pasted.ips:
        # Compared as stored, with each form given in lower and upper case: an address is
        # written in one case, and lower() on a third column cost a third more per row.
        forms = sorted({f for ip in pasted.ips for f in (ip, ip.upper())})
        conditions.append(f"p.{quote_ident(IP_ADDRESS)} = ANY({params.param(forms)}::text[])")
    # No ORDER BY under the LIMIT: the planner cannot tell how few rows match, and in
    # machine_id order it walked the whole table through its primary key (300 ms at
    # 100k machines, against a sequential scan's 30). Past the limit, which rows are
    # listed is arbitrary; the page says there were more.
    parts.append(
        "'pasted_provided', (SELECT coalesce(json_agg(json_build_array(x.machine_id, x.row)"
        f" ORDER BY x.machine_id), '[]'::json) FROM (SELECT p.machine_id, {_provided_row(tag)}"
        f" AS row FROM {quote_ident(tag.table)} p WHERE {' OR '.join(conditions)}"
        f" LIMIT {n}) x)"
    )
    return parts


def search_statement(
    schema: Schema, text: str, kinds: SearchKinds, limit: int, pasted: Pasted | None = None
) -> tuple[str, list[object]]:
    params = SqlWhere()
    tag = provided_tag(schema)
    parts: list[str] = []
    bounds = uuid_prefix_range(text) if kinds.id_prefix and kinds.whole_text else None
    if bounds is not None:
        low, high = params.param(bounds[0]), params.param(bounds[1])
        n = params.param(limit)
        in_range = f"BETWEEN {low}::uuid AND {high}::uuid"
        parts.append(_machines_part("machine", tag, f"machine_id {in_range}", n))
        if not kinds.machines_only:
            parts.append(_sessions_part("session", f"session_id {in_range}", n))
    if tag is not None and not kinds.machines_only and kinds.whole_text:
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
    if pasted is not None:
        parts += _pasted_parts(tag, pasted, params)
    if not parts:
        return "SELECT json_build_object() AS doc", []
    return f"SELECT json_build_object({', '.join(parts)}) AS doc", params.params


async def search(
    reader: Reader,
    schema: Schema,
    text: str,
    kinds: SearchKinds,
    limit: int,
    pasted: Pasted | None = None,
) -> dict:
    """The search document (see the module's docstring) for `text` and what it names."""
    sql, params = search_statement(schema, text, kinds, limit, pasted)
    return reader.parse(await reader.fetchval(sql, *params))
