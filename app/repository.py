"""All SQL the pages run, in one place. Each function takes the page's Snapshot.

Queries cost in proportion to what a page shows: a page of machine IDs first, then
tags, work and backoffs for exactly those IDs (never a join that multiplies rows).
Reflected identifiers are quoted; values are always bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from app.db import Snapshot
from app.reflection import Schema, TagType, quote_ident


@dataclass(frozen=True)
class WorkItem:
    machine_id: UUID
    process: str
    session_id: UUID
    component: str | None
    session_deadline: datetime | None
    session_alive: bool

    @property
    def stale(self) -> bool:
        """Held by a session that has expired: nobody is doing this work."""
        return not self.session_alive


@dataclass(frozen=True)
class Backoff:
    machine_id: UUID
    process: str
    until: datetime
    cause: str
    last_interval_seconds: int | None
    active: bool


@dataclass
class Machine:
    machine_id: UUID
    created_at: datetime
    tags: dict[str, dict[str, object]] = field(default_factory=dict)  # tag name -> fields
    work: list[WorkItem] = field(default_factory=list)
    backoffs: list[Backoff] = field(default_factory=list)


def tag_select_sql(tag: TagType) -> str:
    columns = ", ".join(
        f"{quote_ident(f.name)}::text AS {quote_ident(f.name)}"
        if f.read_as_text
        else quote_ident(f.name)
        for f in tag.fields
    )
    return (
        f"SELECT machine_id{', ' if columns else ''}{columns} "
        f"FROM {quote_ident(tag.table)} WHERE machine_id = ANY($1::uuid[])"
    )


async def machine_ids_page(snap: Snapshot, *, after: UUID | None, limit: int) -> list[Machine]:
    rows = await snap.fetch(
        "SELECT machine_id, machine_created_at FROM machines"
        " WHERE $1::uuid IS NULL OR machine_id > $1::uuid"
        " ORDER BY machine_id LIMIT $2",
        after,
        limit,
    )
    return [Machine(r["machine_id"], r["machine_created_at"]) for r in rows]


async def count_machines(snap: Snapshot) -> int:
    return await snap.fetchval("SELECT count(*) FROM machines")


async def machine_by_id(snap: Snapshot, machine_id: UUID) -> Machine | None:
    row = await snap.fetchrow(
        "SELECT machine_id, machine_created_at FROM machines WHERE machine_id = $1", machine_id
    )
    return Machine(row["machine_id"], row["machine_created_at"]) if row else None


async def fill_details(snap: Snapshot, schema: Schema, machines: list[Machine]) -> None:
    """Attach tags, work and backoffs to exactly these machines."""
    if not machines:
        return
    by_id = {m.machine_id: m for m in machines}
    ids = list(by_id)
    for tag in schema.tag_types:
        for row in await snap.fetch(tag_select_sql(tag), ids):
            values = dict(row)
            by_id[values.pop("machine_id")].tags[tag.name] = values
    for item in await work_for(snap, ids):
        by_id[item.machine_id].work.append(item)
    for backoff in await backoffs_for(snap, ids):
        by_id[backoff.machine_id].backoffs.append(backoff)


async def work_for(snap: Snapshot, ids: list[UUID]) -> list[WorkItem]:
    rows = await snap.fetch(
        "SELECT w.machine_id, w.process::text AS process, w.session_id,"
        " s.session_component_name, s.session_deadline,"
        " coalesce(s.session_deadline > now(), false) AS alive"
        " FROM work w LEFT JOIN sessions s ON s.session_id = w.session_id"
        " WHERE w.machine_id = ANY($1::uuid[]) ORDER BY w.machine_id, w.process",
        ids,
    )
    return [
        WorkItem(
            r["machine_id"], r["process"], r["session_id"], r["session_component_name"],
            r["session_deadline"], r["alive"],
        )
        for r in rows
    ]


async def backoffs_for(snap: Snapshot, ids: list[UUID]) -> list[Backoff]:
    rows = await snap.fetch(
        "SELECT machine_id, process::text AS process, until, cause, last_interval_seconds,"
        " until > now() AS active"
        " FROM work_backoff WHERE machine_id = ANY($1::uuid[])"
        " ORDER BY machine_id, until DESC",
        ids,
    )
    return [
        Backoff(
            r["machine_id"], r["process"], r["until"], r["cause"],
            r["last_interval_seconds"], r["active"],
        )
        for r in rows
    ]


