"""The machine list (/): filters, facets, keyset pages, a live table.

Data: app/bmdb/machines.py. A page is one statement (the page of machines, with the
total when it is due); the facets are one more when they are due. Totals and facets
scan the filtered fleet, so they are counted once per view and reused by its polls and
by other watchers for WEBUG_COUNT_CACHE_SECONDS. A poll of an unchanged page costs one
statement that returns no document, and answers 304. `failure=` lists the machine IDs
of a failure group, read (shared, one more statement when due) by app/pages/failures.py.

Orders (`sort=`) and their keyset cursors: app/bmdb/ordering.py. `?format=csv` streams
every machine of the filter in the page's order (app/pages/csv_export.py), up to
WEBUG_CSV_ROW_CAP rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import ConfigDict, Field, computed_field

from app.bmdb import machines as bmdb
from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache, Counted, not_older
from app.bmdb.filters import (
    NULL_STATUS,
    FilterError,
    MachineFilters,
    SqlWhere,
    build_where,
    text_searched,
)
from app.bmdb.ordering import Cursor, Order
from app.bmdb.reflection import Schema
from app.bmdb.watch import MAX_IDS as MAX_WATCH
from app.bmdb.workflows import Fleet, decode_counts
from app.pages import csv_export
from app.pages.common import PAGE_SIZES, ListPoll, PollTag
from app.pages.failures import FailureFilter, ResolvedFailure, list_failure
from app.pages.json_models import twin
from app.pages.models import Machine, Model, PageModel, machine_from
from app.pages.workflow_status import fleet_of, statuses
from app.render import urls
from app.render.tag_hints import summary_fields
from app.render.templating import (
    CurrentSchema,
    PageReader,
    is_htmx,
    json_requested,
    machine_rows_html,
    respond,
)
from app.slices import map_in_slices

router = APIRouter()

MAX_PAGE = 5000  # rows per page, HTML or JSON


class Facets(Model):
    """Counts over the filtered machines; each value links to the list with its filter."""

    tags: dict[str, int]
    provider: dict[str, int]
    status: dict[str, int]
    location: dict[str, int]
    work: dict[str, int]
    stale_work: int
    backoff: dict[str, int]
    # workflow -> state -> machines (a workflow this schema lacks: every machine unknown)
    workflows: dict[str, dict[str, int]]
    stuck: int


def facets_from(doc: dict, schema: Schema, fleet: Fleet) -> Facets:
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
        stale_work=sum(stale for _, _, stale in doc["work"]),
        backoff={process: n for process, n in doc["backoff"]},
        **_workflow_facets(doc, fleet),
    )


def _workflow_facets(doc: dict, fleet: Fleet) -> dict:
    counts, stuck = decode_counts(fleet, doc["workflows"])
    return {
        "workflows": {w.name: counts.get(w.name, {"unknown": doc["total"]})
                      for w in fleet.workflows},
        "stuck": stuck,
    }  # fmt: skip


class ListRow:
    """One machine of the list as its document came, decoded only when asked: a row
    whose HTML is reused (keyed by `key`, the document's md5) is never decoded. With
    `fleet`, its workflows' states too (the document has their conditions)."""

    __slots__ = ("document", "fleet", "key", "layout", "_machine")

    def __init__(
        self, key: str, document: dict, layout: bmdb.MachineLayout, fleet: Fleet | None = None
    ) -> None:
        self.key, self.document, self.layout, self.fleet = key, document, layout, fleet
        self._machine: Machine | None = None

    @property
    def machine(self) -> Machine:
        if self._machine is None:
            machine = machine_from(self.document, self.layout, self.key)
            if self.fleet is not None:
                held = self.document["workflow_conditions"]
                machine = machine.model_copy(
                    update={"workflows": statuses(self.fleet, held, machine)}
                )
            self._machine = machine
        return self._machine


class MachineListPage(PageModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    rows: list[ListRow] = Field(exclude=True)  # the page's machines, decoded on demand
    total: int
    limit: int
    sort: str  # the order (app/bmdb/ordering.py)
    after: str | None  # this page's cursor: a machine ID in ID order, else a token
    next_after: str | None  # the next page's
    view: MachineFilters = Field(exclude=True)  # the filters as the links change them
    text_searched: list[str] | None  # the columns text= searched, when given
    facets: Facets | None  # full pages only; a poll of the table has none
    counted_at: datetime  # when the total (and facets) were counted
    failure: FailureFilter | None = None  # what `failure=` stands for, when given

    @computed_field
    @property
    def machines(self) -> list[Machine]:
        return [row.machine for row in self.rows]

    @computed_field
    @property
    def filters(self) -> dict[str, list[str]]:
        """The filters in use: parameter -> values."""
        active: dict[str, list[str]] = {}
        for name, value in self.view.active():
            active.setdefault(name, []).append(value)
        return active


async def list_query(
    request: Request, reader: Reader, schema: Schema, filters: MachineFilters
) -> tuple[ResolvedFailure | None, SqlWhere, Order]:
    """The list's filters as SQL conditions, and its order: a 400 for one this BMDB cannot
    answer. A `failure=` group is resolved to its machine IDs (shared, see failures.py)."""
    failure = await list_failure(request, reader, filters)
    try:
        where = build_where(
            filters, schema, failure.machine_ids if failure else None,
            fleet=fleet_of(request, schema),
        )  # fmt: skip
        return failure, where, Order.parse(filters.sort, schema)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get(
    urls.MACHINES, name="machines", responses=twin(MachineListPage, "one page of machines")
)
async def machine_list(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    filters: Annotated[MachineFilters, Query()],
    poll: ListPoll,
    after: Annotated[
        str | None,
        Query(
            max_length=500,
            description="keyset: the page after this cursor (`next_after` of the page before;"
            " in ID order a machine ID)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = 100,
):
    failure, where, order = await list_query(request, reader, schema, filters)
    fleet = fleet_of(request, schema)
    try:
        cursor = order.cursor(after) if after else None
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None
    if request.query_params.get("format") == "csv":
        return _csv(request, reader, schema, where, order)
    fragment, as_json = is_htmx(request), json_requested(request)
    counts: CountCache = request.app.state.count_cache
    count_key = (schema.version, schema.layout_key, where.sql, *where.params)
    # Rows say why (not) on the views that ask about workflows; elsewhere the list stays
    # as light as it was (a dozen probes per machine saved).
    row_workflows = fleet if filters.workflow or filters.stuck else None
    # The total, as of when it was counted (which also keys the reused facets block).
    facets = None
    if not fragment:  # facets (with the total) in a statement of their own, when due
        facets_doc, counted_at = await counts.get(
            ("facets", count_key), lambda: bmdb.facets(reader, schema, where, fleet)
        )
        facets = facets_from(facets_doc, schema, fleet)
        kept_total = (facets_doc["total"], counted_at)
    elif (kept_facets := counts.fresh(("facets", count_key))) is not None:
        kept_total = (kept_facets[0]["total"], kept_facets[1])
    else:  # the total a list statement counted
        kept_total = counts.fresh(("total", count_key))
    # HTML rows show a summary of each tag; the JSON twin carries every field.
    layout = bmdb.list_layout(schema, None if as_json else summary_fields)
    tag = PollTag(request, "list", filters, after, limit, poll, schema.layout_key)
    kept_total = not_older(kept_total, tag.counted)  # never older than the browser's
    doc = await bmdb.machine_list(
        reader,
        layout,
        where,
        after=cursor,
        limit=limit + 1,
        with_total=kept_total is None,
        known_ptag=tag.known,
        known_total=kept_total[0] if kept_total is not None else None,
        order=order,
        schema=schema,
        fleet=row_workflows,
    )
    if kept_total is None:
        kept_total = counts.store(("total", count_key), doc.total)
    if doc.machines is None:  # unchanged, its total too: the browser keeps what it shows
        return tag.unchanged()
    total, counted_at = kept_total
    rows = [ListRow(key, document, layout, row_workflows) for key, document in doc.machines]
    next_after = None
    if len(rows) > limit:
        next_after = order.token(doc.sort_keys[limit - 1], rows[limit - 1].document["machine_id"])
    if as_json:  # every machine decoded, a slice at a time (app/slices.py)
        await map_in_slices(lambda row: row.machine, rows[:limit])
    page = MachineListPage(
        rows=rows[:limit],
        total=total,
        limit=limit,
        sort=order.sort,
        after=after,
        next_after=next_after,
        view=filters,
        text_searched=text_searched(schema) if filters.text else None,
        facets=facets,
        counted_at=counted_at,
        failure=failure.info if failure else None,
    )
    template = "partials/machine_table.html" if fragment else "templates/machines.html"
    ptag = tag.of(doc.ptag, Counted.of(counted_at, total))
    rows_html = None if as_json else await machine_rows_html(page.rows, schema)
    return respond(
        request, template, page, reader=reader, headers={"HX-PTag": ptag},
        poll=poll, ptag=ptag, count_ttl=counts.ttl, page_sizes=PAGE_SIZES, order=order,
        max_watch=MAX_WATCH,
        csv_row_cap=request.app.state.settings.csv_row_cap,
        json_slices=("machines", {"rows": []}),
        rows_html=rows_html,
    )  # fmt: skip


def _csv(request: Request, reader: Reader, schema: Schema, where: SqlWhere, order: Order):
    """Every machine of the filter in `order`, up to the row cap, as a streamed CSV.

    A CSV of the whole fleet is many pages by design: keyset pages of csv_export.PAGE_ROWS machines,
    one statement each (each its own consistent read), written out as they arrive, so
    neither webug nor the BMDB ever holds the whole fleet.
    """
    layout = bmdb.csv_layout(schema)
    base_url = str(request.base_url).rstrip("/")

    async def read(after: Cursor | None, size: int) -> tuple[list[list[object]], Cursor | None]:
        doc = await bmdb.machine_list(
            Reader(reader.db), layout, where, after=after, limit=size, with_total=False,
            order=order, schema=schema,
        )  # fmt: skip
        assert doc.machines is not None and doc.sort_keys is not None
        machines = [machine_from(d, layout) for _, d in doc.machines]
        last = Cursor(doc.sort_keys[-1], machines[-1].machine_id) if machines else None
        return [csv_export.machine_row(m, layout, base_url) for m in machines], last

    return csv_export.stream(
        csv_export.machine_header(layout), read,
        request.app.state.settings.csv_row_cap, "webug-machines.csv",
    )  # fmt: skip
