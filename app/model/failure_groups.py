"""Failure groups as pages share them: each source read once per its interval, and the
machine list's `failure=` filter resolved to the machines of a group.

Backoff groups are shared like counts (at most once per WEBUG_COUNT_CACHE_SECONDS),
work-history groups like every fleet-wide history read (app/bmdb/history_reads.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from fastapi import HTTPException

from app.bmdb import failures as bmdb
from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache
from app.bmdb.failures import FailureGroups, FailureId, MachineIds, window_text
from app.bmdb.filters import MachineFilters
from app.bmdb.history_reads import HistoryRead, HistoryReads
from app.model.entities import Model
from app.render import urls

BACKOFF_KEY = ("failures", "backoff")


def history_key(window: timedelta) -> tuple:
    return ("failures", "history", int(window.total_seconds()))


async def backoff_groups(counts: CountCache, reader: Reader) -> tuple[FailureGroups, datetime]:
    return await counts.get(BACKOFF_KEY, lambda: bmdb.backoff_groups(reader))


async def history_groups(reads: HistoryReads, reader: Reader, window: timedelta) -> HistoryRead:
    return await reads.get(history_key(window), lambda: bmdb.history_groups(reader, window))


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
    counts: CountCache, reads: HistoryReads, reader: Reader, filters: MachineFilters
) -> ResolvedFailure | None:
    """The machine list's `failure=` filter resolved (None without one); a 400 for an ID
    whose window is out of bounds (its shape is checked with the other filters)."""
    if not filters.failure:
        return None
    try:
        failure = bmdb.parse_failure_id(filters.failure)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return await resolve_failure(counts, reads, reader, failure)


async def resolve_failure(
    counts: CountCache, reads: HistoryReads, reader: Reader, failure: FailureId
) -> ResolvedFailure:
    """The machine IDs of the group `failure` names, from its source's last read.

    Backoff groups are read like counts (again once they are older than the count
    interval). History groups come from the last successful read of their window,
    however old: the list shows what the link it came from showed, and a poll never
    starts a scan of work_history. A process that has no read of that window (restarted,
    another replica) reads it once, shared like any history read.
    """
    window_label = window_text(failure.window) if failure.window else None
    if failure.source == "backoff":
        found, at = await backoff_groups(counts, reader)
        error = None
    else:
        assert failure.window is not None
        read = reads.latest(history_key(failure.window)) or await history_groups(
            reads, reader, failure.window
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
