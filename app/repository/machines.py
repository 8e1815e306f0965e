"""Machines: pages of IDs, their tags, work and backoffs, facets, history.

Queries cost in proportion to what a page shows: a page of machine IDs first, then
tags, work and backoffs for exactly those IDs (never a join that multiplies rows).
Reflected identifiers are quoted; values a user gave are always bound parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from app.db import Snapshot
from app.machine_filters import SqlWhere
from app.reflection import Field, Schema, TagType, quote_ident
from app.tag_hints import summary_fields


@dataclass(frozen=True)
class WorkItem:
    machine_id: UUID
    process: str
    session_id: UUID
    component: str | None
    runtime_info: str | None
    session_created_at: datetime | None
    interval_seconds: int | None
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

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything shown about the machine changes (stable across
        processes: pages use it as a row's key and a poll's tag)."""
        return fingerprint((sorted(self.tags.items()), self.work, self.backoffs))

    @property
    def state_key(self) -> Hashable:
        """Equal exactly when the machine's data is: an in-process cache key, cheaper
        than `fingerprint` (no repr, no digest) when every value is hashable."""
        try:
            key = (
                self.machine_id,
                self.created_at,
                tuple((name, tuple(values.items())) for name, values in self.tags.items()),
                tuple(self.work),
                tuple(self.backoffs),
            )
            hash(key)
        except TypeError:  # an array value: fall back to the digest
            return (self.machine_id, self.created_at, self.fingerprint)
        return key


def fingerprint(value: object) -> str:
    """A short digest of a value's repr: row keys that change when the row does."""
    return hashlib.blake2b(repr(value).encode(), digest_size=6).hexdigest()


def tag_select_sql(tag: TagType, fields: tuple[Field, ...] | None = None) -> str:
    """Tag rows for a set of machines: all fields, or only `fields`."""
    columns = ", ".join(
        f"{quote_ident(f.name)}::text AS {quote_ident(f.name)}"
        if f.read_as_text
        else quote_ident(f.name)
        for f in (tag.fields if fields is None else fields)
    )
    return (
        f"SELECT machine_id{', ' if columns else ''}{columns} "
        f"FROM {quote_ident(tag.table)} WHERE machine_id = ANY($1::uuid[])"
    )


async def machine_page(
    snap: Snapshot, where: SqlWhere, *, after: UUID | None, limit: int
) -> list[Machine]:
    """One keyset page of filtered machines, by machine ID (the primary key)."""
    params = [*where.params, after, limit]
    n = len(where.params)
    rows = await snap.fetch(
        f"SELECT m.machine_id, m.machine_created_at FROM machines m WHERE {where.sql}"
        f" AND (${n + 1}::uuid IS NULL OR m.machine_id > ${n + 1}::uuid)"
        f" ORDER BY m.machine_id LIMIT ${n + 2}",
        *params,
    )
    return [Machine(r["machine_id"], r["machine_created_at"]) for r in rows]


async def count_machines(snap: Snapshot, where: SqlWhere) -> int:
    return await snap.fetchval(f"SELECT count(*) FROM machines m WHERE {where.sql}", *where.params)


@dataclass
class Facets:
    """Counts over the filtered machines; each value is a link that adds the filter."""

    tags: dict[str, int] = field(default_factory=dict)
    provider: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    location: dict[str, int] = field(default_factory=dict)
    work: dict[str, int] = field(default_factory=dict)
    stale_work: int = 0
    backoff: dict[str, int] = field(default_factory=dict)


async def facets(snap: Snapshot, schema: Schema, where: SqlWhere) -> Facets:
    result = Facets()
    if schema.tag_types:
        # Every tag table's rows semi-joined once to the filtered machines: one hash join,
        # where `count(*) FILTER (WHERE EXISTS ...)` over machines would probe per machine,
        # and the filters are planned once, not once per tag type (seconds with dozens).
        tag_rows = " UNION ALL ".join(
            f"SELECT {i} AS i, machine_id FROM {quote_ident(t.table)}"
            for i, t in enumerate(schema.tag_types)
        )
        rows = await snap.fetch(
            f"SELECT t.i, count(*) FROM ({tag_rows}) t WHERE EXISTS"
            f" (SELECT 1 FROM machines m WHERE m.machine_id = t.machine_id AND {where.sql})"
            " GROUP BY 1",
            *where.params,
        )
        by_index = {r[0]: r[1] for r in rows}
        result.tags = {t.name: by_index.get(i, 0) for i, t in enumerate(schema.tag_types)}
    if schema.tag("machine_provided") is not None:
        rows = await snap.fetch(
            "SELECT p.provider::text AS provider, p.provider_status::text AS status,"
            " p.provider_location AS location, count(*) AS n"
            f" FROM machines m JOIN machine_provided p ON p.machine_id = m.machine_id"
            f" WHERE {where.sql} GROUP BY 1, 2, 3",
            *where.params,
        )
        for r in rows:
            for facet, value in (
                ("provider", r["provider"]),
                ("status", r["status"] or "NULL"),
                ("location", r["location"]),
            ):
                if value is not None:
                    counts = getattr(result, facet)
                    counts[value] = counts.get(value, 0) + r["n"]
    for r in await snap.fetch(
        "SELECT w.process::text AS process, count(*) AS n,"
        " count(*) FILTER (WHERE s.session_deadline <= now()) AS stale"
        " FROM machines m JOIN work w ON w.machine_id = m.machine_id"
        " JOIN sessions s ON s.session_id = w.session_id"
        f" WHERE {where.sql} GROUP BY 1 ORDER BY 1",
        *where.params,
    ):
        result.work[r["process"]] = r["n"]
        result.stale_work += r["stale"]
    for r in await snap.fetch(
        "SELECT b.process::text AS process, count(*) AS n"
        " FROM machines m JOIN work_backoff b ON b.machine_id = m.machine_id"
        f" WHERE {where.sql} AND b.until > now() GROUP BY 1 ORDER BY 1",
        *where.params,
    ):
        result.backoff[r["process"]] = r["n"]
    for facet in (result.provider, result.status, result.location):
        ordered = sorted(facet.items(), key=lambda kv: (-kv[1], kv[0]))
        facet.clear()
        facet.update(ordered)
    return result


async def machine_by_id(snap: Snapshot, machine_id: UUID) -> Machine | None:
    row = await snap.fetchrow(
        "SELECT machine_id, machine_created_at FROM machines WHERE machine_id = $1", machine_id
    )
    return Machine(row["machine_id"], row["machine_created_at"]) if row else None


async def fill_details(
    snap: Snapshot, schema: Schema, machines: list[Machine], *, summary: bool = False
) -> Hashable | None:
    """Attach tags, work and backoffs to exactly these machines.

    `summary`: only the tag fields the list shows (app/tag_hints.py's summary_fields).
    Returns what was fetched, as a key equal exactly when the machines and their details
    are (for reusing HTML rendered from them), or None when a value is not hashable.
    """
    if not machines:
        return ()
    by_id = {m.machine_id: m for m in machines}
    ids = list(by_id)
    fetched: list[object] = [tuple((m.machine_id, m.created_at) for m in machines)]
    for tag in schema.tag_types:
        sql = tag_select_sql(tag, summary_fields(tag) if summary else None)
        rows = await snap.fetch(sql, ids)
        fetched.append(rows)
        for row in rows:
            values = dict(row)
            by_id[values.pop("machine_id")].tags[tag.name] = values
    work, backoffs = await work_for(snap, ids), await backoffs_for(snap, ids)
    for item in work:
        by_id[item.machine_id].work.append(item)
    for backoff in backoffs:
        by_id[backoff.machine_id].backoffs.append(backoff)
    try:
        # Records hash and compare in C: far cheaper than per-machine keys. A tag table's
        # rows come in no set order, and each machine's tags are kept by tag type anyway.
        return (
            fetched[0],
            *(frozenset(rows) for rows in fetched[1:]),
            tuple(work),
            tuple(backoffs),
        )
    except TypeError:  # an array value (a list): no key
        return None


async def work_for(snap: Snapshot, ids: list[UUID]) -> list[WorkItem]:
    rows = await snap.fetch(
        "SELECT w.machine_id, w.process::text AS process, w.session_id,"
        " s.session_component_name, s.session_runtime_info, s.session_created_at,"
        " s.session_interval_seconds, s.session_deadline,"
        " coalesce(s.session_deadline > now(), false) AS alive"
        " FROM work w LEFT JOIN sessions s ON s.session_id = w.session_id"
        " WHERE w.machine_id = ANY($1::uuid[]) ORDER BY w.machine_id, w.process",
        ids,
    )
    return [
        WorkItem(
            r["machine_id"],
            r["process"],
            r["session_id"],
            r["session_component_name"],
            r["session_runtime_info"],
            r["session_created_at"],
            r["session_interval_seconds"],
            r["session_deadline"],
            r["alive"],
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
            r["machine_id"],
            r["process"],
            r["until"],
            r["cause"],
            r["last_interval_seconds"],
            r["active"],
        )
        for r in rows
    ]


async def machine_by_provider(snap: Snapshot, provider: str, provider_id: str) -> UUID | None:
    # The label is matched against the enum's own values (an unknown one matches nothing
    # instead of failing the cast), so the lookup can use UNIQUE (provider, provider_id).
    return await snap.fetchval(
        "SELECT machine_id FROM machine_provided WHERE provider ="
        " (SELECT e FROM unnest(enum_range(NULL::provider)) e WHERE e::text = $1)"
        " AND provider_id = $2",
        provider,
        provider_id,
    )


@dataclass(frozen=True)
class HistoryEvent:
    process: str
    event: str
    timestamp: datetime
    failed_cause: str | None


_HISTORY_COLUMNS = "process::text AS process, event::text AS event, timestamp, failed_cause"


def _history(rows) -> list[HistoryEvent]:
    return [HistoryEvent(r["process"], r["event"], r["timestamp"], r["failed_cause"]) for r in rows]


async def history_page(
    snap: Snapshot, machine_id: UUID, *, process: str | None, offset: int, limit: int
) -> list[HistoryEvent]:
    """Newest first. work_history has no key, so pages are offsets into one snapshot."""
    rows = await snap.fetch(
        f"SELECT {_HISTORY_COLUMNS} FROM work_history"
        " WHERE machine_id = $1 AND ($2::text IS NULL OR process::text = $2)"
        " ORDER BY timestamp DESC OFFSET $3 LIMIT $4",
        machine_id,
        process,
        offset,
        limit,
    )
    return _history(rows)


async def history_summary(snap: Snapshot, machine_id: UUID) -> dict[str, int]:
    """Event count per process for this machine (also tells whether any history exists)."""
    rows = await snap.fetch(
        "SELECT process::text AS process, count(*) AS n FROM work_history"
        " WHERE machine_id = $1 GROUP BY 1 ORDER BY 1",
        machine_id,
    )
    return {r["process"]: r["n"] for r in rows}


async def recent_history(snap: Snapshot, machine_id: UUID, limit: int) -> list[HistoryEvent]:
    """The newest `limit` events, oldest first (for the timeline)."""
    rows = await snap.fetch(
        f"SELECT * FROM (SELECT {_HISTORY_COLUMNS} FROM work_history WHERE machine_id = $1"
        " ORDER BY timestamp DESC LIMIT $2) h ORDER BY timestamp",
        machine_id,
        limit,
    )
    return _history(rows)
