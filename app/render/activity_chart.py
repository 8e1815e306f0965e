"""The overview's activity chart as SVG geometry: one lane per process, stacked bars of
work-history events (Started, Finished, Failed, Canceled) per hour over the last 24 hours
and per day over the last 7 days. partials/activity.html draws it, with presentation
attributes and classes only (the CSP allows no inline style).

Each series has one scale for every lane (its tallest bar is full height), so lanes
compare; each bar's tooltip (<title>) gives its numbers. An event the BMDB added later
(enums only grow) is stacked last, as `other`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.bmdb.activity import DAYS, HOURS, Activity, Bucket

EVENTS = ("Started", "Finished", "Failed", "Canceled")  # stacked bottom to top
LABEL_WIDTH, HOUR_WIDTH, DAY_WIDTH, GAP = 150, 22, 44, 36
LANE_HEIGHT, BAR_HEIGHT, AXIS_HEIGHT, TOP = 46, 38, 16, 16


@dataclass(frozen=True)
class Segment:
    y: float
    height: float
    event: str


@dataclass(frozen=True)
class Column:
    """One hour or day of one process: its slot (hovered for the title) and its bars."""

    x: float
    y: float
    width: float
    height: float
    title: tuple[str | datetime, ...]  # text and instants (marked up by the template)
    segments: list[Segment]


@dataclass(frozen=True)
class Lane:
    process: str
    label_y: float
    note_y: float  # "N in 24 h"
    base_y: float  # the bars' baseline
    total: int  # events in the last 24 hours


@dataclass
class Chart:
    lanes: list[Lane] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    axis: list[tuple[float, str]] = field(default_factory=list)  # x, label
    headings: list[tuple[float, str]] = field(default_factory=list)  # x, text
    hourly_max: int = 0
    daily_max: int = 0
    daily_x: float = 0

    @property
    def width(self) -> int:
        return LABEL_WIDTH + HOURS * HOUR_WIDTH + GAP + DAYS * DAY_WIDTH

    @property
    def height(self) -> int:
        return TOP + LANE_HEIGHT * max(len(self.lanes), 1) + AXIS_HEIGHT


def _series(buckets: list[Bucket]) -> dict[tuple[datetime, str], dict[str, int]]:
    counts: dict[tuple[datetime, str], dict[str, int]] = {}
    for b in buckets:
        counts.setdefault((b.start, b.process), {})[b.event] = b.n
    return counts


def build_chart(activity: Activity) -> Chart | None:
    """None when there is no event to draw."""
    if not activity.hourly and not activity.daily:
        return None
    chart = Chart()
    processes = sorted({b.process for b in activity.hourly} | {b.process for b in activity.daily})
    hourly, daily = _series(activity.hourly), _series(activity.daily)
    chart.hourly_max = max((sum(c.values()) for c in hourly.values()), default=0)
    chart.daily_max = max((sum(c.values()) for c in daily.values()), default=0)
    hours = [activity.first_hour + timedelta(hours=i) for i in range(HOURS)]
    days = [activity.first_day + timedelta(days=i) for i in range(DAYS)]
    chart.daily_x = LABEL_WIDTH + HOURS * HOUR_WIDTH + GAP
    for lane, process in enumerate(processes):
        y = TOP + lane * LANE_HEIGHT
        total = sum(n for (_, p), c in hourly.items() if p == process for n in c.values())
        chart.lanes.append(Lane(process, y + 16, y + 30, y + BAR_HEIGHT, total))
        for i, hour in enumerate(hours):
            chart.columns.append(_column(
                LABEL_WIDTH + i * HOUR_WIDTH, HOUR_WIDTH, y, (process, " from ", hour, " to ",
                hour + timedelta(hours=1)), hourly.get((hour, process), {}), chart.hourly_max,
            ))  # fmt: skip
        for i, day in enumerate(days):
            chart.columns.append(_column(
                chart.daily_x + i * DAY_WIDTH, DAY_WIDTH, y, (process, f" on {day:%Y-%m-%d} UTC"),
                daily.get((day, process), {}), chart.daily_max,
            ))  # fmt: skip
    chart.axis = [
        (LABEL_WIDTH + i * HOUR_WIDTH, f"{hour:%H}h") for i, hour in enumerate(hours) if i % 6 == 0
    ] + [(chart.daily_x + i * DAY_WIDTH, f"{day:%m-%d}") for i, day in enumerate(days)]
    chart.headings = [
        (LABEL_WIDTH, f"per hour, last {HOURS} h (max {chart.hourly_max}/h)"),
        (chart.daily_x, f"per day, last {DAYS} d (max {chart.daily_max}/day)"),
    ]
    return chart


def _column(
    x: float, width: float, lane_y: float, what: tuple[str | datetime, ...],
    counts: dict[str, int], scale: int,
) -> Column:  # fmt: skip
    bottom = lane_y + BAR_HEIGHT
    segments = []
    events = [*EVENTS, *sorted(set(counts) - set(EVENTS))]
    for event in events:
        n = counts.get(event, 0)
        if n and scale:
            height = max(BAR_HEIGHT * n / scale, 1.0)
            bottom -= height
            kind = event.lower() if event in EVENTS else "other"
            segments.append(Segment(round(bottom, 1), round(height, 1), kind))
    parts = ", ".join(f"{counts[e]} {e}" for e in events if counts.get(e))
    title = (*what, f": {parts or 'no events'}")
    return Column(x + 1, lane_y, width - 2, BAR_HEIGHT, title, segments)
