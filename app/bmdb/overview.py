"""Fleet overview: a handful of exact aggregate counts, all in the page's one snapshot.

Every count is of machines (or sessions) and matches, by construction, what the machine
list shows for the corresponding filter of app.bmdb.filters. `now()` is the snapshot's
transaction time, so every "active", "alive" and "recent" is judged at the same instant.

Cost, per query (PostgreSQL plans; CockroachDB's are alike):
- machines and tag counts: count(*) over each primary key (index-only scans).
- provided: one scan of machine_provided grouped by (provider, provider_status).
- agents: one scan of machine_agent_heartbeat plus primary-key anti-join lookups from
  machine_agent_started.
- installation: requests joined to reports on their primary keys.
- work: work grouped by process, sessions looked up by session_id_deadline_idx.
- backoffs: process_machine_id_idx INCLUDE (until), index-only.
- sessions: one scan of sessions grouped by component.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.bmdb.connection import Snapshot
from app.bmdb.filters import (
    HEARTBEAT,
    HEARTBEAT_WINDOW,
    INSTALLATION_REPORT,
    INSTALLATION_REQUEST,
    PROVIDED,
)
from app.bmdb.reflection import Schema, quote_ident

AGENT_STARTED = "machine_agent_started"


@dataclass(frozen=True)
class ProvidedCount:
    provider: str
    status: str | None  # provider_status; None is SQL NULL
    machines: int


@dataclass(frozen=True)
class AgentCounts:
    started: int  # machines with AgentStarted (None when the tag does not exist)
    heartbeat_recent: int
    heartbeat_stale: int
    never_heartbeated: int  # AgentStarted without any AgentHeartbeat


@dataclass(frozen=True)
class InstallationCounts:
    pending: int
    complete: int | None  # None: the report has no os_installation_result (old schema)
    failed: int | None


@dataclass(frozen=True)
class ComponentSessions:
    component: str
    alive: int
    expired: int


@dataclass
class FleetCounts:
    computed_at: datetime  # the snapshot's now(): when every count was true
    machines: int
    tags: dict[str, int] = field(default_factory=dict)  # tag name -> machines with it
    provided: list[ProvidedCount] | None = None  # None: no machine_provided table
    agents: AgentCounts | None = None  # None: no heartbeat table
    installation: InstallationCounts | None = None  # None: no request/report tables
    work: dict[str, int] = field(default_factory=dict)  # process -> machines with its work
    stale_work_machines: int = 0  # machines with work held by an expired session
    backoffs: dict[str, int] = field(default_factory=dict)  # process -> active backoffs
    sessions: list[ComponentSessions] = field(default_factory=list)


async def fleet_counts(snap: Snapshot, schema: Schema) -> FleetCounts:
    computed_at, machines, tags = await machine_and_tag_counts(snap, schema)
    counts = FleetCounts(computed_at=computed_at, machines=machines, tags=tags)
    if schema.tag(PROVIDED) is not None:
        counts.provided = await provided_counts(snap)
    if _has(schema, HEARTBEAT, "agent_heartbeat_at"):
        counts.agents = await agent_counts(snap, schema)
    if _has(schema, INSTALLATION_REQUEST, "generation") and _has(
        schema, INSTALLATION_REPORT, "generation"
    ):
        with_result = _has(schema, INSTALLATION_REPORT, "os_installation_result")
        counts.installation = await installation_counts(snap, with_result=with_result)
    counts.work, counts.stale_work_machines = await work_counts(snap)
    counts.backoffs = await active_backoff_counts(snap)
    counts.sessions = await session_counts(snap)
    return counts


def _has(schema: Schema, table: str, column: str) -> bool:
    tag = schema.tag(table)
    return tag is not None and tag.field(column) is not None


async def machine_and_tag_counts(
    snap: Snapshot, schema: Schema
) -> tuple[datetime, int, dict[str, int]]:
    """now(), all machines, and machines per tag type (a tag is one row per machine)."""
    tag_counts = "".join(
        f", (SELECT count(*) FROM {quote_ident(t.table)}) AS t{i}"
        for i, t in enumerate(schema.tag_types)
    )
    row = await snap.fetchrow(
        f"SELECT now() AS now, (SELECT count(*) FROM machines) AS machines{tag_counts}"
    )
    tags = {t.name: row[f"t{i}"] for i, t in enumerate(schema.tag_types)}
    return row["now"], row["machines"], tags


async def provided_counts(snap: Snapshot) -> list[ProvidedCount]:
    rows = await snap.fetch(
        "SELECT provider::text AS provider, provider_status::text AS status, count(*) AS n"
        " FROM machine_provided GROUP BY provider, provider_status ORDER BY n DESC, 1, 2"
    )
    return [ProvidedCount(r["provider"], r["status"], r["n"]) for r in rows]


async def agent_counts(snap: Snapshot, schema: Schema) -> AgentCounts:
    """Heartbeats judged against HEARTBEAT_WINDOW, as the heartbeat filter does."""
    started = "NULL::bigint"
    never = "NULL::bigint"
    if schema.tag(AGENT_STARTED) is not None:
        started = "(SELECT count(*) FROM machine_agent_started)"
        never = (
            "(SELECT count(*) FROM machine_agent_started a WHERE NOT EXISTS ("
            "SELECT 1 FROM machine_agent_heartbeat h WHERE h.machine_id = a.machine_id))"
        )
    row = await snap.fetchrow(
        f"SELECT {started} AS started, {never} AS never,"
        " count(*) FILTER (WHERE agent_heartbeat_at > now() - $1::interval) AS recent,"
        " count(*) FILTER (WHERE agent_heartbeat_at <= now() - $1::interval) AS stale"
        " FROM machine_agent_heartbeat",
        HEARTBEAT_WINDOW,
    )
    return AgentCounts(
        started=row["started"] or 0,
        heartbeat_recent=row["recent"],
        heartbeat_stale=row["stale"],
        never_heartbeated=row["never"] or 0,
    )


async def installation_counts(snap: Snapshot, *, with_result: bool) -> InstallationCounts:
    """Machines with a request, split as the installation filter splits them."""
    answered = "rep.generation >= r.generation"
    results = "NULL::bigint AS complete, NULL::bigint AS failed"
    if with_result:
        results = (
            f"count(*) FILTER (WHERE {answered} AND rep.os_installation_result::text = 'Success')"
            " AS complete,"
            f" count(*) FILTER (WHERE {answered} AND rep.os_installation_result::text = 'Error')"
            " AS failed"
        )
    row = await snap.fetchrow(
        f"SELECT count(*) FILTER (WHERE rep.machine_id IS NULL OR NOT ({answered})) AS pending,"
        f" {results}"
        " FROM machine_os_installation_request r"
        " LEFT JOIN machine_os_installation_report rep ON rep.machine_id = r.machine_id"
    )
    return InstallationCounts(row["pending"], row["complete"], row["failed"])


async def work_counts(snap: Snapshot) -> tuple[dict[str, int], int]:
    """Machines with work per process ((machine, process) is unique), and stale machines."""
    rows = await snap.fetch(
        "SELECT process::text AS process, count(*) AS n FROM work"
        " GROUP BY work.process ORDER BY work.process"
    )
    stale = await snap.fetchval(
        "SELECT count(DISTINCT w.machine_id) FROM work w"
        " JOIN sessions s ON s.session_id = w.session_id WHERE s.session_deadline <= now()"
    )
    return {r["process"]: r["n"] for r in rows}, stale


async def active_backoff_counts(snap: Snapshot) -> dict[str, int]:
    """Active backoffs per process ((machine, process) is unique, so also machines)."""
    rows = await snap.fetch(
        "SELECT process::text AS process, count(*) AS n FROM work_backoff"
        " WHERE until > now() GROUP BY work_backoff.process ORDER BY work_backoff.process"
    )
    return {r["process"]: r["n"] for r in rows}


async def session_counts(snap: Snapshot) -> list[ComponentSessions]:
    """Alive and expired (not yet garbage-collected) sessions per component."""
    rows = await snap.fetch(
        "SELECT session_component_name AS component,"
        " count(*) FILTER (WHERE session_deadline > now()) AS alive,"
        " count(*) FILTER (WHERE session_deadline <= now()) AS expired"
        " FROM sessions GROUP BY 1 ORDER BY 1"
    )
    return [ComponentSessions(r["component"], r["alive"], r["expired"]) for r in rows]
