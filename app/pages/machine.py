"""One machine (/machine/{id}): its live part, its history, a tag value's download, and
the provider hot link.

Data: app/bmdb/machines.py, one statement per page or fragment. The live fragment hands
the BMDB the md5 of the document the browser shows; an unchanged machine costs one small
statement and answers 304 without rendering anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated
from urllib.parse import quote, urlsplit
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from app.bmdb import machines as bmdb
from app.bmdb.connection import Reader
from app.bmdb.filters import check_labels
from app.bmdb.machines import MachineLayout
from app.bmdb.reflection import NotInSchema, Schema
from app.bmdb.workflows import Fleet
from app.config import Settings
from app.deps import AppSettings, CurrentSchema, DetailPoll, PageReader, Workflows
from app.model.entities import ErrorPage, Machine, PageModel, WorkflowStatus, machine_from
from app.model.ids import parse_id
from app.model.machine_history import ZOOM_CHOICES, HistoryPage, Zoom, read_history
from app.model.polling import Poll, PollTag
from app.model.search import machine_prefix, search_response
from app.model.twin import twin
from app.model.workflow_status import statuses
from app.render import urls
from app.render.templating import is_htmx, respond

router = APIRouter()

HISTORY_PAGE = 50
WINDOW_HELP = (
    "the timeline's window: 1h, 6h, 24h, 7d or all; by default the last 24 hours, or"
    " since the last success when longer, up to 7 days"
)


class MachinePage(PageModel):
    machine: Machine
    console_url: str | None
    workflows: list[WorkflowStatus]  # would a component pick it up, and what stops it
    # Its last heartbeat within 10 minutes (by the BMDB's clock); None: no heartbeat tag
    # in this BMDB, or none of this machine.
    heartbeat_recent: bool | None = None


def machine_page_model(
    doc: dict, layout: MachineLayout, fleet: Fleet, console: Callable[[Machine], str | None]
) -> MachinePage:
    """The page of a machine's document; `console`: its provider console link, if any."""
    machine = machine_from(doc, layout)
    at, recent = doc["heartbeat"] or (None, None)
    return MachinePage(
        machine=machine, console_url=console(machine),
        workflows=statuses(fleet, doc["workflow_conditions"], machine),
        heartbeat_recent=recent if at is not None else None,
    )  # fmt: skip


class MissingMachinePage(PageModel):
    """No such machine (any more); its work history outlives it."""

    machine_id: UUID
    history_by_process: dict[str, int]


def console_url(settings: Settings, machine: Machine) -> str | None:
    provided = machine.tags.get("Provided")
    if not provided:
        return None
    template = settings.provider_console_urls.get(str(provided["provider"]))
    if not template:
        return None
    return template.format(provider_id=quote(str(provided["provider_id"]), safe=""))


def _live_tag(poll: Poll, schema: Schema) -> PollTag:
    return PollTag(poll, "machine", schema.layout_key)


@router.get(
    urls.MACHINE,
    name="machine",
    responses=twin(MachinePage, "one machine with tags, work and backoffs"),
)
async def machine_page(
    request: Request, machine_id: str, reader: PageReader, schema: CurrentSchema,
    fleet: Workflows, settings: AppSettings, poll: DetailPoll,
    window: Annotated[Zoom | None, Query(description=WINDOW_HELP)] = None,
):  # fmt: skip
    try:
        parsed = UUID(machine_id)
    except ValueError:
        return await _prefix(request, reader, schema, machine_id)
    layout = MachineLayout.full(schema)
    doc = await bmdb.machine(reader, layout, parsed, fleet=fleet)
    if doc.machine is None:
        missing = MissingMachinePage(machine_id=parsed, history_by_process=doc.history_by_process)
        return respond(
            request, "templates/machine_missing.html", missing, reader=reader, status_code=404
        )
    page = machine_page_model(doc.machine, layout, fleet, partial(console_url, settings))
    ptag = _live_tag(poll, schema).of(doc.ptag)
    return respond(
        request, "templates/machine.html", page, reader=reader, poll=poll, ptag=ptag, window=window
    )


async def _prefix(request: Request, reader: Reader, schema: Schema, text: str) -> Response:
    """/machine/<prefix>, as pasted from chat: 303 to the one machine it names (query
    kept), else the search page listing them (a 404 for none)."""
    page = await machine_prefix(reader, schema, text)
    if len(page.matches) == 1:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{page.matches[0].url}{query}", status_code=303)
    return search_response(request, reader, page)


@router.get(urls.MACHINE_LIVE, name="machine_live")
async def machine_live(
    request: Request, machine_id: str, reader: PageReader, schema: CurrentSchema,
    fleet: Workflows, poll: DetailPoll,
):  # fmt: skip
    """Work, backoffs and tags: the part of the page that polls."""
    parsed = parse_id(machine_id, "machine", "machines.machine_id")
    layout = MachineLayout.full(schema)
    tag = _live_tag(poll, schema)
    doc = await bmdb.machine(reader, layout, parsed, known_ptag=tag.known, fleet=fleet)
    if doc.ptag is None:
        # Returned without its trigger, so the page stops polling and says why.
        return respond(
            request, "partials/machine_gone.html", reader=reader, status_code=404,
            machine_id=parsed, noticed_at=datetime.now(UTC),
        )  # fmt: skip
    ptag = tag.of(doc.ptag)
    if doc.machine is None:
        return Response(status_code=304, headers={"HX-PTag": ptag})
    page = machine_page_model(doc.machine, layout, fleet, lambda _: None)
    return respond(
        request, "partials/machine_live.html", page, reader=reader, headers={"HX-PTag": ptag},
        poll=poll, ptag=ptag,
    )  # fmt: skip


@router.get(
    urls.MACHINE_HISTORY,
    name="machine_history",
    responses=twin(HistoryPage, "a machine's work history, newest first, and its timeline"),
)
async def machine_history(
    request: Request,
    machine_id: str,
    reader: PageReader,
    schema: CurrentSchema,
    poll: DetailPoll,
    process: Annotated[str | None, Query(max_length=100)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = HISTORY_PAGE,
    window: Annotated[Zoom | None, Query(description=WINDOW_HELP)] = None,
):
    """Newest first, filterable by process; a full page too (history outlives machines).
    The first page polls (an unchanged one answers 304) and draws the timeline."""
    parsed = parse_id(machine_id, "machine", "machines.machine_id")
    check_labels("process", [process] if process else [], schema.processes)
    found = await read_history(
        reader, parsed, process=process or None, offset=offset, limit=limit, zoom=window,
        poll=poll, now=datetime.now(UTC),
    )  # fmt: skip
    if found.page is None:
        return Response(status_code=304, headers={"HX-PTag": found.ptag})
    fragment = is_htmx(request)
    return respond(
        request, "partials/machine_history.html" if fragment else "templates/history.html",
        found.page, reader=reader, headers={"HX-PTag": found.ptag}, timeline=found.timeline,
        poll=poll, ptag=found.ptag, zooms=ZOOM_CHOICES, zoom=window,
        on_history_page=not fragment or _from_history_page(request),
    )  # fmt: skip


def _from_history_page(request: Request) -> bool:
    """Whether a fragment is for the history page (its polls), not the machine page."""
    return urlsplit(request.headers.get("HX-Current-URL", "")).path.endswith("/history")


@router.get(urls.MACHINE_TAG_VALUE, name="machine_tag_value")
async def tag_value(
    machine_id: str, tag: str, field: str, reader: PageReader, schema: CurrentSchema
) -> Response:
    """The whole value of one tag field, as a file (pages show blobs' first bytes only)."""
    parsed = parse_id(machine_id, "machine", "machines.machine_id")
    tag_type = schema.tag(tag)
    column = tag_type.field(field) if tag_type is not None else None
    if tag_type is None or column is None:
        raise NotInSchema(f"No tag field {tag[:100]}.{field[:100]} in this BMDB.", status=404)
    found, value = await bmdb.tag_value(reader, tag_type, column, parsed)
    if not found:
        raise HTTPException(404, f"Machine {parsed} has no {tag_type.name} tag.")
    if value is None:
        raise HTTPException(404, f"{tag_type.name}.{column.name} of {parsed} is NULL.")
    data = value if isinstance(value, bytes) else str(value).encode()
    suffix = "bin" if isinstance(value, bytes) else "txt"
    filename = f"{parsed}-{tag_type.name}-{column.name}.{suffix}"
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", filename)  # names come from reflection
    disposition = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename)}"
    return Response(
        data, media_type="application/octet-stream", headers={"Content-Disposition": disposition}
    )


@router.get(urls.PROVIDER, name="provider")
async def provider_redirect(request: Request, provider: str, provider_id: str, reader: PageReader):
    """Hot link by provider ID (as alerts and provider consoles name machines); the
    provider in any letter case. None: a 404 that offers the search for the ID."""
    machine_id = await bmdb.machine_by_provider(reader, provider[:200], provider_id[:200])
    if machine_id is None:
        missing = ErrorPage(
            status=404,
            error="Not found",
            detail=f"No machine with provider {provider[:200]!r} ID {provider_id[:200]!r}"
            " in the BMDB.",
            search=provider_id[:200],
        )
        return respond(request, "templates/error.html", missing, reader=reader, status_code=404)
    return RedirectResponse(urls.machine(machine_id), status_code=303)
