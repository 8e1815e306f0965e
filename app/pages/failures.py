"""Failure signatures (/failures): failures grouped by what their causes say, each group
linking to the machine list of exactly its machines (`failure=<group id>`).

Data: app/bmdb/failures.py. The page reads two sources, each one statement, because they
are shared for different intervals: active backoffs like counts (at most once per
WEBUG_COUNT_CACHE_SECONDS), work-history failures like every fleet-wide history read (at
most once per WEBUG_HISTORY_CACHE_SECONDS, under their own budget; a read cut by its
budget leaves the backoff groups on the page, and says so). A page whose reads are
both shared costs no statement.

The machine list resolves `failure=` to the machine IDs of the group as it was last
computed, which is what the link that led there showed (app/model/failure_groups.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from app.bmdb import failures as bmdb
from app.bmdb.failures import FailureGroups, FailureId, window_text
from app.deps import Counts, HistoryCache, PageReader
from app.model.entities import Model, PageModel, Timestamp
from app.model.failure_groups import backoff_groups, history_groups
from app.model.twin import twin
from app.render import urls
from app.render.templating import respond

router = APIRouter()

WINDOW_CHOICES = ("1h", "6h", "24h", "7d", "30d")


class FailureGroup(Model):
    signature: str  # the cause with IDs, addresses, numbers and durations as placeholders
    id: str  # stable: source, window and a digest of the signature
    machines: int
    events: int  # failures (history) or active backoffs (backoff)
    processes: list[str]
    first_seen: Timestamp | None  # None: no backoff of the group records its interval
    last_seen: Timestamp | None
    example: str  # one cause of the group as recorded
    url: str  # the machine list of exactly these machines
    source: Literal["backoff", "history"]
    deleted_machines: int = 0  # history outlives machines: these the list cannot show


class SourceState(Model):
    """When a source's groups were read, and whether they could be."""

    computed_at: datetime | None  # None: never read (the budget was exceeded first)
    next_read_after: datetime | None  # an older answer than this is read again
    read_ms: float | None
    error: str | None  # e.g. the history read exceeded its budget
    events: int
    machines: int
    groups: int  # groups found; the page lists at most bmdb.MAX_GROUPS of them


class FailuresPage(PageModel):
    since: str  # the history window, canonical (24h, 7d, 90m...)
    window_seconds: int
    backoff: SourceState
    history: SourceState
    groups: list[FailureGroup]  # backoff groups first, then history; largest first


def _groups(
    found: FailureGroups, source: str, window: timedelta | None = None
) -> list[FailureGroup]:
    models = []
    for g in found.groups:
        group_id = str(FailureId(source, g.digest, window))
        models.append(FailureGroup(
            signature=g.signature, id=group_id, machines=g.machines, events=g.events,
            processes=g.processes, first_seen=g.first_seen, last_seen=g.last_seen,
            example=g.example, url=urls.machines(failure=group_id), source=source,
            deleted_machines=g.deleted,
        ))  # fmt: skip
    return models


def _state(found: FailureGroups | None, at: datetime | None, ttl: float, **read) -> SourceState:
    return SourceState(
        computed_at=at,
        next_read_after=at + timedelta(seconds=ttl) if at else None,
        events=found.events if found else 0,
        machines=found.machines if found else 0,
        groups=found.total_groups if found else 0,
        read_ms=read.get("ms"),
        error=read.get("error"),
    )


@router.get(
    urls.FAILURES,
    name="failures",
    responses=twin(FailuresPage, "failures grouped by signature, each linking to its machines"),
)
async def failures_page(
    request: Request,
    reader: PageReader,
    counts: Counts,
    reads: HistoryCache,
    since: Annotated[
        str, Query(max_length=16, description="history window: 30m, 6h, 24h, 7d... (1m to 30d)")
    ] = window_text(bmdb.DEFAULT_WINDOW),
):
    try:
        window = bmdb.parse_window(since)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    backoffs, backoffs_at = await backoff_groups(counts, reader)
    history = await history_groups(reads, reader, window)
    found = history.value if history.ok else None
    page = FailuresPage(
        since=window_text(window),
        window_seconds=int(window.total_seconds()),
        backoff=_state(backoffs, backoffs_at, counts.ttl),
        history=_state(
            found, history.computed_at, reads.ttl, ms=history.ms, error=history.error
        ),
        groups=_groups(backoffs, "backoff") + (_groups(found, "history", window) if found else []),
    )
    return respond(
        request, "templates/failures.html", page, reader=reader, choices=WINDOW_CHOICES,
        count_ttl=counts.ttl, history_ttl=reads.ttl, max_groups=bmdb.MAX_GROUPS,
    )  # fmt: skip
