"""Fleet statistics for /metrics (app/fleet/): upstream's `bmdb_stats_*` counts and webug's
own, in one statement; the hardware reports, which only webug can decode, in pages.

Everything the database can count comes in one JSON document (one snapshot, as upstream
took its counts in one transaction), not a statement per gauge. The hardware reports are
a row of bytes per machine that webug parses as protobuf: they come as rows, in machine ID
order as upstream read them, HARDWARE_PAGE per statement, so that webug never holds more
than a page of them (inside the JSON document they would be base64 text, all at once).

The document's parts:
- `groups`: every machine grouped by, per workflow (the app's, then upstream's two
  statistics variants), the index of the condition that decides its state (0: eligible),
  and the facts the state tabs and "stuck" read (app/bmdb/workflows.py, FACTS); with the
  count and the oldest `machine_created_at` per group. One pass over the fleet with each
  origin of the conditions joined once (app/bmdb/formulas.py, `Joined`), as the overview
  counts;
- plain counts of `machines`, `machine_provided` and pending installations;
- work and backoffs per process (every row, alive, stale, active, ending soon);
- the active backoffs' failure groups (app/bmdb/failures.py), the largest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.bmdb import tables
from app.bmdb.columns import parse_timestamp
from app.bmdb.failures import FailureGroups, backoff_groups_sql, groups_from
from app.bmdb.formulas import Joined
from app.bmdb.machine_states import MachineState
from app.bmdb.reflection import Schema
from app.bmdb.sql import SqlWhere
from app.bmdb.workflows import (
    BUILTIN,
    DECISION,
    FACTS,
    SHEPHERD_PROCESSES,
    STATES,
    CompiledWorkflow,
    Condition,
    Fleet,
    Group,
    Installation,
    WorkflowSpec,
    compiled,
)

# Upstream's statistics, as its exporter's queries selected (docs/operating.md, "Fleet gauges"):
# the AgentStart selection, and the AgentRecovery selection whose installation condition
# compares generations with any report, not only a Success one.
_BUILTIN = {s.name: s for s in BUILTIN}
UPSTREAM_AGENT_START: WorkflowSpec = _BUILTIN["AgentStart"]
UPSTREAM_AGENT_RECOVERY: WorkflowSpec = _BUILTIN["AgentRecovery"].model_copy(
    update={"installation": Installation(request="optional")}
)
UPSTREAM_SPECS = (UPSTREAM_AGENT_START, UPSTREAM_AGENT_RECOVERY)

ENDING_WITHIN = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1)}
FAILURE_GROUPS = 20  # the largest active-backoff failure groups exported, by machines

@dataclass(frozen=True)
class ProcessCounts:
    work: int = 0  # every work row (upstream's "active" work)
    stale_work: int = 0  # held by an expired session
    backoffs: int = 0  # every backoff row (upstream's "active" backoffs)
    active_backoffs: int = 0  # until > now()
    ending: dict[str, int] = field(default_factory=dict)  # ENDING_WITHIN key -> backoffs


@dataclass
class FleetStats:
    now: datetime  # the statement's now()
    machines: int
    provided: int | None  # None: no machine_provided table
    pending_installation: int | None  # None: no request/report tables
    heartbeating: int = 0
    installed: int = 0
    upstream_eligible: dict[str, int | None] = field(default_factory=dict)  # None: unknown
    workflows: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> state -> n
    stuck: dict[str, int] = field(default_factory=dict)  # blocker -> stuck machines
    oldest_stuck_created: datetime | None = None
    processes: dict[str, ProcessCounts] = field(default_factory=dict)
    failures: FailureGroups | None = None


def _deciding_order(w: CompiledWorkflow) -> list[tuple[int, Condition]]:
    """(1-based index, condition) in the order the decision reads them: the first that
    fails decides the state (app/bmdb/workflows.py, DECISION)."""
    rank = {role: i for i, (_, role) in enumerate(DECISION)}
    indexed = list(enumerate(w.conditions, 1))
    return sorted(indexed, key=lambda ic: rank[ic[1].role])


def state_of(w: CompiledWorkflow, deciding: int) -> str:
    """The state a `deciding` condition index (0: none fails) means."""
    if deciding == 0:
        return "eligible"
    role = w.conditions[deciding - 1].role
    return next(state for state, r in DECISION if r == role)


@dataclass(frozen=True)
class Statement:
    sql: str
    params: list[object]
    app: Fleet
    upstream: Fleet


def fleet_stats_statement(schema: Schema, specs: tuple[WorkflowSpec, ...]) -> Statement:
    """The counts document's statement, for the app's workflows `specs`."""
    app, upstream = compiled(schema, specs), compiled(schema, UPSTREAM_SPECS)
    params = SqlWhere()
    known = [*app.known, *upstream.known]
    has_work_tables = "work" in schema.tables and "sessions" in schema.tables
    flags = app.facts
    joined = Joined([*(c.holds for w in known for c in w.conditions), *flags], params)
    deciding = [
        "CASE" + "".join(f" WHEN NOT {joined.sql(c.holds)} THEN {i}"
                         for i, c in _deciding_order(w)) + " ELSE 0 END"
        if w.conditions else "0"
        for w in known
    ]  # fmt: skip
    bits = [f"CASE WHEN {joined.sql(f)} THEN 1 ELSE 0 END" for f in flags]
    parts = [
        "'now', now()",
        "'machines', (SELECT count(*) FROM machines)",
        "'groups', (SELECT coalesce(json_agg(json_build_array(g.k, g.n, g.oldest)), '[]'::json)"
        f" FROM (SELECT ARRAY[{', '.join([*deciding, *bits])}] AS k, count(*) AS n,"
        f" min(m.machine_created_at) AS oldest FROM machines m{joined.joins} GROUP BY 1) g)",
    ]
    if schema.tag(tables.PROVIDED) is not None:
        parts.append(f"'provided', (SELECT count(*) FROM {tables.PROVIDED})")
        if schema.has_field(tables.INSTALLATION_REQUEST, "generation") and schema.has_field(
            tables.INSTALLATION_REPORT, "generation"
        ):
            parts.append(
                f"'pending_installation', (SELECT count(*) FROM {tables.PROVIDED} p"
                f" JOIN {tables.INSTALLATION_REQUEST} r ON r.machine_id = p.machine_id"
                f" LEFT JOIN {tables.INSTALLATION_REPORT} rep ON rep.machine_id = r.machine_id"
                " WHERE r.generation IS DISTINCT FROM rep.generation)"
            )
    if has_work_tables:
        parts.append(
            "'work', (SELECT coalesce(json_agg(json_build_array(g.process, g.n, g.stale)),"
            " '[]'::json) FROM (SELECT w.process::text AS process, count(*) AS n,"
            " count(*) FILTER (WHERE s.session_deadline <= now()) AS stale FROM work w"
            " LEFT JOIN sessions s ON s.session_id = w.session_id GROUP BY w.process) g)"
        )
    if "work_backoff" in schema.tables:
        ending = ", ".join(
            f"count(*) FILTER (WHERE until > now()"
            f" AND until <= now() + {params.param(d)}::interval) AS e{i}"
            for i, d in enumerate(ENDING_WITHIN.values())
        )
        columns = ", ".join(f"g.e{i}" for i in range(len(ENDING_WITHIN)))
        parts.append(
            "'backoffs', (SELECT coalesce(json_agg(json_build_array(g.process, g.n, g.active,"
            f" {columns})), '[]'::json) FROM (SELECT process::text AS process, count(*) AS n,"
            f" count(*) FILTER (WHERE until > now()) AS active, {ending}"
            " FROM work_backoff GROUP BY process) g)"
        )
        parts.append(f"'failures', ({backoff_groups_sql(FAILURE_GROUPS)})")
    sql = f"SELECT json_build_object({', '.join(parts)}) AS doc"
    return Statement(sql, params.params, app, upstream)


def decode(statement: Statement, schema: Schema, doc: dict[str, Any]) -> FleetStats:
    """The counts document as FleetStats."""
    app, upstream = statement.app, statement.upstream
    stats = FleetStats(
        now=parse_timestamp(doc["now"]),
        machines=doc["machines"],
        provided=doc.get("provided"),
        pending_installation=doc.get("pending_installation"),
        workflows={w.name: dict.fromkeys(STATES, 0) for w in app.workflows},
        upstream_eligible={w.name: (0 if w.known else None) for w in upstream.workflows},
    )
    for w in app.workflows:
        if not w.known:
            stats.workflows[w.name]["unknown"] = doc["machines"]
    n_app, n_upstream = len(app.known), len(upstream.known)
    for key, n, oldest in doc["groups"]:
        codes, upstream_codes = key[:n_app], key[n_app : n_app + n_upstream]
        facts = dict(zip(FACTS, map(bool, key[n_app + n_upstream :]), strict=True))
        stats.heartbeating += n * facts["heartbeating"]
        stats.installed += n * facts["installed"]
        states = tuple(state_of(w, code) for w, code in zip(app.known, codes, strict=True))
        for w, state in zip(app.known, states, strict=True):
            stats.workflows[w.name][state] += n
        for w, code in zip(upstream.known, upstream_codes, strict=True):
            stats.upstream_eligible[w.name] += n if code == 0 else 0
        blocker = MachineState.of(Group(states, facts, n)).blocker
        if blocker is None:  # not stuck
            continue
        stats.stuck[blocker] = stats.stuck.get(blocker, 0) + n
        created = parse_timestamp(oldest)
        if isinstance(created, datetime) and (
            stats.oldest_stuck_created is None or created < stats.oldest_stuck_created
        ):
            stats.oldest_stuck_created = created
    for process in (*SHEPHERD_PROCESSES, *schema.processes):
        stats.processes.setdefault(process, ProcessCounts(ending=dict.fromkeys(ENDING_WITHIN, 0)))
    work = {p: (n, stale) for p, n, stale in doc.get("work", ())}
    backoffs = {p: rest for p, *rest in doc.get("backoffs", ())}
    for process in {*work, *backoffs}:
        n, stale = work.get(process, (0, 0))
        rows, active, *ending = backoffs.get(process, (0, 0, *(0 for _ in ENDING_WITHIN)))
        stats.processes[process] = ProcessCounts(
            n, stale, rows, active, dict(zip(ENDING_WITHIN, ending, strict=True))
        )
    if "failures" in doc:
        stats.failures = groups_from(doc["failures"])
    return stats


# --- hardware reports -------------------------------------------------------------------

# Reports per statement. Upstream read them in machine ID order, page by page; so does
# webug: at most this many rows are held at once (each ~0.6 KB in the demo; all of them
# at 100k machines were 39 MB, and a full garbage collection with them alive took 100 ms).
# A page of reports is decoded by asyncpg in the event loop in one piece: 1,000 rows hold
# pages and other requests up for a few ms where 10,000 held them for 60 ms and more.
HARDWARE_PAGE = 1_000


def hardware_statement(schema: Schema, *, first: bool) -> str | None:
    """A page of (machine_id, provider, location, report) of provided machines with a
    hardware report, in machine ID order: the first, or those after machine `$1`. None
    when this BMDB lacks one of the columns.

    Each page reads its own range of the reports by their key, and each report's Provided
    tag by its key (the LATERAL subquery, kept from being flattened by OFFSET 0): a join
    of the two tables in key order walked machine_provided from its start on every page."""
    report = "machine_hardware_report"
    if not (
        schema.has_field(tables.PROVIDED, "provider")
        and schema.has_field(tables.PROVIDED, "provider_location")
        and schema.has_field(report, "hardware_report_raw")
    ):
        return None
    return (
        "SELECT h.machine_id, p.provider::text AS provider, p.provider_location AS location,"
        f" h.hardware_report_raw AS raw FROM {report} h CROSS JOIN LATERAL"
        f" (SELECT provider, provider_location FROM {tables.PROVIDED} p"
        " WHERE p.machine_id = h.machine_id OFFSET 0) p"
        f"{'' if first else ' WHERE h.machine_id > $1'}"
        f" ORDER BY h.machine_id LIMIT {HARDWARE_PAGE}"
    )
