"""The watch list: machines named by IDs or ID prefixes, resolved and read in ONE statement.

Each token is a range of machine IDs (a full ID is a range of one): an index range scan
of machines_pkey, at most CANDIDATES rows, tells unknown (none), unique (one) and
ambiguous (several) apart. The uniquely named machines' documents are the list's
(`page_documents`), with their heartbeat's freshness decided by the BMDB:

    {"tokens": [[token index, machine_id], ...],  (up to CANDIDATES per token)
     "machines": [[md5 of the document, document, heartbeat, last events], ...]}

where heartbeat is [agent_heartbeat_at or null, recent], or null when this BMDB has no
heartbeat tag, and last events the newest history event of each process that ever ran
on the machine, [process, event, timestamp, failed_cause (its start)]: how work that
ended went (app/static/watch.js says so). Everything
time-dependent (active backoffs, alive sessions, a recent heartbeat) is computed with
now() inside the document, so its md5 changes when one flips: a poll answers 304 only
when nothing an operator would see has changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from app.bmdb import tables
from app.bmdb.connection import Reader
from app.bmdb.filters import SqlWhere
from app.bmdb.machines import HEARTBEAT_AT, MachineLayout, heartbeat_sql, page_documents
from app.bmdb.ordering import Order
from app.bmdb.reflection import Schema
from app.bmdb.sql import polled
from app.bmdb.workflows import Fleet

MAX_IDS = 100  # machines a watch list names: each poll reads them all
CANDIDATES = 5  # machines listed for an ambiguous prefix (one more is read, to say "more")


CAUSE_CHARS = 300  # of a failure's cause, in a watch list's last events

# The newest event of each process in machine `d`'s history: one scan of its rows (by
# work_history's machine_id index).
LAST_EVENTS = (
    "(SELECT coalesce(json_agg(json_build_array(l.process, l.event, l.timestamp, l.cause)"
    " ORDER BY l.process), '[]'::json) FROM (SELECT DISTINCT ON (h.process)"
    " h.process::text AS process, h.event::text AS event, h.timestamp,"
    f" left(h.failed_cause, {CAUSE_CHARS}) AS cause FROM work_history h"
    " WHERE h.machine_id = d.machine_id ORDER BY h.process, h.timestamp DESC) l)"
)


def watch_statement(
    schema: Schema,
    layout: MachineLayout,
    ranges: list[tuple[UUID, UUID]],
    candidates: int,
    known_ptag: str | None,
    fleet: Fleet | None = None,
) -> tuple[str, list[object]]:
    """The polled watch document of the machines `ranges` (low, high) name; `candidates`
    machines at most per range; with the conditions of `fleet`'s workflows in each
    machine's document when given."""
    p = SqlWhere()
    lows, highs = p.param([r[0] for r in ranges]), p.param([r[1] for r in ranges])
    resolved = (
        f"SELECT t.i, x.machine_id,"
        " count(*) OVER (PARTITION BY t.i) AS n"
        f" FROM (SELECT g.i, ({lows}::uuid[])[g.i] AS low, ({highs}::uuid[])[g.i] AS high"
        f" FROM generate_series(1, array_length({lows}::uuid[], 1)) AS g(i)) t"
        " CROSS JOIN LATERAL (SELECT m.machine_id FROM machines m"
        " WHERE m.machine_id BETWEEN t.low AND t.high"
        f" ORDER BY m.machine_id LIMIT {int(candidates)}) x"
    )
    # "n <= 1", not "n = 1": without statistics on `resolved` the planner guesses 0.5 % of
    # its rows for an equality (3 of 600: nested loops over every tag table), a third for
    # an inequality (hash joins, as for a page of the list).
    unique = (  # as page_documents takes a page: (machine_id, sort_key, pos)
        "SELECT DISTINCT r.machine_id, NULL::text AS sort_key, 0 AS pos"
        " FROM resolved r WHERE r.n <= 1"
    )
    document = (
        f"WITH resolved AS ({resolved})"
        " SELECT json_build_object("
        "'tokens', (SELECT coalesce(json_agg(json_build_array(r.i, r.machine_id)"
        " ORDER BY r.i, r.machine_id), '[]'::json) FROM resolved r),"
        " 'machines', (SELECT coalesce(json_agg(json_build_array(md5(d.doc::text), d.doc,"
        f" {heartbeat_sql(schema.has_field(tables.HEARTBEAT, HEARTBEAT_AT), p, 'd')},"
        f" {LAST_EVENTS}) ORDER BY d.machine_id), '[]'::json)"
        f" FROM ({page_documents(layout, unique, fleet, p)}) d)) AS doc"
    )
    return polled(document, f"{p.param(known_ptag)}::text"), p.params


@dataclass
class WatchDocument:
    ptag: str
    tokens: dict[int, list[UUID]] | None  # token index (from 0) -> machines; None: unchanged
    # (md5, document, heartbeat, last events)
    machines: list[tuple[str, dict, list | None, list]] | None


async def watch(
    reader: Reader,
    schema: Schema,
    layout: MachineLayout,
    ranges: list[tuple[UUID, UUID]],
    *,
    candidates: int,
    known_ptag: str | None = None,
    fleet: Fleet | None = None,
) -> WatchDocument:
    sql, params = watch_statement(schema, layout, ranges, candidates, known_ptag, fleet)
    row = await reader.fetchrow(sql, *params)
    doc = reader.parse(row["doc"])
    if doc is None:
        return WatchDocument(row["ptag"], None, None)
    tokens: dict[int, list[UUID]] = {}
    for i, machine_id in doc["tokens"]:
        tokens.setdefault(i - 1, []).append(UUID(machine_id))
    return WatchDocument(row["ptag"], tokens, [tuple(m) for m in doc["machines"]])


async def filtered_ids(
    reader: Reader, where: SqlWhere, order: Order, schema: Schema, limit: int
) -> list[UUID]:
    """The first `limit` machine IDs of the list's filter, in the list's order."""
    params = where.copy()
    page = order.page_sql(schema, params, None, limit)
    rows = await reader.fetch(
        f"SELECT p.machine_id FROM ({page}) p ORDER BY p.pos",
        *params.params,
        plan_per_values=bool(where.params),
    )
    return [r["machine_id"] for r in rows]

