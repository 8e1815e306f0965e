"""Failure signatures (/failures): failures grouped by what their causes say, each group
linking to the machine list of exactly its machines (`failure=<group id>`).

Data: app/bmdb/failures.py. The page reads two sources, each one statement, because they
are shared for different intervals: active backoffs like counts (at most once per
WEBUG_COUNT_CACHE_SECONDS), work-history failures like every fleet-wide history read (at
most once per WEBUG_HISTORY_CACHE_SECONDS, under their own budget; a read cut by its
budget leaves the backoff groups on the page, and says so). A page whose reads are
both shared costs no statement.

The machine list resolves `failure=` here (`resolve_failure`): to the machine IDs of the
group as it was last computed, which is what the link that led there showed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from app.bmdb import failures as bmdb
from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache
from app.bmdb.failures import FailureGroups, FailureId, MachineIds, window_text
from app.bmdb.filters import MachineFilters
from app.bmdb.history_reads import HistoryRead, HistoryReads
from app.pages.json_models import twin
from app.pages.models import Model, PageModel, Timestamp
from app.render import urls
from app.render.templating import PageReader, respond

router = APIRouter()

WINDOW_CHOICES = ("1h", "6h", "24h", "7d", "30d")
BACKOFF_KEY = ("failures", "backoff")


def history_key(window: timedelta) -> tuple:
    return ("failures", "history", int(window.total_seconds()))


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


async def backoff_groups(request: Request, reader: Reader) -> tuple[FailureGroups, datetime]:
    counts: CountCache = request.app.state.count_cache
    return await counts.get(BACKOFF_KEY, lambda: bmdb.backoff_groups(reader))


async def history_groups(request: Request, reader: Reader, window: timedelta) -> HistoryRead:
    reads: HistoryReads = request.app.state.history_reads
    return await reads.get(history_key(window), lambda: bmdb.history_groups(reader, window))


@router.get(
    urls.FAILURES,
    name="failures",
    responses=twin(FailuresPage, "failures grouped by signature, each linking to its machines"),
)
async def failures_page(
    request: Request,
    reader: PageReader,
    since: Annotated[
        str, Query(max_length=16, description="history window: 30m, 6h, 24h, 7d... (1m to 30d)")
    ] = window_text(bmdb.DEFAULT_WINDOW),
):
    try:
        window = bmdb.parse_window(since)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    backoffs, backoffs_at = await backoff_groups(request, reader)
    history = await history_groups(request, reader, window)
    counts: CountCache = request.app.state.count_cache
    reads: HistoryReads = request.app.state.history_reads
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


# --- the machine list's failure= filter -------------------------------------------------


class FailureFilter(Model):
    """What the list's `failure=` filter stands for."""

    id: str
    source: Literal["backoff", "history"]
    window: str | None  # history: the window of the group
    signature: str | None  # None: no such group in the read it was resolved from
    computed_at: datetime | None  # the read the list's machine IDs come from
    error: str | None  # the read could not be done (budget); the list is then empty
    failures_url: str


@dataclass(frozen=True)
class ResolvedFailure:
    machine_ids: MachineIds
    info: FailureFilter


async def list_failure(
    request: Request, reader: Reader, filters: MachineFilters
) -> ResolvedFailure | None:
    """The machine list's `failure=` filter resolved (None without one); a 400 for an ID
    whose window is out of bounds (its shape is checked with the other filters)."""
    if not filters.failure:
        return None
    try:
        failure = bmdb.parse_failure_id(filters.failure)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return await resolve_failure(request, reader, failure)


async def resolve_failure(request: Request, reader: Reader, failure: FailureId) -> ResolvedFailure:
    """The machine IDs of the group `failure` names, from its source's last read.

    Backoff groups are read like counts (again once they are older than the count
    interval). History groups come from the last successful read of their window,
    however old: the list shows what the link it came from showed, and a poll never
    starts a scan of work_history. A process that has no read of that window (restarted,
    another replica) reads it once, shared like any history read.
    """
    window_label = window_text(failure.window) if failure.window else None
    if failure.source == "backoff":
        found, at = await backoff_groups(request, reader)
        error = None
    else:
        assert failure.window is not None
        reads: HistoryReads = request.app.state.history_reads
        read = reads.latest(history_key(failure.window)) or await history_groups(
            request, reader, failure.window
        )
        found, at, error = read.value, read.computed_at, read.error
    group = found.group(failure.digest) if found else None
    info = FailureFilter(
        id=str(failure),
        source=failure.source,  # type: ignore[arg-type]
        window=window_label,
        signature=group.signature if group else None,
        computed_at=at,
        error=error,
        failures_url=urls.failures(
            window_label if failure.window not in (None, bmdb.DEFAULT_WINDOW) else None
        ),
    )
    return ResolvedFailure(group.machine_ids if group else MachineIds(), info)
