"""Work-history activity as pages share it: the /activity page, and the overview's JSON
twin, which carries the same series."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from app.bmdb import activity as bmdb
from app.bmdb.connection import Reader
from app.bmdb.history_reads import HistoryRead, HistoryReads
from app.model.entities import Model

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


async def read_activity(reads: HistoryReads, reader: Reader) -> HistoryRead:
    """The activity series, shared like every fleet-wide history read."""
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
