"""What the keyset lists of /work, /backoffs and /tags/{TagName} share: their `after=`
cursors, one statement per page and per poll (its counts included when they are due,
then shared through the count cache), a 304 for a poll whose page is unchanged, and the
streamed CSV of every page.

The counts (total and facets) scan the filtered rows: they are taken by a page's own
statement at most once per WEBUG_COUNT_CACHE_SECONDS for each view and shared by its
polls and by other watchers. The poll tag (app/model/polling.py) holds the view and the
total it was answered with, so fresh counts with another total answer the page again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from fastapi import HTTPException, Request, Response

from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache
from app.bmdb.filters import FilterError, check_labels
from app.bmdb.keyset import (
    Cursor,
    CursorError,
    Keyset,
    ListQuery,
    list_statement,
    page_statement,
    read_list,
    read_rows,
)
from app.bmdb.reflection import Schema
from app.model import csv_export
from app.model.polling import PAGE_SIZES, Poll, PollTag
from app.render.templating import is_htmx, respond

P = TypeVar("P")



def bad_request(exc: FilterError | CursorError) -> HTTPException:
    return HTTPException(400, str(exc))


def cursor(keyset: Keyset, after: str | None) -> Cursor | None:
    """The cursor of `after=`, a 400 when it is not one of this order's."""
    try:
        return keyset.cursor(after) if after else None
    except CursorError as exc:
        raise bad_request(exc) from None


def check_process(schema: Schema, process: str | None) -> None:
    """A 400 that lists the processes, for one the BMDB's `process` enum lacks (after one
    more reflection: the enum may have grown, app/bmdb/filters.check_labels)."""
    check_labels("process", [process] if process is not None else [], schema.processes)


def wants_csv(request: Request) -> bool:
    return request.query_params.get("format") == "csv"


@dataclass
class Page:
    """A page as a list's statement read it."""

    rows: list[Any]  # the page's row documents, at most `limit`
    after: str | None  # this page's `after=`
    limit: int
    next_after: str | None  # the next page's, when there is one
    counts: Any  # the counts document, as of `counted_at`
    counted_at: datetime


@dataclass
class Live(Generic[P]):
    """A live list's answer: its page model, or None when the browser's copy is current."""

    ptag: str  # HX-PTag
    page: P | None

    @property
    def headers(self) -> dict[str, str]:
        return {"HX-PTag": self.ptag}

    def not_modified(self) -> Response:
        return Response(status_code=304, headers=self.headers)


async def load(
    request: Request,
    reader: Reader,
    counts: CountCache,
    query: ListQuery,
    *,
    count_key: Hashable,
    view: tuple,
    after: Cursor | None,
    limit: int,
    poll: Poll,
    build: Callable[[Page], P],
) -> Live[P]:
    """One page of a live list in one statement (limit + 1 rows, to know whether a next
    page exists), built into its page model; None when the poll's copy is current. Its
    counts come from the count cache under `count_key`, or from that statement when due.
    `view`: what the page shows besides its rows, page and counts, for the poll tag."""
    token = request.query_params.get("after")
    view = (*view, token, limit)
    kept = counts.fresh(count_key)
    tag = PollTag(poll, *view, kept[0]["total"] if kept else None)
    sql, params = list_statement(
        query, after=after, limit=limit + 1, with_counts=kept is None,
        known_ptag=tag.known if kept else None,
    )  # fmt: skip
    read = await read_list(reader, sql, params)
    if kept is None:
        kept = counts.store(count_key, read.counts)
        tag = PollTag(poll, *view, kept[0]["total"])
    if read.rows is None:
        return Live(tag.of(read.ptag), None)
    rows = read.rows
    next_after = query.keyset().token(rows[limit - 1][1]) if len(rows) > limit else None
    page = Page([r for r, _ in rows[:limit]], token, limit, next_after, *kept)
    return Live(tag.of(read.ptag), build(page))


def answer(
    request: Request,
    reader: Reader,
    live: Live,
    name: str,
    *,
    poll: Poll,
    count_ttl: float,
    csv_row_cap: int,
    **view: Any,
) -> Response:
    """A live list's response: 304 when unchanged, else the page (`templates/<name>.html`),
    its polled fragment (`partials/<name>_table.html`) or its JSON twin."""
    if live.page is None:
        return live.not_modified()
    template = f"partials/{name}_table.html" if is_htmx(request) else f"templates/{name}.html"
    return respond(
        request, template, live.page, reader=reader, headers=live.headers, poll=poll,
        ptag=live.ptag, page_sizes=PAGE_SIZES, count_ttl=count_ttl, csv_row_cap=csv_row_cap,
        **view,
    )  # fmt: skip


def csv_download(
    reader: Reader,
    query: ListQuery,
    header: list[str],
    row: Callable[[Any], list[object]],
    cap: int,
    filename: str,
):
    """Every row of a list in its order, up to `cap` rows, as a streamed CSV: keyset pages
    of csv_export.PAGE_ROWS rows, one statement each."""

    async def read(after: Cursor | None, size: int) -> tuple[list[list[object]], Cursor | None]:
        rows = await read_rows(Reader(reader.db), *page_statement(query, after=after, limit=size))
        return [row(r) for r, _ in rows], rows[-1][1] if rows else None

    return csv_export.stream(header, read, cap, filename)
