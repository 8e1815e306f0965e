"""Machine detail (/machine/{id}), its live and history fragments, provider hot links.

Data: app.repository (machine, tags, work with sessions, backoffs, history).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from app.bmdb import machines as repository
from app.bmdb.reflection import Schema
from app.pages.json_models import (
    HistoryEventJSON,
    MachineJSON,
    QueryJSON,
    history_json,
    machine_json,
    twin,
)
from app.pages.search import render_matches, resolve_machine_prefix
from app.render.templating import CurrentSchema, PageSnapshot, is_htmx, render
from app.render.timeline import build_timeline

router = APIRouter()

HISTORY_PAGE = 50
TIMELINE_EVENTS = 1000


def parse_machine_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise HTTPException(
            400,
            f"{text[:100]!r} is not a machine ID: a machine ID is a UUID such as "
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301.",
        ) from None


def console_url(request: Request, machine: repository.Machine) -> str | None:
    provided = machine.tags.get("Provided")
    if not provided:
        return None
    template = request.app.state.settings.provider_console_urls.get(str(provided["provider"]))
    if not template:
        return None
    # One path segment, whatever the ID holds: a `/`, `?` or `#` must not pick the page.
    return template.format(provider_id=quote(str(provided["provider_id"]), safe=""))


def live_ptag(machine: repository.Machine, live: bool, every: int, schema: Schema) -> str:
    """The poll tag of the live fragment: its data's fingerprint. Unchanged -> 304, no body.

    Relative times are kept current in the browser, so the body depends on data alone.
    """
    return repository.fingerprint((machine.fingerprint, live, every, schema.version))


class MachineDetailJSON(BaseModel):
    machine: MachineJSON
    console_url: str | None
    queries: list[QueryJSON] = []


class HistoryJSON(BaseModel):
    machine_id: UUID
    machine_exists: bool
    events: list[HistoryEventJSON]
    events_by_process: dict[str, int]
    offset: int
    limit: int
    has_more: bool
    queries: list[QueryJSON] = []


LiveQuery = Annotated[bool, Query(description="poll for changes")]
EveryQuery = Annotated[int, Query(ge=1, le=300, description="poll interval, seconds")]


@router.get(
    "/machine/{machine_id}",
    name="machine",
    responses=twin(MachineDetailJSON, "one machine with tags, work and backoffs"),
)
async def machine_page(
    request: Request,
    machine_id: str,
    snap: PageSnapshot,
    schema: CurrentSchema,
    live: LiveQuery = True,
    every: EveryQuery = 2,
):
    try:
        parsed = UUID(machine_id)
    except ValueError:
        # Not a full UUID: a machine ID prefix (>= 4 hex digits, dashes optional), as pasted
        # from chat. A unique one redirects to the canonical URL; several are listed.
        found = await resolve_machine_prefix(snap, machine_id)
        if isinstance(found, UUID):
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/machine/{found}{query}", status_code=303)
        return await render_matches(request, snap, machine_id, found)
    machine = await repository.machine_by_id(snap, parsed)
    if machine is None:
        history = await repository.history_summary(snap, parsed)
        return render(
            request,
            "templates/machine_missing.html",
            {"machine_id": parsed, "history": history},
            snap=snap,
            status_code=404,
        )
    await repository.fill_details(snap, schema, [machine])
    context = {
        "machine": machine,
        "console_url": console_url(request, machine),
        "live": live,
        "every": every,
        "now": datetime.now(UTC),
        "ptag": live_ptag(machine, live, every, schema),
    }
    return render(
        request,
        "templates/machine.html",
        context,
        snap=snap,
        data=lambda: MachineDetailJSON(
            machine=machine_json(machine, schema), console_url=context["console_url"]
        ),
    )


@router.get("/machine/{machine_id}/live", name="machine_live")
async def machine_live(
    request: Request,
    machine_id: str,
    snap: PageSnapshot,
    schema: CurrentSchema,
    live: LiveQuery = True,
    every: EveryQuery = 2,
):
    """Work, backoffs and tags: the part of the page that polls."""
    parsed = parse_machine_id(machine_id)
    machine = await repository.machine_by_id(snap, parsed)
    if machine is None:
        # Returned without its trigger, so the page stops polling and says why.
        return render(
            request, "partials/machine_gone.html", {"machine_id": parsed}, status_code=404
        )
    await repository.fill_details(snap, schema, [machine])
    ptag = live_ptag(machine, live, every, schema)
    if request.headers.get("HX-PTag") == ptag:
        return Response(status_code=304, headers={"HX-PTag": ptag})
    context = {
        "machine": machine,
        "live": live,
        "every": every,
        "now": datetime.now(UTC),
        "ptag": ptag,
    }
    return render(
        request, "partials/machine_live.html", context, snap=snap, headers={"HX-PTag": ptag}
    )


@router.get(
    "/machine/{machine_id}/history",
    name="machine_history",
    responses=twin(HistoryJSON, "a machine's work history, newest first"),
)
async def machine_history(
    request: Request,
    machine_id: str,
    snap: PageSnapshot,
    process: Annotated[str | None, Query(max_length=100)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = HISTORY_PAGE,
):
    """Newest first, filterable by process; a full page too (history outlives machines)."""
    parsed = parse_machine_id(machine_id)
    events = await repository.history_page(
        snap, parsed, process=process or None, offset=offset, limit=limit + 1
    )
    summary = await repository.history_summary(snap, parsed)
    machine = await repository.machine_by_id(snap, parsed)
    timeline = None
    if offset == 0:
        work, backoffs = [], []
        if machine is not None:
            work = await repository.work_for(snap, [parsed])
            backoffs = await repository.backoffs_for(snap, [parsed])
        recent = await repository.recent_history(snap, parsed, TIMELINE_EVENTS)
        timeline = build_timeline(recent, work, backoffs, datetime.now(UTC))
    context = {
        "machine_id": parsed,
        "machine_exists": machine is not None,
        "events": events[:limit],
        "has_more": len(events) > limit,
        "summary": summary,
        "process": process or None,
        "offset": offset,
        "limit": limit,
        "timeline": timeline,
    }
    template = "partials/machine_history.html" if is_htmx(request) else "templates/history.html"
    return render(
        request,
        template,
        context,
        snap=snap,
        data=lambda: HistoryJSON(
            machine_id=parsed,
            machine_exists=machine is not None,
            events=[history_json(e) for e in context["events"]],
            events_by_process=summary,
            offset=offset,
            limit=limit,
            has_more=context["has_more"],
        ),
    )


@router.get("/provider/{provider}/{provider_id}", name="provider")
async def provider_redirect(provider: str, provider_id: str, snap: PageSnapshot):
    """Hot link by provider ID (as alerts and provider consoles name machines)."""
    machine_id = await repository.machine_by_provider(snap, provider[:200], provider_id[:200])
    if machine_id is None:
        raise HTTPException(
            404,
            f"No machine with provider {provider[:200]!r} ID {provider_id[:200]!r} in the BMDB.",
        )
    return RedirectResponse(f"/machine/{machine_id}", status_code=303)
