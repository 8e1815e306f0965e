"""The machine list as pages share it: its query (the list itself, its CSV and the watch
list of a filter, "Watch these") and the read of one page of it.

A page is one statement: the page of machines, with the total when it is due. The facets
are one more when they are due. Totals and facets scan the filtered fleet, so they are
counted once per view and reused by its polls and by other watchers for
WEBUG_COUNT_CACHE_SECONDS (app/bmdb/counts.py). A poll of an unchanged page costs one
statement that returns no document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import HTTPException

from app.bmdb import machines as bmdb
from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache, Counted, not_older
from app.bmdb.filters import NULL_STATUS, FilterError, MachineFilters, SqlWhere, build_where
from app.bmdb.history_reads import HistoryReads
from app.bmdb.machine_states import MachineState, tally
from app.bmdb.ordering import Cursor, Order
from app.bmdb.reflection import Schema
from app.bmdb.workflows import FACTS, Fleet, Group, decode_groups
from app.model.entities import Machine, Model, machine_from
from app.model.failure_groups import ResolvedFailure, list_failure
from app.model.polling import Poll, PollTag
from app.model.workflow_status import statuses
from app.render.tag_hints import summary_fields
from app.slices import map_in_slices


async def list_query(
    counts: CountCache, reads: HistoryReads, reader: Reader, schema: Schema, fleet: Fleet,
    filters: MachineFilters,
) -> tuple[ResolvedFailure | None, SqlWhere, Order]:  # fmt: skip
    """The list's filters as SQL conditions, and its order: a 400 for one this BMDB cannot
    answer. A `failure=` group is resolved to its machine IDs (shared: failure_groups.py)."""
    failure = await list_failure(counts, reads, reader, filters)
    try:
        where = build_where(
            filters, schema, failure.machine_ids if failure else None, fleet=fleet
        )
        return failure, where, Order.parse(filters.sort, schema)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None


def parse_cursor(order: Order, after: str | None) -> Cursor | None:
    """The keyset cursor `after` names in `order`; a 400 for one of another order."""
    try:
        return order.cursor(after) if after else None
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None


class Facets(Model):
    """Counts over the filtered machines; each value links to the list with its filter."""

    tags: dict[str, int]
    provider: dict[str, int]
    status: dict[str, int]
    location: dict[str, int]
    work: dict[str, int]
    backoff: dict[str, int]
    # workflow -> state -> machines (a workflow this schema lacks: every machine unknown)
    workflows: dict[str, dict[str, int]]
    # Machines per state tab (app/bmdb/machine_states.py: working, in_backoff, stale,
    # stuck, eligible, unmanaged), each counted under the other filters: its link lists
    # as many; `all` is their total.
    tabs: dict[str, int]
    # The stuck machines of those (the stuck tab's) per blocker, the first that holds.
    stuck_by: dict[str, int]


def facets_from(doc: dict, schema: Schema, fleet: Fleet, filters: MachineFilters) -> Facets:
    by_value: dict[str, dict[str, int]] = {"provider": {}, "status": {}, "location": {}}
    for provider, status, location, n in doc["provided"] or ():
        for facet, value in (("provider", provider), ("status", status or NULL_STATUS),
                             ("location", location)):  # fmt: skip
            if value is not None:
                by_value[facet][value] = by_value[facet].get(value, 0) + n

    def by_count(counts: dict[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    return Facets(
        tags={t.name: n for t, n in zip(schema.tag_types, doc["tags"], strict=True)},
        **{facet: by_count(counts) for facet, counts in by_value.items()},
        work={process: n for process, n, _ in doc["work"]},
        backoff={process: n for process, n in doc["backoff"]},
        **_workflow_facets(doc, fleet, filters),
    )


def _workflow_facets(doc: dict, fleet: Fleet, filters: MachineFilters) -> dict:
    """The workflow facets of the view's machines and the state tabs, from the groups
    counted under the filters but the tabs' (app/bmdb/machines.py, `facets_statement`)."""
    tabs, blocker = filters.tabs, filters.blocker
    counts = tally(fleet, decode_groups(fleet, doc["workflows"]),
                   lambda state: state.selected(tabs, blocker))  # fmt: skip
    return {
        "workflows": {w.name: counts.workflows.get(w.name, {"unknown": doc["total"]})
                      for w in fleet.workflows},
        "tabs": {"all": counts.machines, **counts.tabs},
        "stuck_by": counts.blockers,
    }  # fmt: skip


@dataclass(frozen=True)
class ListRead:
    """One page of the list as read, or None for `machines` when the browser's copy is
    still true (a 304)."""

    machines: list[Machine] | None
    ptag: str
    total: int = 0
    counted_at: datetime | None = None  # when the total (and facets) were counted
    facets: Facets | None = None
    next_after: str | None = None  # the next page's cursor


@dataclass(frozen=True)
class ListView:
    """What the list shows: filters as SQL, order, page, and how it is drawn."""

    filters: MachineFilters
    where: SqlWhere
    order: Order
    after: str | None  # as given
    cursor: Cursor | None  # as parsed (parse_cursor)
    limit: int
    full: bool  # the whole page (with its facets), not a poll of its table
    as_json: bool  # every field of every tag, not the HTML row's summary


async def read_list(
    reader: Reader, schema: Schema, fleet: Fleet, counts: CountCache, view: ListView,
    poll: Poll,
) -> ListRead:  # fmt: skip
    """A page of machines with its total (and, for a full page, its facets), each taken
    from the shared counts when they are fresh. A poll of an unchanged page reads no
    document."""
    count_key = (schema.version, schema.layout_key, view.where.sql, *view.where.params)
    facets = None
    if view.full:  # facets (with the total) in a statement of their own, when due
        doc, counted_at = await counts.get(
            ("facets", count_key), lambda: bmdb.facets(reader, schema, view.where, fleet)
        )
        facets, kept = facets_from(doc, schema, fleet, view.filters), (doc["total"], counted_at)
    elif (kept_facets := counts.fresh(("facets", count_key))) is not None:
        kept = (kept_facets[0]["total"], kept_facets[1])
    else:  # the total the page's statement counts, when due
        kept = counts.fresh(("total", count_key))
    layout = bmdb.list_layout(schema, None if view.as_json else summary_fields)
    # Rows say why (not) on the views that ask about workflows; elsewhere the list stays
    # as light as it is (a dozen probes per machine saved).
    row_fleet = fleet if view.filters.workflow_view else None
    tag = PollTag(poll, "list", view.filters, view.after, view.limit, schema.layout_key)
    kept = not_older(kept, tag.counted)  # never older than what the browser shows
    doc = await bmdb.machine_list(
        reader, layout, view.where, after=view.cursor, limit=view.limit + 1,
        with_total=kept is None, known_ptag=tag.known,
        known_total=kept[0] if kept is not None else None, order=view.order, schema=schema,
        fleet=row_fleet,
    )  # fmt: skip
    if kept is None:
        kept = counts.store(("total", count_key), doc.total)
    if doc.machines is None:  # unchanged, its total too: the browser keeps what it shows
        return ListRead(None, tag.held)
    shown = doc.machines[: view.limit]
    machines = await map_in_slices(lambda m: _machine(m[1], layout, m[0], row_fleet), shown)
    next_after = None
    if len(doc.machines) > view.limit:
        last = doc.machines[view.limit - 1][1]["machine_id"]
        next_after = view.order.token(doc.sort_keys[view.limit - 1], last)
    ptag = tag.of(doc.ptag, Counted.of(kept[1], kept[0]))
    return ListRead(machines, ptag, kept[0], kept[1], facets, next_after)


def _machine(document: dict, layout: bmdb.MachineLayout, key: str, fleet: Fleet | None) -> Machine:
    """A list row's machine; with `fleet`, its workflows' states and, when stuck, its
    blocker too (the document has their conditions and the facts)."""
    machine = machine_from(document, layout, key)
    if fleet is None:
        return machine
    workflows = statuses(fleet, document["workflow_conditions"], machine)
    known = tuple(s.state for s in workflows if s.state != "unknown")
    facts = dict(zip(FACTS, document["facts"], strict=True))
    state = MachineState.of(Group(known, facts, 1))
    return machine.model_copy(update={"workflows": workflows, "blocker": state.blocker})
