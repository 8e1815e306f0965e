"""Every work item (/work): what runs now and for how long, stale work first.

Data: app/model/work_items.py (page model, loader) and app/bmdb/work_list.py (the
statement): one statement per page and per poll, its counts shared through the count
cache; an unchanged poll answers 304. `?format=csv` streams every item of the filters.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.bmdb.work_list import WorkFilters
from app.deps import AppSettings, Counts, CurrentSchema, ListPoll, PageReader
from app.model import work_items
from app.model.live_list import answer, wants_csv
from app.model.twin import twin
from app.render import urls

router = APIRouter()

MAX_PAGE = 1000


@router.get(
    urls.WORK,
    name="work",
    responses=twin(work_items.WorkListPage, "one page of work items, stale ones first"),
)
async def work_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    counts: Counts,
    settings: AppSettings,
    filters: Annotated[WorkFilters, Query()],
    poll: ListPoll,
    after: Annotated[str | None, Query(max_length=2000, description="keyset cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = urls.LIST_LIMIT,
):
    cursor = work_items.parse(schema, filters, after)
    if wants_csv(request):
        return work_items.csv(reader, filters, settings.csv_row_cap)
    live = await work_items.load(request, reader, counts, filters, cursor, limit, poll)
    return answer(
        request, reader, live, "work", poll=poll, count_ttl=counts.ttl,
        csv_row_cap=settings.csv_row_cap,
    )
