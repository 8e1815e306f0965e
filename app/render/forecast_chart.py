"""The forecast's chart as SVG geometry: one lane per process whose backoffs end and per
workflow whose machines become due, a bar per hour of the horizon (counted from the
forecast's now). templates/forecast.html draws it with presentation attributes and
classes only (the CSP allows no inline style), as partials/activity.html does.

Every lane has the same scale (the tallest bar is full height), so lanes compare; each
hour's tooltip (<title>) gives its count and instants. The first 15 minutes, the
imminent ones, are shaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.bmdb.forecast import BACKOFF_ENDS, RECOVERY_DUE, Forecast

LABEL_WIDTH, PLOT_WIDTH, LANE_HEIGHT, BAR_HEIGHT, AXIS_HEIGHT, TOP = 190, 720, 44, 34, 16, 16
AXIS_STEPS = (1, 2, 3, 6, 12, 24)  # hours between axis labels: at most ~12 labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float  # 0: no bar, the slot still has its title
    title: tuple[str | datetime, ...]  # text and instants (marked up by the template)


@dataclass(frozen=True)
class Lane:
    label: str  # the process whose backoffs end, or the workflow machines become due for
    note: str  # how many: "7 backoffs end"
    what: str  # backoff_ends or recovery_due: the bars' class
    label_y: float
    note_y: float
    base_y: float
    total: int
    bars: list[Bar]


@dataclass
class Chart:
    hours: int
    lanes: list[Lane] = field(default_factory=list)
    axis: list[tuple[float, str]] = field(default_factory=list)  # x, label
    scale: int = 0  # the tallest bar's count
    imminent_width: float = 0  # the shaded first 15 minutes

    @property
    def width(self) -> int:
        return LABEL_WIDTH + PLOT_WIDTH

    @property
    def height(self) -> int:
        return TOP + LANE_HEIGHT * max(len(self.lanes), 1) + AXIS_HEIGHT

    @property
    def plot_x(self) -> int:
        return LABEL_WIDTH

    @property
    def top(self) -> int:
        return TOP


def _note(what: str, n: int) -> str:
    if what == RECOVERY_DUE:
        return f"{n} due for recovery"
    return "1 backoff ends" if n == 1 else f"{n} backoffs end"


def build_chart(forecast: Forecast, hours: int, imminent: timedelta) -> Chart | None:
    """None when nothing is forecast."""
    if not forecast.upcoming:
        return None
    chart = Chart(hours)
    counts: dict[tuple[str, str], list[int]] = {}
    for u in forecast.upcoming:
        hour = int((u.at - forecast.now).total_seconds() // 3600)
        key = (u.what, (u.process if u.what == BACKOFF_ENDS else u.workflow) or "")
        counts.setdefault(key, [0] * hours)[min(max(hour, 0), hours - 1)] += 1
    chart.scale = max(n for per_hour in counts.values() for n in per_hour)
    slot = PLOT_WIDTH / hours
    gap = min(1.0, slot / 8)  # between two hours' bars
    for i, ((what, label), per_hour) in enumerate(sorted(counts.items())):
        y = TOP + i * LANE_HEIGHT
        bars = []
        for h, n in enumerate(per_hour):
            height = max(BAR_HEIGHT * n / chart.scale, 1.0) if n else 0.0
            start = forecast.now + timedelta(hours=h)
            bars.append(Bar(
                round(LABEL_WIDTH + h * slot + gap, 2), round(y + BAR_HEIGHT - height, 1),
                round(slot - 2 * gap, 2), round(height, 1),
                (label, " from ", start, " to ", start + timedelta(hours=1), f": {n}"),
            ))  # fmt: skip
        chart.lanes.append(
            Lane(label, _note(what, sum(per_hour)), what, y + 15, y + 29, y + BAR_HEIGHT,
                 sum(per_hour), bars)
        )
    step = next((s for s in AXIS_STEPS if hours / s <= 12), AXIS_STEPS[-1])
    chart.axis = [(LABEL_WIDTH + h * slot, f"+{h}h") for h in range(0, hours, step)]
    chart.imminent_width = round(PLOT_WIDTH * imminent.total_seconds() / (hours * 3600), 2)
    return chart
