"""Sessions (/sessions): components' liveness records, stale work up front.

Data: app/bmdb/sessions.py, one statement: the page of sessions, their total, the stale
work and, on a full page, the state tabs and the component facet. The table polls.
`?format=csv` streams every session of the filter (app/model/csv_export.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import Field, computed_field

from app.bmdb import sessions as bmdb
from app.deps import AppSettings, ListPoll, PageReader
from app.model import csv_export
from app.model.entities import Model, PageModel, Session, Timestamp, seconds_until
from app.model.polling import PAGE_SIZES, PollTag
from app.model.twin import twin
from app.render import urls
from app.render.templating import is_htmx, respond

router = APIRouter()

# Stale work items listed, the longest-expired first (the count is always exact); /work
# lists them all.
STALE_LIMIT = 20

class StaleWork(Model):
    """Work held by an expired session: nobody is doing it, and nobody else may."""

    machine_id: UUID
    process: str
    session_id: UUID
    component: str
    session_deadline: Timestamp

    @computed_field
    @property
    def machine_url(self) -> str:
        return urls.machine(self.machine_id)

    @computed_field
    @property
    def session_url(self) -> str:
        return urls.session(self.session_id)

    @computed_field
    @property
    def expired_seconds_ago(self) -> float | None:
        until = seconds_until(self.session_deadline, datetime.now(UTC))
        return None if until is None else -until


class StaleWorkSummary(Model):
    total: int
    items: list[StaleWork]

    @computed_field
    @property
    def truncated(self) -> bool:
        return self.total > len(self.items)


class ComponentCount(Model):
    component: str
    alive: int
    expired: int
    held_work: int
    stale_work: int


class SessionListPage(PageModel):
    sessions: list[Session]
    total: int
    limit: int
    after: UUID | None
    next_after: UUID | None
    view: bmdb.SessionFilters = Field(exclude=True)
    states: dict[str, int]  # alive / expired / all, under the component filter (full pages)
    components: list[ComponentCount] | None  # full pages only
    stale_work: StaleWorkSummary

    @computed_field
    @property
    def filters(self) -> dict[str, str]:
        active = {"state": self.view.state}
        if self.view.component is not None:
            active["component"] = self.view.component
        return active


@router.get(
    urls.SESSIONS,
    name="sessions",
    responses=twin(SessionListPage, "one page of sessions, with stale work"),
)
async def session_list(
    request: Request,
    reader: PageReader,
    settings: AppSettings,
    filters: Annotated[bmdb.SessionFilters, Query()],
    poll: ListPoll,
    after: Annotated[UUID | None, Query(description="keyset: session IDs after this one")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = urls.SESSIONS_LIMIT,
):
    if request.query_params.get("format") == "csv":
        return csv_export.sessions_csv(reader, filters, settings.csv_row_cap)
    fragment = is_htmx(request)
    tag = PollTag(poll, "sessions", filters, after, limit)
    md5, doc = await bmdb.session_list(
        reader, filters, after=after, limit=limit + 1, stale_limit=STALE_LIMIT,
        with_facets=not fragment,  # counted once per page view, never per poll
        known_ptag=tag.known,
    )  # fmt: skip
    if doc is None:
        return tag.unchanged()
    sessions = [Session.model_validate(s) for s in doc["sessions"]]
    page = SessionListPage(
        sessions=sessions[:limit], total=doc["total"], limit=limit, after=after,
        next_after=sessions[limit - 1].session_id if len(sessions) > limit else None,
        view=filters, states=doc["states"] or {}, components=doc["components"],
        stale_work=doc["stale"],
    )  # fmt: skip
    ptag = tag.of(md5)
    return respond(
        request, "partials/session_table.html" if fragment else "templates/sessions.html", page,
        reader=reader, headers={"HX-PTag": ptag}, poll=poll, ptag=ptag, page_sizes=PAGE_SIZES,
        csv_row_cap=settings.csv_row_cap,
    )  # fmt: skip
