"""Activity over time (/activity): work-history events per hour over the last 24 hours and
per day over the last 7 days, by process and event, drawn as SVG.

Data: app/bmdb/activity.py, one statement scanning work_history, shared like every
fleet-wide history read (at most once per WEBUG_HISTORY_CACHE_SECONDS, under its own
budget). The overview loads this page's fragment once (`hx-trigger="load"`), outside
its polled part: its polls never read history. The overview's JSON twin carries the
same series (`activity_fields`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.deps import HistoryCache, PageReader
from app.model.activity import ActivityFields, activity_fields, read_activity
from app.model.entities import PageModel
from app.model.twin import twin
from app.render import urls
from app.render.activity_chart import build_chart
from app.render.templating import is_htmx, respond

router = APIRouter()


class ActivityPage(ActivityFields, PageModel):
    pass


@router.get(
    urls.ACTIVITY,
    name="activity",
    responses=twin(ActivityPage, "work-history events per hour (24 h) and per day (7 d)"),
)
async def activity_page(request: Request, reader: PageReader, reads: HistoryCache):
    read = await read_activity(reads, reader)
    page = ActivityPage(**activity_fields(read, reads.ttl))
    chart = build_chart(read.value) if read.ok else None
    template = "partials/activity.html" if is_htmx(request) else "templates/activity.html"
    return respond(request, template, page, reader=reader, chart=chart, history_ttl=reads.ttl)
