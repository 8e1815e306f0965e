"""Machine list (/) and machine detail (/machine/{id}); data from app.repository."""

from __future__ import annotations

import time
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request

from app import repository
from app.web import CurrentSchema, PageSnapshot, is_htmx, render

router = APIRouter()


@router.get("/", name="machines")
async def machine_list(
    request: Request,
    snap: PageSnapshot,
    schema: CurrentSchema,
    after: Annotated[UUID | None, Query(description="keyset: machine IDs after this one")] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="page size")] = 100,
):
    started = time.perf_counter()
    page = await repository.machine_ids_page(snap, after=after, limit=limit + 1)
    has_next = len(page) > limit
    page = page[:limit]
    await repository.fill_details(snap, schema, page)
    total = await repository.count_machines(snap)
    context = {
        "machines": page,
        "total": total,
        "limit": limit,
        "after": after,
        "next_after": page[-1].machine_id if has_next else None,
        "tag_names": [t.name for t in schema.tag_types],
        "server_ms": (time.perf_counter() - started) * 1000,
    }
    template = "partials/machine_table.html" if is_htmx(request) else "templates/machines.html"
    return render(request, template, context, snap=snap)


@router.get("/machine/{machine_id}", name="machine")
async def machine_detail(request: Request, machine_id: str, snap: PageSnapshot,
                         schema: CurrentSchema):
    try:
        parsed = UUID(machine_id)
    except ValueError:
        raise HTTPException(
            400,
            f"{machine_id!r} is not a machine ID: a machine ID is a UUID such as "
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301.",
        ) from None
    machine = await repository.machine_by_id(snap, parsed)
    if machine is None:
        raise HTTPException(404, f"No machine {parsed} in the BMDB.")
    await repository.fill_details(snap, schema, [machine])
    return render(request, "templates/machine.html", {"machine": machine}, snap=snap)
