"""A machine's work over time as SVG geometry: one lane per process.

Bars: work (Started -> Finished/Failed/Canceled, or still running), backoffs
(from the failure to `until`); ticks mark failures. The template draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

WIDTH, LANE_HEIGHT, LABEL_WIDTH, AXIS_HEIGHT = 900, 18, 140, 16
END_EVENTS = {"Finished", "Failed", "Canceled"}

# A tooltip: text and times, which the template marks up so the browser can show them in
# the user's zone (formatting.absolute).
Title = tuple[str | datetime, ...]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    kind: str  # finished, failed, canceled, running, stale, open, backoff
    title: Title


@dataclass
class Timeline:
    start: datetime
    end: datetime
    lanes: list[tuple[str, float]] = field(default_factory=list)  # (process, y)
    bars: list[Bar] = field(default_factory=list)
    failures: list[tuple[float, float, Title]] = field(default_factory=list)  # x, y, title
    axis: list[tuple[float, datetime]] = field(default_factory=list)  # x, time there
    width: int = WIDTH
    label_width: int = LABEL_WIDTH

    @property
    def height(self) -> int:
        return AXIS_HEIGHT + LANE_HEIGHT * max(len(self.lanes), 1) + 4


def _placeable(ts: Any) -> bool:
    """A time the axis can hold: not NULL, not 'infinity' (app.bmdb.columns.PgSpecial)."""
    return isinstance(ts, datetime) and ts.tzinfo is not None


def build_timeline(
    events: Sequence[Any], work: Sequence[Any], backoffs: Sequence[Any], now: datetime
) -> Timeline | None:
    """None when there is nothing to draw. `events`, `work`, `backoffs`: the page models
    of app/model/entities.py (HistoryEvent, Work, Backoff); times a datetime cannot hold
    ('infinity') are left out."""
    events = [e for e in events if _placeable(e.timestamp)]
    backoff_spans = [
        (b.started, b.until, b)
        for b in backoffs
        if _placeable(b.until) and _placeable(b.started)
    ]
    times = [e.timestamp for e in events] + [s for s, _, _ in backoff_spans]
    if not times:
        return None
    start = min(times)
    end = max([now, *(u for _, u, _ in backoff_spans)])
    if end <= start:  # everything in the future: a minute's axis (or up to Python's last)
        end = start + min(timedelta(minutes=1), datetime.max.replace(tzinfo=UTC) - start)
        if end <= start:
            end, start = start, start - timedelta(minutes=1)
    timeline = Timeline(start, end)
    scale = (WIDTH - LABEL_WIDTH) / (end - start).total_seconds()

    def x(ts: datetime) -> float:
        return LABEL_WIDTH + max(0.0, (ts - start).total_seconds()) * scale

    processes = sorted(
        {e.process for e in events} | {w.process for w in work} | {b.process for b in backoffs}
    )
    lane_y = {p: AXIS_HEIGHT + i * LANE_HEIGHT for i, p in enumerate(processes)}
    timeline.lanes = [(p, lane_y[p]) for p in processes]
    running = {w.process: w for w in work}

    def bar(
        begin: datetime, finish: datetime, process: str, kind: str, *title: str | datetime
    ) -> None:
        left = x(begin)
        timeline.bars.append(
            Bar(left, lane_y[process] + 3, max(x(finish) - left, 2.0), kind, title)
        )

    open_since: dict[str, datetime] = {}
    for e in events:
        if e.event == "Started":
            if e.process in open_since:  # a start without an end: the earlier one was lost
                bar(open_since[e.process], e.timestamp, e.process, "open", "no end recorded")
            open_since[e.process] = e.timestamp
        elif e.event in END_EVENTS:
            began = open_since.pop(e.process, e.timestamp)
            cause = f": {e.failed_cause}" if e.failed_cause else ""
            bar(
                began,
                e.timestamp,
                e.process,
                e.event.lower(),
                f"{e.process} {e.event} ",
                e.timestamp,
                cause,
            )
            if e.event == "Failed":
                timeline.failures.append(
                    (x(e.timestamp), lane_y[e.process] + 9, ("Failed ", e.timestamp, cause))
                )
    for process, began in open_since.items():
        item = running.get(process)
        if item is None:
            bar(began, now, process, "open", f"{process} started ", began, ", no end recorded")
        elif item.stale:
            # Nobody has worked on it since its session expired: the bar ends there (at its
            # start when the deadline is '-infinity': expired before the work began).
            deadline = item.session_deadline
            title = (f"{process} started ", began, ", STALE: session expired ", deadline)
            bar(began, deadline if _placeable(deadline) else began, process, "stale", *title)
        else:
            bar(began, now, process, "running", f"{process} started ", began, ", still running")
    for begin, until, b in backoff_spans:
        cause = f": {b.cause}"
        bar(begin, until, b.process, "backoff", f"{b.process} backoff until ", until, cause)
    timeline.axis = [
        (LABEL_WIDTH + i * (WIDTH - LABEL_WIDTH) / 4, start + (end - start) * i / 4)
        for i in range(5)
    ]
    return timeline
