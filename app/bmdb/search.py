"""Search: find machines and sessions from whatever ID an operator pasted.

UUID prefixes are index range scans on the primary keys (`BETWEEN low AND high`),
never a LIKE on the UUID's text. Provider ID prefixes escape LIKE's wildcards.
machine_provided is a tag table (reflected): every query here checks it exists and
reads only the columns this BMDB has (reservation and IP came with a later migration).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from app.bmdb.connection import Snapshot
from app.bmdb.filters import PROVIDED, _like_prefix, uuid_prefix_range
from app.bmdb.reflection import Schema, TagType, quote_ident

RESERVATION = "provider_reservation_id"
IP_ADDRESS = "provider_ip_address"


@dataclass(frozen=True)
class Provided:
    """A machine's provider identity, as search results describe it."""

    machine_id: UUID
    provider: str
    provider_id: str
    reservation_id: str | None
    ip_address: str | None


@dataclass(frozen=True)
class SessionHit:
    session_id: UUID
    component: str | None
    deadline: datetime | None
    alive: bool


def provided_tag(schema: Schema) -> TagType | None:
    return schema.tag(PROVIDED)


def has_provided_column(schema: Schema, column: str) -> bool:
    tag = provided_tag(schema)
    return tag is not None and tag.field(column) is not None


async def machines_by_id_prefix(snap: Snapshot, prefix: str, limit: int) -> list[UUID]:
    """Machines whose ID starts with the hex `prefix` (dashes anywhere, any case), by ID."""
    bounds = uuid_prefix_range(prefix)
    if bounds is None:
        return []
    rows = await snap.fetch(
        "SELECT machine_id FROM machines WHERE machine_id BETWEEN $1::uuid AND $2::uuid"
        " ORDER BY machine_id LIMIT $3",
        *bounds,
        limit,
    )
    return [r["machine_id"] for r in rows]


async def sessions_by_id_prefix(snap: Snapshot, prefix: str, limit: int) -> list[SessionHit]:
    """Sessions whose ID starts with the hex `prefix`, expired ones included."""
    bounds = uuid_prefix_range(prefix)
    if bounds is None:
        return []
    rows = await snap.fetch(
        "SELECT session_id, session_component_name, session_deadline,"
        " coalesce(session_deadline > now(), false) AS alive"
        " FROM sessions WHERE session_id BETWEEN $1::uuid AND $2::uuid"
        " ORDER BY session_id LIMIT $3",
        *bounds,
        limit,
    )
    return [
        SessionHit(r["session_id"], r["session_component_name"], r["session_deadline"], r["alive"])
        for r in rows
    ]


def _provided_select(tag: TagType) -> str:
    optional = ", ".join(
        f"p.{quote_ident(c)} AS {c}" if tag.field(c) is not None else f"NULL::text AS {c}"
        for c in (RESERVATION, IP_ADDRESS)
    )
    return (
        f"SELECT p.machine_id, p.provider::text AS provider, p.provider_id, {optional}"
        f" FROM {quote_ident(tag.table)} p"
    )


def _provided(rows: list) -> list[Provided]:
    return [
        Provided(r["machine_id"], r["provider"], r["provider_id"], r[RESERVATION], r[IP_ADDRESS])
        for r in rows
    ]


async def machines_by_provider_id(
    snap: Snapshot, schema: Schema, text: str, *, prefix: bool, limit: int
) -> list[Provided]:
    """Exact provider ID matches first, then (if `prefix`) IDs starting with `text`."""
    tag = provided_tag(schema)
    if tag is None:
        return []
    condition = "p.provider_id = $1"
    params: list[object] = [text]
    if prefix:
        condition += " OR p.provider_id LIKE $2"
        params.append(_like_prefix(text))
    rows = await snap.fetch(
        f"{_provided_select(tag)} WHERE {condition}"
        f" ORDER BY p.provider_id = $1 DESC, p.provider_id, p.provider::text"
        f" LIMIT ${len(params) + 1}",
        *params,
        limit,
    )
    return _provided(rows)


async def machines_by_provided_value(
    snap: Snapshot, schema: Schema, column: str, value: str, limit: int
) -> list[Provided]:
    """Machines whose machine_provided `column` (reservation ID, IP address) equals `value`."""
    if column not in (RESERVATION, IP_ADDRESS):
        raise ValueError(f"not a searchable machine_provided column: {column!r}")
    tag = provided_tag(schema)
    if tag is None or tag.field(column) is None:
        return []
    rows = await snap.fetch(
        f"{_provided_select(tag)} WHERE p.{quote_ident(column)} = $1"
        " ORDER BY p.machine_id LIMIT $2",
        value,
        limit,
    )
    return _provided(rows)


async def provided_for(snap: Snapshot, schema: Schema, ids: list[UUID]) -> dict[UUID, Provided]:
    """The provider identity of exactly these machines (those that have one)."""
    tag = provided_tag(schema)
    if tag is None or not ids:
        return {}
    rows = await snap.fetch(
        f"{_provided_select(tag)} WHERE p.machine_id = ANY($1::uuid[])", list(ids)
    )
    return {p.machine_id: p for p in _provided(rows)}
