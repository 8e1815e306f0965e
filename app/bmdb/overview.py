"""Fleet overview: a handful of exact aggregate counts, all in one statement.

Every count is of machines (or sessions) and matches, by construction, what the machine
list shows for the corresponding filter of app.bmdb.filters. `now()` is the statement's
time, so every "active", "alive" and "recent" is judged at the same instant.

Cost, per query (PostgreSQL plans; CockroachDB's are alike):
- machines and tag counts: count(*) over each primary key (index-only scans).
- provided: one scan of machine_provided grouped by (provider, provider_status).
- agents: one scan of machine_agent_heartbeat plus primary-key anti-join lookups from
  machine_agent_started.
- installation: requests joined to reports on their primary keys.
- work: work grouped by process, sessions looked up by session_id_deadline_idx.
- backoffs: process_machine_id_idx INCLUDE (until), index-only.
- sessions: one scan of sessions grouped by component.
- workflows: each origin of their conditions joined once to machines
  (app/bmdb/workflows.py, `counts_sql`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from app.bmdb import tables
from app.bmdb.columns import parse_timestamp
from app.bmdb.connection import Reader
from app.bmdb.filters import HEARTBEAT_WINDOW, SqlWhere
from app.bmdb.machine_states import tally
from app.bmdb.reflection import Schema, quote_ident
from app.bmdb.sql import json_array, unchunk
from app.bmdb.workflows import Fleet, compiled, counts_sql, decode_groups


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
    # known workflow -> state -> machines (app/bmdb/workflows.py), the stuck machines by
    # blocker and the unmanaged ones (app/bmdb/machine_states.py)
    workflows: dict[str, dict[str, int]] = field(default_factory=dict)
    stuck: dict[str, int] = field(default_factory=dict)
    unmanaged: int = 0
    digest: str = ""  # of every count (not of `computed_at`): equal counts, equal digest


async def fleet_counts(reader: Reader, schema: Schema, fleet: Fleet | None = None) -> FleetCounts:
    """Every count of the overview, in one statement (so one snapshot: `now()` is the same
    instant for every "active", "alive" and "recent"); `fleet`: the workflows (the
    built-in ones when not given)."""
    fleet = fleet or compiled(schema)
    parts = [
        "'now', now()",
        "'machines', (SELECT count(*) FROM machines)",
        "'tags', " + (
            json_array([f"(SELECT count(*) FROM {quote_ident(t.table)})" for t in schema.tag_types])
            if schema.tag_types else "json_build_array()"
        ),
        "'work', (SELECT coalesce(json_agg(json_build_array(g.process, g.n) ORDER BY g.process),"
        " '[]'::json) FROM (SELECT process, count(*) AS n FROM work GROUP BY process) g)",
        "'stale_work', (SELECT count(DISTINCT w.machine_id) FROM work w"
        " JOIN sessions s ON s.session_id = w.session_id WHERE s.session_deadline <= now())",
        "'backoffs', (SELECT coalesce(json_agg(json_build_array(g.process, g.n)"
        " ORDER BY g.process), '[]'::json) FROM (SELECT process, count(*) AS n"
        " FROM work_backoff WHERE until > now() GROUP BY process) g)",
        "'sessions', (SELECT coalesce(json_agg(json_build_array(g.component, g.alive, g.expired)"
        " ORDER BY g.component), '[]'::json) FROM (SELECT session_component_name AS component,"
        " count(*) FILTER (WHERE session_deadline > now()) AS alive,"
        " count(*) FILTER (WHERE session_deadline <= now()) AS expired"
        " FROM sessions GROUP BY 1) g)",
    ]
    params = SqlWhere()
    parts.append(f"'workflows', {counts_sql(fleet, params)}")
    if schema.tag(tables.PROVIDED) is not None:
        parts.append(
            "'provided', (SELECT coalesce(json_agg(json_build_array(g.provider, g.status, g.n)"
            " ORDER BY g.n DESC, g.provider, g.status), '[]'::json) FROM (SELECT"
            " provider::text AS provider, provider_status::text AS status, count(*) AS n"
            f" FROM {tables.PROVIDED} GROUP BY provider, provider_status) g)"
        )
    if schema.has_field(tables.HEARTBEAT, "agent_heartbeat_at"):
        window = params.param(HEARTBEAT_WINDOW)
        started = never = "NULL::bigint"
        if schema.tag(tables.AGENT_STARTED) is not None:
            started = f"(SELECT count(*) FROM {tables.AGENT_STARTED})"
            never = (
                f"(SELECT count(*) FROM {tables.AGENT_STARTED} a WHERE NOT EXISTS ("
                f"SELECT 1 FROM {tables.HEARTBEAT} h WHERE h.machine_id = a.machine_id))"
            )
        parts.append(
            f"'agents', (SELECT json_build_array({started}, {never},"
            f" count(*) FILTER (WHERE agent_heartbeat_at > now() - {window}::interval),"
            f" count(*) FILTER (WHERE agent_heartbeat_at <= now() - {window}::interval))"
            f" FROM {tables.HEARTBEAT})"
        )
    if schema.has_field(tables.INSTALLATION_REQUEST, "generation") and schema.has_field(
        tables.INSTALLATION_REPORT, "generation"
    ):
        answered = "rep.generation >= r.generation"
        results = "NULL::bigint, NULL::bigint"
        if schema.has_field(tables.INSTALLATION_REPORT, "os_installation_result"):
            results = (
                f"count(*) FILTER (WHERE {answered}"
                " AND rep.os_installation_result::text = 'Success'),"
                f" count(*) FILTER (WHERE {answered}"
                " AND rep.os_installation_result::text = 'Error')"
            )
        parts.append(
            "'installation', (SELECT json_build_array("
            f"count(*) FILTER (WHERE rep.machine_id IS NULL OR NOT ({answered})), {results})"
            f" FROM {tables.INSTALLATION_REQUEST} r"
            f" LEFT JOIN {tables.INSTALLATION_REPORT} rep ON rep.machine_id = r.machine_id)"
        )
    sql = f"SELECT json_build_object({', '.join(parts)}) AS doc"
    doc = reader.parse(await reader.fetchval(sql, *params.params))
    counted = {key: value for key, value in doc.items() if key != "now"}
    digest = hashlib.md5(json.dumps(counted, sort_keys=True).encode()).hexdigest()
    tag_counts = unchunk(doc["tags"], len(schema.tag_types))
    counts = FleetCounts(
        computed_at=parse_timestamp(doc["now"]),
        machines=doc["machines"],
        tags={t.name: n for t, n in zip(schema.tag_types, tag_counts, strict=True)},
        work=dict(doc["work"]),
        stale_work_machines=doc["stale_work"],
        backoffs=dict(doc["backoffs"]),
        sessions=[ComponentSessions(*row) for row in doc["sessions"]],
        digest=digest,
    )
    tallied = tally(fleet, decode_groups(fleet, doc["workflows"]))
    counts.workflows, counts.stuck = tallied.workflows, tallied.blockers
    counts.unmanaged = tallied.tabs["unmanaged"]
    if "provided" in doc:
        counts.provided = [ProvidedCount(*row) for row in doc["provided"]]
    if "agents" in doc:
        started, never, recent, stale = doc["agents"]
        counts.agents = AgentCounts(started or 0, recent, stale, never or 0)
    if "installation" in doc:
        counts.installation = InstallationCounts(*doc["installation"])
    return counts
