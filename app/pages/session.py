"""One session (/session/{id}): its state, the work it holds, its machines' history.

Data: app/bmdb/sessions.py, one statement. The state and held work poll; an unchanged
session costs one small statement and answers 304.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import computed_field

from app.bmdb import sessions as bmdb
from app.deps import DetailPoll, PageReader
from app.model.entities import HistoryEvent, Model, PageModel, Session
from app.model.ids import parse_id
from app.model.polling import Poll, PollTag
from app.model.twin import twin
from app.render import urls
from app.render.templating import respond

router = APIRouter()

HISTORY_LIMIT = 100  # work_history rows shown on a session page



class HeldWork(Model):
    machine_id: UUID
    process: str
    stale: bool  # held by an expired session

    @computed_field
    @property
    def machine_url(self) -> str:
        return urls.machine(self.machine_id)


class SessionEvent(HistoryEvent):
    machine_id: UUID
    after_expiry: bool = False  # happened after the session's deadline


class SessionPage(PageModel):
    session: Session
    work: list[HeldWork]
    history: list[SessionEvent]  # held machines' history since the session was created
    history_limit: int
    history_truncated: bool


def _page(doc: dict, history: list | None) -> SessionPage:
    session = Session.model_validate(doc["session"])
    events = [SessionEvent.model_validate(e) for e in history or ()]
    return SessionPage(
        session=session,
        work=[HeldWork(**w, stale=not session.alive) for w in doc["work"]],
        history=[
            e.model_copy(
                update={"after_expiry": not session.alive and e.timestamp > session.deadline}
            )
            for e in events[:HISTORY_LIMIT]
        ],
        history_limit=HISTORY_LIMIT,
        history_truncated=len(events) > HISTORY_LIMIT,
    )


def not_found(session_id: UUID) -> HTTPException:
    return HTTPException(
        404,
        f"No session {session_id} in the BMDB. It may never have existed, or it expired and "
        "was garbage-collected (and the work it held with it).",
    )


def _live_tag(poll: Poll) -> PollTag:
    return PollTag(poll, "session")


@router.get(
    urls.SESSION,
    name="session",
    responses=twin(SessionPage, "one session, the work it holds and its machines' history"),
)
async def session_page(request: Request, session_id: str, reader: PageReader, poll: DetailPoll):
    parsed = parse_id(session_id, "session", "sessions.session_id")
    found = await bmdb.session(reader, parsed, history_limit=HISTORY_LIMIT + 1)
    if found.doc is None:
        raise not_found(parsed)
    ptag = _live_tag(poll).of(found.ptag)
    page = _page(found.doc, found.history)
    return respond(request, "templates/session.html", page, reader=reader, poll=poll, ptag=ptag)


@router.get(urls.SESSION_LIVE, name="session_live")
async def session_live(request: Request, session_id: str, reader: PageReader, poll: DetailPoll):
    """Alive/expired and the held work: the part of the session page that polls."""
    parsed = parse_id(session_id, "session", "sessions.session_id")
    tag = _live_tag(poll)
    found = await bmdb.session(reader, parsed, known_ptag=tag.known)
    if found.ptag is None:
        # Returned without its trigger, so the page stops polling and says why.
        return respond(request, "partials/session_gone.html", reader=reader, status_code=404,
                       session_id=parsed, noticed_at=datetime.now(UTC))  # fmt: skip
    ptag = tag.of(found.ptag)
    if found.doc is None:
        return Response(status_code=304, headers={"HX-PTag": ptag})
    return respond(request, "partials/session_live.html", _page(found.doc, None), reader=reader,
                   headers={"HX-PTag": ptag}, poll=poll, ptag=ptag)  # fmt: skip
