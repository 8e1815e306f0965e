"""What happens next (/forecast): the changes the BMDB already determines within a horizon
(`?hours=`, 1 to 168, default 24), backoffs that end and machines that become due for
recovery, as a chart per process and workflow and a list by time; the next 15 minutes
are imminent.

Data: app/bmdb/forecast.py, one statement, shared like the counts (at most once per
WEBUG_COUNT_CACHE_SECONDS per horizon).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import computed_field

from app.bmdb import forecast as bmdb
from app.deps import AppSettings, Counts, CurrentSchema, PageReader, Workflows
from app.model.entities import Model, PageModel, Timestamp
from app.model.twin import twin
from app.render import urls
from app.render.forecast_chart import build_chart
from app.render.templating import respond

router = APIRouter()

MAX_HOURS = 168
IMMINENT = timedelta(minutes=15)
LISTED = 1000  # entries the HTML list shows (the JSON twin has them all)
HORIZONS = (1, 6, 24, 72, 168)  # the horizons the page links to


class UpcomingChange(Model):
    machine_id: UUID
    at: Timestamp
    what: Literal["backoff_ends", "recovery_due"]
    process: str | None  # backoff_ends: the backoff's process
    workflow: str | None  # recovery_due: the workflow the machine becomes due for
    imminent: bool  # within the next 15 minutes

    @computed_field
    @property
    def url(self) -> str:
        return urls.machine(self.machine_id)


class ForecastPage(PageModel):
    hours: int
    computed_at: Timestamp  # the statement's now(): the forecast counts from it
    until: Timestamp  # computed_at + hours
    imminent_until: Timestamp  # computed_at + 15 minutes
    heartbeat_late_seconds: float  # WEBUG_HEARTBEAT_LATE_SECONDS
    upcoming: list[UpcomingChange]  # by time


async def horizon(
    hours: Annotated[str, Query(description=f"horizon in hours, 1 to {MAX_HOURS}")] = str(
        urls.FORECAST_HOURS
    ),
) -> int:
    """`hours` as a whole number from 1 to MAX_HOURS; a 400 that says so otherwise."""
    if not (re.fullmatch("[0-9]{1,3}", hours) and 1 <= int(hours) <= MAX_HOURS):
        raise HTTPException(
            400, f"hours={hours[:20]!r} is not a horizon: a whole number of hours from 1 to"
            f" {MAX_HOURS} (default {urls.FORECAST_HOURS})",
        )  # fmt: skip
    return int(hours)


def page_of(found: bmdb.Forecast, hours: int, late_seconds: float) -> ForecastPage:
    """The forecast as served: what a shared one (counted up to WEBUG_COUNT_CACHE_SECONDS
    ago) holds that is still to come, imminent from now."""
    now = datetime.now(UTC)
    soon = now + IMMINENT
    return ForecastPage(
        hours=hours, computed_at=found.now, until=found.until, imminent_until=soon,
        heartbeat_late_seconds=late_seconds,
        upcoming=[UpcomingChange(**vars(u), imminent=u.at <= soon)
                  for u in found.upcoming if u.at > now],
    )  # fmt: skip


@router.get(
    urls.FORECAST,
    name="forecast",
    responses=twin(ForecastPage, "backoff ends and recoveries due within the horizon, by time"),
)
async def forecast_page(
    request: Request, reader: PageReader, schema: CurrentSchema, fleet: Workflows,
    counts: Counts, settings: AppSettings, hours: Annotated[int, Depends(horizon)],
):  # fmt: skip
    late, within = settings.heartbeat_late_seconds, timedelta(hours=hours)
    found, _ = await counts.get(
        ("forecast", hours, schema.version, schema.layout_key),
        lambda: bmdb.forecast(reader, schema, fleet, within, timedelta(seconds=late)),
    )
    return respond(
        request, "templates/forecast.html", page_of(found, hours, late), reader=reader,
        chart=build_chart(found, hours, IMMINENT), count_ttl=counts.ttl,
        listed=LISTED, horizons=HORIZONS,
    )  # fmt: skip
