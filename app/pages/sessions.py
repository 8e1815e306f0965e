"""Sessions: the list (/sessions) with stale work up front, and one session (/session/{id}).

Data: app.bmdb.sessions. Both pages have JSON twins; the list's table and the
session's status+work part are live fragments (polling, paused with ?live=0).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel

from app.bmdb import sessions as repository
from app.bmdb.machines import fingerprint
from app.pages.json_models import QueryJSON, twin
from app.render.templating import PageSnapshot, is_htmx, render

router = APIRouter()

HISTORY_LIMIT = 100  # work_history rows shown on a session page
STALE_LIMIT = 200  # stale work items listed on /sessions (the count is always exact)
LIST_POLL_CHOICES = (2, 5, 10, 30)
LIVE_POLL_CHOICES = (1, 2, 5, 10)
EXAMPLE_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"

State = Literal["alive", "expired", "all"]
LiveQuery = Annotated[bool, Query(description="poll for changes")]


# JSON twins ------------------------------------------------------------------------------


class SessionJSON(BaseModel):
    session_id: UUID
    url: str
    component: str
    runtime_info: str
    created_at: datetime
    interval_seconds: int
    deadline: datetime
    alive: bool
    deadline_in_seconds: float  # negative: expired that long ago
    last_heartbeat_estimate: datetime  # deadline - interval: when the owner last renewed it
    held_work: int


class HeldWorkJSON(BaseModel):
    machine_id: UUID
    machine_url: str
    process: str
    stale: bool


class SessionEventJSON(BaseModel):
    machine_id: UUID
    process: str
    event: str
    timestamp: datetime
    failed_cause: str | None
    after_expiry: bool


class SessionDetailJSON(BaseModel):
    session: SessionJSON
    work: list[HeldWorkJSON]
    history: list[SessionEventJSON]  # held machines' history since the session was created
    history_limit: int
    history_truncated: bool
    queries: list[QueryJSON] = []


class StaleWorkJSON(BaseModel):
    machine_id: UUID
    machine_url: str
    process: str
    session_id: UUID
    session_url: str
    component: str
    session_deadline: datetime
    expired_seconds_ago: float


class StaleWorkSummaryJSON(BaseModel):
    total: int
    items: list[StaleWorkJSON]
    truncated: bool


class ComponentCountJSON(BaseModel):
    component: str
    alive: int
    expired: int
    held_work: int
    stale_work: int


class SessionListJSON(BaseModel):
    sessions: list[SessionJSON]
    total: int
    limit: int
    after: UUID | None
    next_after: UUID | None
    filters: dict[str, str]
    states: dict[str, int]  # alive / expired / all, under the component filter
    components: list[ComponentCountJSON] | None
    stale_work: StaleWorkSummaryJSON
    queries: list[QueryJSON] = []


def _seconds_until(ts: datetime, now: datetime) -> float:
    return round((ts - now).total_seconds(), 3)


def session_json(s: repository.Session, now: datetime) -> SessionJSON:
    return SessionJSON(
        session_id=s.session_id,
        url=f"/session/{s.session_id}",
        component=s.component,
        runtime_info=s.runtime_info,
        created_at=s.created_at,
        interval_seconds=s.interval_seconds,
        deadline=s.deadline,
        alive=s.alive,
        deadline_in_seconds=_seconds_until(s.deadline, now),
        last_heartbeat_estimate=s.last_heartbeat,
        held_work=s.held_work,
    )


def stale_json(summary: repository.StaleWorkSummary, now: datetime) -> StaleWorkSummaryJSON:
    return StaleWorkSummaryJSON(
        total=summary.total,
        truncated=summary.truncated,
        items=[
            StaleWorkJSON(
                machine_id=w.machine_id,
                machine_url=f"/machine/{w.machine_id}",
                process=w.process,
                session_id=w.session_id,
                session_url=f"/session/{w.session_id}",
                component=w.component,
                session_deadline=w.deadline,
                expired_seconds_ago=-_seconds_until(w.deadline, now),
            )
            for w in summary.items
        ],
    )


# /sessions -------------------------------------------------------------------------------


def list_query(
    *,
    component: str | None,
    state: str,
    after: UUID | None = None,
    limit: int = 100,
    live: bool = True,
    every: int = 5,
) -> str:
    """The query string of a /sessions view; defaults are left out so URLs stay short."""
    pairs: list[tuple[str, str]] = []
    if component is not None:
        pairs.append(("component", component))
    if state != "all":
        pairs.append(("state", state))
    if after is not None:
        pairs.append(("after", str(after)))
    if limit != 100:
        pairs.append(("limit", str(limit)))
    if not live:
        pairs.append(("live", "0"))
    if every != 5:
        pairs.append(("every", str(every)))
    return urlencode(pairs)


@router.get(
    "/sessions",
    name="sessions",
    responses=twin(SessionListJSON, "one page of sessions, with stale work"),
)
async def session_list(
    request: Request,
    snap: PageSnapshot,
    component: Annotated[
        str | None, Query(max_length=200, description="session_component_name")
    ] = None,
    state: Annotated[State, Query(description="alive, expired or all")] = "all",
    after: Annotated[UUID | None, Query(description="keyset: session IDs after this one")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    live: LiveQuery = True,
    every: Annotated[int, Query(ge=1, le=300, description="poll interval, seconds")] = 5,
):
    started = time.perf_counter()
    filters = repository.SessionFilters(component=component or None, state=state)
    page = await repository.session_page(snap, filters, after=after, limit=limit + 1)
    has_next = len(page) > limit
    page = page[:limit]
    total = await repository.count_sessions(snap, filters)
    stale = await repository.stale_work(snap, component=filters.component, limit=STALE_LIMIT)
    fragment = is_htmx(request)
    # Facets are counted once per page view, never per poll.
    states = None if fragment else await repository.state_counts(snap, filters)
    components = None if fragment else await repository.component_counts(snap)
    now = datetime.now(UTC)

    def url(**changes: object) -> str:
        """This view's URL with some parameters changed (the links and the poll)."""
        args = {
            "component": filters.component,
            "state": state,
            "after": after,
            "limit": limit,
            "live": live,
            "every": every,
        }
        args.update(changes)
        query = list_query(**args)
        return f"/sessions?{query}" if query else "/sessions"

    context = {
        "filters": filters,
        "sessions": page,
        "total": total,
        "limit": limit,
        "after": after,
        "next_after": page[-1].session_id if has_next else None,
        "stale": stale,
        "states": states,
        "components": components,
        "live": live,
        "every": every,
        "poll_choices": LIST_POLL_CHOICES,
        "url": url,
        "now": now,
        "server_ms": (time.perf_counter() - started) * 1000,
    }
    template = "partials/session_table.html" if fragment else "templates/sessions.html"

    def data() -> SessionListJSON:
        active = {"state": state}
        if filters.component is not None:
            active["component"] = filters.component
        return SessionListJSON(
            sessions=[session_json(s, now) for s in page],
            total=total,
            limit=limit,
            after=after,
            next_after=context["next_after"],
            filters=active,
            states=states or {},
            components=[
                ComponentCountJSON(
                    component=c.component,
                    alive=c.alive,
                    expired=c.expired,
                    held_work=c.held_work,
                    stale_work=c.stale_work,
                )
                for c in components
            ]
            if components is not None
            else None,
            stale_work=stale_json(stale, now),
        )

    return render(request, template, context, snap=snap, data=data)


# /session/{id} ---------------------------------------------------------------------------


def parse_session_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise HTTPException(
            400,
            f"{text[:100]!r} is not a session ID: a session ID is a UUID such as "
            f"{EXAMPLE_ID} (the sessions table's session_id).",
        ) from None


def not_found(session_id: UUID) -> HTTPException:
    return HTTPException(
        404,
        f"No session {session_id} in the BMDB. It may never have existed, or it expired and "
        "was garbage-collected (and the work it held with it).",
    )


def live_ptag(
    session: repository.Session, work: list[repository.HeldWork], live: bool, every: int
) -> str:
    """The live fragment's poll tag: unchanged data -> 304 without a body.

    Relative times tick in the browser, so the body depends on the data alone.
    """
    return fingerprint((session.fingerprint, work, live, every))


EveryQuery = Annotated[int, Query(ge=1, le=300, description="poll interval, seconds")]


async def _session_and_work(snap, parsed: UUID):
    session = await repository.session_by_id(snap, parsed)
    if session is None:
        return None, []
    work = await repository.held_work(snap, parsed)
    session.held_work = len(work)
    return session, work


@router.get(
    "/session/{session_id}",
    name="session",
    responses=twin(SessionDetailJSON, "one session, the work it holds and its machines' history"),
)
async def session_page(
    request: Request,
    session_id: str,
    snap: PageSnapshot,
    live: LiveQuery = True,
    every: EveryQuery = 2,
):
    parsed = parse_session_id(session_id)
    session, work = await _session_and_work(snap, parsed)
    if session is None:
        raise not_found(parsed)
    history = await repository.history_since(
        snap, sorted({w.machine_id for w in work}), session.created_at, HISTORY_LIMIT + 1
    )
    truncated = len(history) > HISTORY_LIMIT
    history = history[:HISTORY_LIMIT]
    now = datetime.now(UTC)
    context = {
        "session": session,
        "work": work,
        "history": history,
        "history_limit": HISTORY_LIMIT,
        "history_truncated": truncated,
        "live": live,
        "every": every,
        "poll_choices": LIVE_POLL_CHOICES,
        "ptag": live_ptag(session, work, live, every),
    }
    return render(
        request,
        "templates/session.html",
        context,
        snap=snap,
        data=lambda: SessionDetailJSON(
            session=session_json(session, now),
            work=[
                HeldWorkJSON(
                    machine_id=w.machine_id,
                    machine_url=f"/machine/{w.machine_id}",
                    process=w.process,
                    stale=not session.alive,
                )
                for w in work
            ],
            history=[
                SessionEventJSON(
                    machine_id=e.machine_id,
                    process=e.process,
                    event=e.event,
                    timestamp=e.timestamp,
                    failed_cause=e.failed_cause,
                    after_expiry=not session.alive and e.timestamp > session.deadline,
                )
                for e in history
            ],
            history_limit=HISTORY_LIMIT,
            history_truncated=truncated,
        ),
    )


@router.get("/session/{session_id}/live", name="session_live")
async def session_live(
    request: Request,
    session_id: str,
    snap: PageSnapshot,
    live: LiveQuery = True,
    every: EveryQuery = 2,
):
    """Alive/expired and the held work: the part of the session page that polls."""
    parsed = parse_session_id(session_id)
    session, work = await _session_and_work(snap, parsed)
    if session is None:
        # Returned without its trigger, so the page stops polling and says why.
        return render(
            request, "partials/session_gone.html", {"session_id": parsed}, status_code=404
        )
    ptag = live_ptag(session, work, live, every)
    if request.headers.get("HX-PTag") == ptag:
        return Response(status_code=304, headers={"HX-PTag": ptag})
    context = {
        "session": session,
        "work": work,
        "live": live,
        "every": every,
        "poll_choices": LIVE_POLL_CHOICES,
        "ptag": ptag,
    }
    return render(
        request, "partials/session_live.html", context, snap=snap, headers={"HX-PTag": ptag}
    )
