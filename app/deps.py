"""What page handlers are given: every piece of the app's shared state, as a FastAPI
dependency. Handlers name what they need in their signature (`reader: PageReader`) and
never reach into `request.app.state` themselves; the app builds that state once, in
app/main.py."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from app.bmdb.connection import Database, Reader
from app.bmdb.counts import CountCache
from app.bmdb.history_reads import HistoryReads
from app.bmdb.reflection import Schema
from app.bmdb.schema_cache import SchemaCache
from app.bmdb.workflows import Fleet, compiled
from app.config import Settings
from app.model.polling import Poll
from app.render import urls

# Every dependency is async: FastAPI runs a plain function in a worker thread.


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _database(request: Request) -> Database:
    return request.app.state.db


async def _reader(request: Request) -> Reader:
    """A new Reader per request: it records the statements the page ran (footer, JSON)."""
    return Reader(request.app.state.db)


async def _schema_cache(request: Request) -> SchemaCache:
    return request.app.state.schema_cache


async def _schema(request: Request) -> Schema:
    return request.app.state.schema_cache.schema


async def _fleet(request: Request, schema: Annotated[Schema, Depends(_schema)]) -> Fleet:
    """The app's workflows (built-in and WEBUG_WORKFLOWS), compiled for this schema."""
    return compiled(schema, request.app.state.workflows)


async def _count_cache(request: Request) -> CountCache:
    return request.app.state.count_cache


async def _history_reads(request: Request) -> HistoryReads:
    return request.app.state.history_reads


def _poll(default_every: int, choices: tuple[int, ...]) -> Callable[..., Coroutine[Any, Any, Poll]]:
    """A dependency reading a live view's `live` and `every`, and the poll tag the
    browser holds."""

    async def poll(
        request: Request,
        live: Annotated[bool, Query(description="poll for changes; live=0 pauses")] = True,
        every: Annotated[
            int, Query(ge=1, le=300, description="poll interval, seconds")
        ] = default_every,
    ) -> Poll:
        return Poll(live, every, choices, request.headers.get("HX-PTag"))

    return poll


AppSettings = Annotated[Settings, Depends(_settings)]
BMDB = Annotated[Database, Depends(_database)]
PageReader = Annotated[Reader, Depends(_reader)]
Schemas = Annotated[SchemaCache, Depends(_schema_cache)]  # the cache: refresh, its state
CurrentSchema = Annotated[Schema, Depends(_schema)]
Workflows = Annotated[Fleet, Depends(_fleet)]
Counts = Annotated[CountCache, Depends(_count_cache)]  # totals, facets, overview: shared
HistoryCache = Annotated[HistoryReads, Depends(_history_reads)]  # fleet-wide history reads
ListPoll = Annotated[Poll, Depends(_poll(urls.LIST_EVERY, (2, 5, 10, 30)))]
DetailPoll = Annotated[Poll, Depends(_poll(urls.DETAIL_EVERY, (1, 2, 5, 10)))]
