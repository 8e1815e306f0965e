"""A machine's work over a window of time as SVG geometry: one lane per process.

Bars: work (Started -> Finished/Failed/Canceled, or still running), backoffs
(from the failure to `until`); ticks mark failures. The axis has ticks at round times
(`nice_step`). Nothing here depends on the clock: the window is given, work that runs
on is drawn to the window's end and marked (`Bar.until_now`), and app/static/timeline.js
draws "now" and cuts those bars there, so the same data draws the same SVG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

WIDTH, LANE_HEIGHT, LABEL_WIDTH, AXIS_HEIGHT = 900, 18, 140, 16
END_EVENTS = {"Finished", "Failed", "Canceled"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Tick steps, each a multiple of the first (app/model/machine_history.py rounds a
# window's end to its step: the first step is how often that can move).
STEPS = tuple(
    timedelta(**unit)
    for unit in (
        {"minutes": 10}, {"minutes": 30}, {"hours": 1}, {"hours": 2}, {"hours": 3},
        {"hours": 6}, {"hours": 12}, {"days": 1}, {"days": 2}, {"days": 7}, {"days": 14},
        {"days": 28}, {"days": 91}, {"days": 182}, {"days": 364},
    )
)  # fmt: skip
MAX_TICKS = 8

# A tooltip: text and times, which the template marks up so the browser can show them in
# the user's zone (formatting.absolute).
Title = tuple[str | datetime, ...]


def nice_step(span: timedelta) -> timedelta:
    """The smallest tick step that divides `span` into at most MAX_TICKS parts (whole
    years of 364 days past the longest step)."""
    step = next((s for s in STEPS if span / s <= MAX_TICKS), None)
    return step or STEPS[-1] * math.ceil(span / STEPS[-1] / MAX_TICKS)


def floor_to(ts: datetime, step: timedelta) -> datetime:
    """The last multiple of `step` (since the Unix epoch, UTC) at or before `ts`."""
    return EPOCH + step * ((ts - EPOCH) // step)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    kind: str  # finished, failed, canceled, running, stale, open, backoff
    title: Title
    until_now: bool = False  # runs on: the browser cuts it at "now"


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
    events: Sequence[Any],
    work: Sequence[Any],
    backoffs: Sequence[Any],
    start: datetime,
    end: datetime,
    step: timedelta,
) -> Timeline | None:
    """The timeline of [start, end] with ticks every `step`; None when nothing falls in
    it. `events` (oldest first), `work`, `backoffs`: the page models of
    app/model/entities.py (HistoryEvent, Work, Backoff); times a datetime cannot hold
    ('infinity') are left out. What began before `start` is cut there."""
    events = [e for e in events if _placeable(e.timestamp)]
    backoff_spans = [
        (b.started, b.until, b) for b in backoffs if _placeable(b.until) and _placeable(b.started)
    ]
    timeline = Timeline(start, end)
    scale = (WIDTH - LABEL_WIDTH) / (end - start).total_seconds()

    def x(ts: datetime) -> float:
        seconds = min(max((ts - start).total_seconds(), 0.0), (end - start).total_seconds())
        return LABEL_WIDTH + seconds * scale

    def shown(begin: datetime, finish: datetime) -> bool:
        return finish >= start and begin <= end

    processes = sorted(
        {e.process for e in events if e.timestamp >= start}
        | {w.process for w in work}
        | {b.process for _, until, b in backoff_spans if until >= start}
    )
    lane_y = {p: AXIS_HEIGHT + i * LANE_HEIGHT for i, p in enumerate(processes)}
    running = {w.process: w for w in work}

    def bar(
        begin: datetime, finish: datetime, process: str, kind: str, *title: str | datetime,
        until_now: bool = False,
    ) -> None:  # fmt: skip
        if process not in lane_y or not shown(begin, finish):
            return
        left = x(begin)
        timeline.bars.append(
            Bar(left, lane_y[process] + 3, max(x(finish) - left, 2.0), kind, title, until_now)
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
            title = (f"{e.process} {e.event} ", e.timestamp, cause)
            bar(began, e.timestamp, e.process, e.event.lower(), *title)
            if e.event == "Failed" and start <= e.timestamp <= end:
                timeline.failures.append(
                    (x(e.timestamp), lane_y[e.process] + 9, ("Failed ", e.timestamp, cause))
                )
    for process, began in open_since.items():
        item = running.get(process)
        if item is None:
            title = (f"{process} started ", began, ", no end recorded")
            bar(began, end, process, "open", *title, until_now=True)
        elif item.stale:
            # Nobody has worked on it since its session expired: the bar ends there (at its
            # start when the deadline is '-infinity': expired before the work began).
            deadline = item.session_deadline
            title = (f"{process} started ", began, ", STALE: session expired ", deadline)
            bar(began, deadline if _placeable(deadline) else began, process, "stale", *title)
        else:
            title = (f"{process} started ", began, ", still running")
            bar(began, end, process, "running", *title, until_now=True)
    for begin, until, b in backoff_spans:
        title = (f"{b.process} backoff until ", until, f": {b.cause}")
        bar(begin, until, b.process, "backoff", *title)
    if not timeline.bars and not timeline.failures:
        return None
    first = floor_to(start, step)
    ticks = [first + step * i for i in range(int((end - first) / step) + 1)]
    timeline.axis = [(x(t), t) for t in ticks if start <= t <= end]
    timeline.lanes = [(p, y) for p, y in lane_y.items()]
    return timeline
