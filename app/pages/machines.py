"""The machine list (/): filters, facets, keyset pages, a live table.

Data: app/model/machine_list.py (one statement per page, the shared counts when due).
A poll of an unchanged page answers 304. `failure=` lists the machine IDs of a failure
group (app/model/failure_groups.py). Orders (`sort=`) and their keyset cursors:
app/bmdb/ordering.py. `?format=csv` streams every machine of the filter in the page's
order (app/model/csv_export.py), up to WEBUG_CSV_ROW_CAP rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import ConfigDict, Field, computed_field

from app.bmdb.filters import MachineFilters, text_searched
from app.bmdb.watch import MAX_IDS as MAX_WATCH
from app.deps import (
    AppSettings,
    Counts,
    CurrentSchema,
    HistoryCache,
    ListPoll,
    PageReader,
    Workflows,
)
from app.model import csv_export
from app.model.entities import Machine, PageModel
from app.model.failure_groups import FailureFilter
from app.model.machine_list import Facets, ListView, list_query, parse_cursor, read_list
from app.model.polling import PAGE_SIZES
from app.model.twin import twin
from app.render import urls
from app.render.tag_hints import list_columns
from app.render.templating import is_htmx, json_requested, respond, rows_html

router = APIRouter()

MAX_PAGE = 5000  # rows per page, HTML or JSON


class MachineListPage(PageModel):
    model_config = ConfigDict(frozen=True)

    machines: list[Machine]
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
    def filters(self) -> dict[str, list[str]]:
        """The filters in use: parameter -> values."""
        active: dict[str, list[str]] = {}
        for name, value in self.view.active():
            active.setdefault(name, []).append(value)
        return active


AFTER_HELP = "keyset: the page after this cursor (`next_after` of the page before; in ID order a machine ID)"  # noqa: E501


@router.get(
    urls.MACHINES, name="machines", responses=twin(MachineListPage, "one page of machines")
)
async def machine_list(
    request: Request, reader: PageReader, schema: CurrentSchema, fleet: Workflows,
    counts: Counts, reads: HistoryCache, settings: AppSettings, poll: ListPoll,
    filters: Annotated[MachineFilters, Query()],
    after: Annotated[str | None, Query(max_length=500, description=AFTER_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = 100,
):  # fmt: skip
    failure, where, order = await list_query(counts, reads, reader, schema, fleet, filters)
    cursor = parse_cursor(order, after)  # a 400 for another order's, even for the CSV
    if request.query_params.get("format") == "csv":
        base_url = str(request.base_url).rstrip("/")
        return csv_export.machines_csv(reader, schema, where, order, base_url, settings.csv_row_cap)
    fragment, as_json = is_htmx(request), json_requested(request)
    view = ListView(filters, where, order, after, cursor, limit, not fragment, as_json)
    found = await read_list(reader, schema, fleet, counts, view, poll)
    if found.machines is None:  # unchanged: the browser keeps what it shows
        return Response(status_code=304, headers={"HX-PTag": found.ptag})
    page = MachineListPage(
        machines=found.machines, total=found.total, limit=limit, sort=order.sort, after=after,
        next_after=found.next_after, view=filters, facets=found.facets,
        text_searched=text_searched(schema) if filters.text else None,
        counted_at=found.counted_at, failure=failure.info if failure else None,
    )  # fmt: skip
    cols = list_columns(schema.tag_types)
    rows = "" if as_json else await rows_html(
        request, "partials/machine_row.html", page.machines, cols
    )
    return respond(
        request, "partials/machine_table.html" if fragment else "templates/machines.html", page,
        reader=reader, headers={"HX-PTag": found.ptag}, poll=poll, ptag=found.ptag,
        count_ttl=counts.ttl, page_sizes=PAGE_SIZES, order=order, max_watch=MAX_WATCH,
        csv_row_cap=settings.csv_row_cap, json_slices=("machines", {"machines": []}),
        rows_html=rows, cols=cols,
    )  # fmt: skip
