"""The machine list (/): filters, facets, keyset pages, live table; data from app.repository."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from app.bmdb import machines as repository
from app.bmdb.counts import CountCache
from app.bmdb.filters import FilterError, MachineFilters, build_where
from app.pages.json_models import MachineJSON, QueryJSON, machine_json, twin
from app.render.templating import (
    CurrentSchema,
    PageSnapshot,
    cached_partial,
    is_htmx,
    render,
    wants_json,
)

router = APIRouter()

Text = Annotated[str | None, Query(max_length=200)]
POLL_CHOICES = (2, 5, 10, 30)


class MachineListJSON(BaseModel):
    machines: list[MachineJSON]
    total: int
    limit: int
    after: UUID | None
    next_after: UUID | None
    filters: dict[str, list[str]]
    facets: dict[str, Any] | None
    queries: list[QueryJSON] = []


@router.get("/", name="machines", responses=twin(MachineListJSON, "one page of machines"))
async def machine_list(
    request: Request,
    snap: PageSnapshot,
    schema: CurrentSchema,
    provider: Text = None,
    status: Text = None,
    location: Text = None,
    has: Annotated[list[str], Query(max_length=50, description="tag names it has")] = [],  # noqa: B006
    lacks: Annotated[list[str], Query(max_length=50, description="tag names it lacks")] = [],  # noqa: B006
    work: Text = None,
    backoff: Annotated[
        str | None, Query(max_length=200, description="active backoff process")
    ] = None,
    stale: bool = False,
    heartbeat: Annotated[
        Literal["recent", "stale"] | None,
        Query(description="agent heartbeat within / older than 10 minutes"),
    ] = None,
    installation: Annotated[
        Literal["pending", "complete", "failed"] | None,
        Query(
            description="OS installation request not yet answered by a report of the same or"
            " newer generation / answered with Success / answered with Error"
        ),
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="machine/provider ID prefix")
    ] = None,
    after: Annotated[UUID | None, Query(description="keyset: machine IDs after this one")] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="page size")] = 100,
    live: bool = True,
    every: Annotated[int, Query(ge=1, le=300, description="poll interval, seconds")] = 5,
):
    started = time.perf_counter()
    filters = MachineFilters(
        provider=provider,
        status=status,
        location=location,
        has=tuple(has),
        lacks=tuple(lacks),
        work=work,
        backoff=backoff,
        stale=stale,
        heartbeat=heartbeat,
        installation=installation,
        q=q or None,
    )
    try:
        where = build_where(filters, schema)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None
    page = await repository.machine_page(snap, where, after=after, limit=limit + 1)
    has_next = len(page) > limit
    page = page[:limit]
    # HTML rows show a summary of each tag; the JSON twin carries every field.
    fetched = await repository.fill_details(snap, schema, page, summary=not wants_json(request))
    fragment = is_htmx(request)
    # Totals and facets scan the filtered fleet: cached briefly per filter, so polls and
    # other watchers of the same view cost in proportion to the page, not the fleet.
    cache: CountCache = request.app.state.count_cache
    key = (schema.version, tuple(t.table for t in schema.tag_types), where.sql, *where.params)
    total, counted_at = await cache.get(
        ("total", key), lambda: repository.count_machines(snap, where)
    )
    facets = facets_html = None
    if not fragment:
        facets, counted_at = await cache.get(
            ("facets", key), lambda: repository.facets(snap, schema, where)
        )
        facet_context = {
            "filters": filters,
            "limit": limit,
            "facets": facets,
            "total": total,
            "counted_at": counted_at,
            "count_ttl": cache.ttl,
        }
        # Hundreds of links built from cached counts: rendered once per counting.
        facets_html = cached_partial(
            (filters, limit, total, counted_at, cache.ttl),
            "partials/machine_facets.html",
            facet_context,
        )
    context = {
        "filters": filters,
        "machines": page,
        "fetched": fetched,  # what the table shows, as a key (web.machine_table)
        "total": total,
        "limit": limit,
        "after": after,
        "next_after": page[-1].machine_id if has_next else None,
        "live": live,
        "every": every,
        "poll_choices": POLL_CHOICES,
        "facets": facets,
        "facets_html": facets_html,
        "counted_at": counted_at,
        "count_ttl": cache.ttl,
        "server_ms": f"{(time.perf_counter() - started) * 1000:.1f}",
    }
    template = "partials/machine_table.html" if fragment else "templates/machines.html"

    def data() -> MachineListJSON:
        active: dict[str, list[str]] = {}
        for name, value in filters.active():
            active.setdefault(name, []).append(value)
        return MachineListJSON(
            machines=[machine_json(m, schema) for m in page],
            total=total,
            limit=limit,
            after=after,
            next_after=context["next_after"],
            filters=active,
            facets=asdict(context["facets"]) if context["facets"] else None,
        )

    return render(request, template, context, snap=snap, data=data)
