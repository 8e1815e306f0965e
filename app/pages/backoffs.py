"""Every backoff (/backoffs): which end next, which have gone on longest.

Data: app/model/backoff_items.py (page model, loader) and app/bmdb/backoff_list.py (the
statement): one statement per page and per poll, its counts shared through the count
cache; an unchanged poll answers 304. `?format=csv` streams every backoff of the filters.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.bmdb.backoff_list import BackoffFilters
from app.deps import AppSettings, Counts, CurrentSchema, ListPoll, PageReader
from app.model import backoff_items
from app.model.live_list import answer, wants_csv
from app.model.twin import twin
from app.render import urls

router = APIRouter()

MAX_PAGE = 1000


@router.get(
    urls.BACKOFFS,
    name="backoffs",
    responses=twin(backoff_items.BackoffListPage, "one page of backoffs"),
)
async def backoffs_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    counts: Counts,
    settings: AppSettings,
    filters: Annotated[BackoffFilters, Query()],
    poll: ListPoll,
    after: Annotated[str | None, Query(max_length=2000, description="keyset cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = urls.LIST_LIMIT,
):
    cursor = backoff_items.parse(schema, filters, after)
    if wants_csv(request):
        return backoff_items.csv(reader, filters, settings.csv_row_cap)
    live = await backoff_items.load(request, reader, counts, filters, cursor, limit, poll)
    return answer(
        request, reader, live, "backoffs", poll=poll, count_ttl=counts.ttl,
        csv_row_cap=settings.csv_row_cap,
    )
