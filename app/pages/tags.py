"""Each tag type as a table: /tags lists the tag types with their machines and fields,
/tags/{TagName} one row per machine with that tag, one column per field.

Data: app/model/tag_tables.py (page models, loaders) and app/bmdb/tag_tables.py (the
statements). Only what reflection found: a tag, field or value it does not know is a 400
that lists what is valid. The table is one statement per page and per poll, its counts
shared through the count cache; /tags counts every tag table in one statement, shared
the same way. Unchanged polls answer 304; `?format=csv` streams every row of a table.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.bmdb.tag_tables import ID_SORT
from app.deps import AppSettings, Counts, CurrentSchema, ListPoll, PageReader
from app.model import tag_tables
from app.model.live_list import answer, wants_csv
from app.model.twin import twin
from app.render import urls

router = APIRouter()

MAX_PAGE = 1000


@router.get(
    urls.TAGS,
    name="tags",
    responses=twin(tag_tables.TagTypesPage, "every tag type with its machines and fields"),
)
async def tag_types_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    counts: Counts,
    settings: AppSettings,
    poll: ListPoll,
):
    live = await tag_tables.load_types(request, reader, counts, schema, poll)
    return answer(
        request, reader, live, "tags", poll=poll, count_ttl=counts.ttl,
        csv_row_cap=settings.csv_row_cap,
    )


@router.get(
    urls.TAG_TABLE,
    name="tag_table",
    responses=twin(tag_tables.TagTablePage, "one page of a tag type's table"),
)
async def tag_table_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    counts: Counts,
    settings: AppSettings,
    poll: ListPoll,
    tag: Annotated[str, Path(max_length=200, description="a tag type's name, as /tags lists")],
    sort: Annotated[
        str, Query(max_length=200, description="machine_id or a field; '-' for descending")
    ] = ID_SORT,
    after: Annotated[str | None, Query(max_length=8000, description="keyset cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = urls.LIST_LIMIT,
):
    """Filters are the other parameters: field=value, field__isnull=1, field__gt=, field__lt=."""
    pairs = list(request.query_params.multi_items())
    query, cursor = tag_tables.parse_query(schema, tag, pairs, sort, after)
    if wants_csv(request):
        base_url = str(request.base_url).rstrip("/")
        return tag_tables.csv(reader, schema, query, base_url, settings.csv_row_cap)
    live = await tag_tables.load_table(request, reader, counts, schema, query, cursor, limit, poll)
    return answer(
        request, reader, live, "tag", poll=poll, count_ttl=counts.ttl,
        csv_row_cap=settings.csv_row_cap,
    )
