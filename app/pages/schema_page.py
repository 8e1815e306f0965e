"""The reflected BMDB schema (/schema) and "refresh now" (POST /schema/refresh).

Data: the SchemaCache (no query of its own); refreshing re-reads information_schema and
schema_migrations through the read-only pool, like the hourly refresh does.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from app.bmdb.connection import DB_UNAVAILABLE
from app.bmdb.reflection import Schema, TagType
from app.bmdb.schema_cache import SchemaCache
from app.deps import Schemas
from app.model.entities import ErrorPage
from app.model.tag_tables import FieldJSON, field_json
from app.model.twin import twin
from app.render import urls
from app.render.templating import respond

router = APIRouter()


class TagTypeJSON(BaseModel):
    name: str  # display name: AgentStarted
    table: str  # machine_agent_started
    machines_url: str  # the machine list of machines with this tag
    fields: list[FieldJSON]  # every column but machine_id


class SchemaJSON(BaseModel):
    loaded: bool  # False until the first reflection succeeds
    version: str | None  # schema_migrations.version ("unknown" without that table)
    dirty: bool | None  # schema_migrations.dirty: a migration failed half-way
    reflected_at: datetime | None
    next_refresh_at: datetime | None  # None while the refresh task is still retrying
    refresh_interval_seconds: float
    last_error: str | None  # of the refresh task's last failed attempt (cleared on success)
    failures: int  # failed refresh attempts since start
    tag_types: list[TagTypeJSON]
    skipped_tables: list[str]  # machine_* tables without machine_id: not tags
    refresh_error: str | None = None  # set only when POST /schema/refresh failed


def machines_with(tag: TagType) -> str:
    return urls.machines(has=[tag.name])


def schema_json(cache: SchemaCache, refresh_error: str | None = None) -> SchemaJSON:
    schema: Schema | None = cache.schema if cache.loaded else None
    return SchemaJSON(
        loaded=schema is not None,
        version=schema.version if schema else None,
        dirty=schema.dirty if schema else None,
        reflected_at=schema.reflected_at if schema else None,
        next_refresh_at=cache.next_refresh_at,
        refresh_interval_seconds=cache.interval,
        last_error=cache.last_error,
        failures=cache.failures,
        tag_types=[
            TagTypeJSON(
                name=t.name,
                table=t.table,
                machines_url=machines_with(t),
                fields=[field_json(f) for f in t.fields],
            )
            for t in (schema.tag_types if schema else ())
        ],
        skipped_tables=list(schema.skipped_tables) if schema else [],
        refresh_error=refresh_error,
    )


def _schema_page(
    request: Request, cache: SchemaCache, refresh_error: str | None = None, status_code: int = 200
):
    return respond(
        request, "templates/schema.html", schema_json(cache, refresh_error),
        status_code=status_code, cache=cache, refresh_error=refresh_error,
        machines_with=machines_with,
    )  # fmt: skip


@router.get(
    urls.SCHEMA,
    name="schema",
    responses=twin(SchemaJSON, "the reflected schema: tag types, fields, version, refresh"),
)
async def schema_page(request: Request, cache: Schemas):
    """Served from the cache, so it answers even while the BMDB does not."""
    return _schema_page(request, cache)


@router.post(
    urls.SCHEMA_REFRESH,
    name="schema_refresh",
    status_code=303,
    responses={
        303: {"description": "refreshed: see /schema"},
        403: {"model": ErrorPage, "description": "cross-origin request refused"},
        503: {"model": SchemaJSON, "description": "the BMDB could not be read"},
    },
)
async def schema_refresh(request: Request, cache: Schemas):
    """Re-reflect the schema now (reads only), then back to /schema (POST-redirect-GET).

    At most one reflection runs at a time, shared by concurrent POSTs, and POSTs reflect
    at most once per `SchemaCache.min_interval`: one sooner gets that reflection.
    Cross-origin POSTs never get here: app/http/security.py refuses them for every route."""
    try:
        await cache.refresh_now()  # one at a time, and a recent one is reused
    except (*DB_UNAVAILABLE, asyncpg.PostgresError) as exc:
        return _schema_page(request, cache, f"{type(exc).__name__}: {exc}", status_code=503)
    return RedirectResponse(urls.schema(), status_code=303)
