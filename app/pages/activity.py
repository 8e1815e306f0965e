"""Activity over time (/activity): work-history events per hour over the last 24 hours and
per day over the last 7 days, by process and event, drawn as SVG.

Data: app/bmdb/activity.py, one statement scanning work_history, shared like every
fleet-wide history read (at most once per WEBUG_HISTORY_CACHE_SECONDS, under its own
budget). The overview loads this page's fragment once (`hx-trigger="load"`), outside
its polled part: its polls never read history. The overview's JSON twin carries the
same series (`activity_fields`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from fastapi import APIRouter, Request

from app.bmdb import activity as bmdb
from app.bmdb.connection import Reader
from app.bmdb.history_reads import HistoryRead, HistoryReads
from app.pages.json_models import twin
from app.pages.models import Model, PageModel
from app.render import urls
from app.render.activity_chart import build_chart
from app.render.templating import PageReader, is_htmx, respond

router = APIRouter()

KEY = ("activity",)


class HourCount(Model):
    hour: datetime  # UTC, start of the hour
    process: str
    event: str
    n: int


class DayCount(Model):
    day: date  # UTC
    process: str
    event: str
    n: int


class ActivityFields(Model):
    """The series and how old they are (also part of the overview's JSON twin)."""

    activity: list[HourCount] | None = None  # the last 24 hours, buckets with events only
    activity_daily: list[DayCount] | None = None  # the last 7 UTC days, today included
    activity_computed_at: datetime | None = None
    activity_next_read_after: datetime | None = None
    activity_read_ms: float | None = None
    activity_error: str | None = None  # e.g. the read exceeded its budget: no series then


class ActivityPage(ActivityFields, PageModel):
    pass


async def read_activity(request: Request, reader: Reader) -> HistoryRead:
    reads: HistoryReads = request.app.state.history_reads
    return await reads.get(KEY, lambda: bmdb.activity(reader))


def activity_fields(read: HistoryRead, ttl: float) -> dict:
    found: bmdb.Activity | None = read.value if read.ok else None
    return {
        "activity": [HourCount(hour=b.start, process=b.process, event=b.event, n=b.n)
                     for b in found.hourly] if found else None,
        "activity_daily": [DayCount(day=b.start.date(), process=b.process, event=b.event, n=b.n)
                           for b in found.daily] if found else None,
        "activity_computed_at": read.computed_at,
        "activity_next_read_after": read.computed_at + timedelta(seconds=ttl),
        "activity_read_ms": read.ms,
        "activity_error": read.error,
    }  # fmt: skip


@router.get(
    urls.ACTIVITY,
    name="activity",
    responses=twin(ActivityPage, "work-history events per hour (24 h) and per day (7 d)"),
)
async def activity_page(request: Request, reader: PageReader):
    read = await read_activity(request, reader)
    reads: HistoryReads = request.app.state.history_reads
    page = ActivityPage(**activity_fields(read, reads.ttl))
    chart = build_chart(read.value) if read.ok else None
    template = "partials/activity.html" if is_htmx(request) else "templates/activity.html"
    return respond(request, template, page, reader=reader, chart=chart, history_ttl=reads.ttl)
