"""A machine's work history as its page and its machine page's section show it: a page
of events (newest first), and a timeline over a window of time.

The window is a zoom (1h, 6h, 24h, 7d or all) or, by default, the last 24 hours, or
since the machine's last success when that is longer, up to 7 days. Its end is "now"
(or the end of a backoff, up to a quarter of the span ahead) rounded up to its tick
step, so the page drawn from unchanged data is the same within a step (the browser
draws "now" itself, app/static/timeline.js); the poll tag names the 10-minute slot of
the clock (the smallest step), so a poll redraws when the window moves.

Data: app/bmdb/machines.py's `history`, one statement, whose version (a count, the
newest time, work and backoffs) lets an unchanged poll answer 304 without reading the
events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args
from uuid import UUID

from app.bmdb import machines as bmdb
from app.bmdb.columns import parse_timestamp
from app.bmdb.connection import Reader
from app.model.entities import Backoff, HistoryEvent, Model, PageModel, Timestamp, Work
from app.model.polling import Poll, PollTag
from app.render.timeline import STEPS, Timeline, build_timeline, floor_to, nice_step

Zoom = Literal["1h", "6h", "24h", "7d", "all"]
ZOOM_CHOICES: tuple[str, ...] = get_args(Zoom)  # as the zoom links offer them
ZOOMS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
DEFAULT_SPAN, LONGEST_DEFAULT = timedelta(hours=24), timedelta(days=7)
FIRST, LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
SLOT = STEPS[0]  # how often a window's end can move
TIMELINE_EVENTS = 1000  # the newest events a timeline draws at most
# Events read before a window's start, so work that began before it is drawn from its
# edge (it ends inside).
LEAD = timedelta(days=1)


class TimelineWindow(Model):
    zoom: Zoom | None  # None: the default window
    start: Timestamp
    end: Timestamp
    events: int  # events read for it
    truncated: bool  # only the newest TIMELINE_EVENTS of them


class HistoryPage(PageModel):
    machine_id: UUID
    machine_exists: bool
    events: list[HistoryEvent]  # newest first
    events_by_process: dict[str, int]
    process: str | None
    offset: int
    limit: int
    has_more: bool
    window: TimelineWindow | None  # the timeline's (on the first page only)


@dataclass(frozen=True)
class HistoryRead:
    ptag: str
    page: HistoryPage | None  # None: unchanged since the poll tag the browser holds
    timeline: Timeline | None


def _instant(ts: object) -> bool:
    return isinstance(ts, datetime) and ts.tzinfo is not None


def _or(bound: datetime, rounded: Callable[[datetime, timedelta], datetime], *args) -> datetime:
    """A time rounded to a tick, or Python's first or last time where that is past them
    (events in year 1 or 9999 are drawn at the axis' ends)."""
    try:
        return rounded(*args)
    except OverflowError:
        return bound


def window_end(now: datetime, step: timedelta) -> datetime:
    """The first multiple of `step` after `now`: the same for every `now` of its slot."""
    return floor_to(now, step) + step


def default_span(now: datetime, last_success: datetime | None) -> timedelta:
    """24 hours, or since the last success (with a margin) when longer, up to 7 days."""
    if last_success is None:
        return DEFAULT_SPAN
    return min(max(DEFAULT_SPAN, (now - last_success) * 1.05), LONGEST_DEFAULT)


def choose_window(
    zoom: Zoom | None, now: datetime, last_success: datetime | None, events: list[HistoryEvent],
    backoffs: list[Backoff],
) -> tuple[datetime, datetime, timedelta]:  # fmt: skip
    """(start, end, tick step) of the timeline."""
    if zoom == "all":  # everything read, and the last hour
        times = [e.timestamp for e in events] + [t for b in backoffs for t in (b.started, b.until)]
        times = [t for t in times if _instant(t)] + [now - timedelta(hours=1), now]
        earliest, latest = min(times), max(times)
        step = nice_step(latest - earliest)
        return _or(FIRST, floor_to, earliest, step), _or(LAST, window_end, latest, step), step
    span = ZOOMS[zoom] if zoom is not None else default_span(now, last_success)
    step = nice_step(span)
    # Backoffs that end later are drawn to their end, up to a quarter of the span ahead
    # (whole steps, so the end moves only when "now" passes a tick).
    ahead = step * max(1, round(span / 4 / step))
    ends = [b.until for b in backoffs if _instant(b.until) and b.until > now]
    end = window_end(min(max([now, *ends]), now + ahead), step)
    return floor_to(end - span, step), end, step


async def read_history(
    reader: Reader, machine_id: UUID, *, process: str | None, offset: int, limit: int,
    zoom: Zoom | None, poll: Poll, now: datetime,
) -> HistoryRead:  # fmt: skip
    """A page of the history (the timeline with the first page): None when the browser's
    copy is still true."""
    tag = PollTag(poll, "history", floor_to(now, SLOT), process, offset, limit, zoom)
    with_timeline = offset == 0
    since = None if zoom == "all" else window_end(now, SLOT) - LONGEST_DEFAULT - LEAD
    doc = await bmdb.history(
        reader, machine_id, process=process, offset=offset, limit=limit + 1,
        timeline_events=TIMELINE_EVENTS if with_timeline else None, since=since,
        known_ptag=tag.known,
    )  # fmt: skip
    ptag = tag.of(doc.ptag)
    if doc.doc is None:
        return HistoryRead(ptag, None, None)
    events = [HistoryEvent.model_validate(e) for e in doc.doc["events"]]
    timeline = window = None
    if doc.doc["timeline"] is not None:
        timeline, window = _timeline(doc.doc["timeline"], zoom, now)
    page = HistoryPage(
        machine_id=machine_id, machine_exists=doc.doc["exists"], events=events[:limit],
        events_by_process=dict(doc.doc["by_process"]), process=process, offset=offset,
        limit=limit, has_more=len(events) > limit, window=window,
    )  # fmt: skip
    return HistoryRead(ptag, page, timeline)


def _timeline(
    doc: dict, zoom: Zoom | None, now: datetime
) -> tuple[Timeline | None, TimelineWindow]:
    events = [HistoryEvent.model_validate(e) for e in doc["events"]]
    work = [Work.model_validate(w) for w in doc["work"]]
    backoffs = [Backoff.model_validate(b) for b in doc["backoffs"]]
    last_success = parse_timestamp(doc["last_success"])
    if not _instant(last_success):
        last_success = None  # none, or 'infinity' and the like: no success to count from
    start, end, step = choose_window(zoom, now, last_success, events, backoffs)
    window = TimelineWindow(
        zoom=zoom, start=start, end=end, events=len(events),
        truncated=len(events) >= TIMELINE_EVENTS,
    )  # fmt: skip
    return build_timeline(events, work, backoffs, start, end, step), window
