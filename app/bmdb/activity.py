"""Work-history activity: events per hour, by process and event, over the last 7 days.

One statement: a scan of work_history (no index on its timestamp) aggregated into hourly
buckets in UTC, from the start of the UTC day six days ago to now. The overview draws
the last 24 of them per hour and all of them summed per day. Run it through
app/bmdb/history_reads.py: computed at most once per interval, with its own budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.bmdb.columns import parse_timestamp
from app.bmdb.connection import Reader

DAYS = 7
HOURS = 24


@dataclass(frozen=True)
class Bucket:
    start: datetime  # UTC, the hour (or the day) the events happened in
    process: str
    event: str
    n: int


@dataclass(frozen=True)
class Activity:
    now: datetime  # the statement's now()
    hourly: list[Bucket]  # the last HOURS hours, the current one included (partial)
    daily: list[Bucket]  # the last DAYS UTC days, today included (partial)

    @property
    def first_hour(self) -> datetime:
        return self.now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)

    @property
    def first_day(self) -> datetime:
        return self.now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=DAYS - 1
        )


# Buckets by the epoch's hour (no time zone involved, and the planner hashes the three
# grouping columns rather than sorting a million rows); enums are cast to text only for
# the few buckets. Events after the current hour are not drawn, and are not read: one at
# 'infinity' has no hour (its bigint cast fails the statement), one in year 294276 no
# Python datetime.
_SQL = """
SELECT json_build_object(
  'now', now(),
  'buckets', coalesce((SELECT json_agg(json_build_array(b.hour * 3600, b.process::text,
                                                        b.event::text, b.n)
                                       ORDER BY b.hour, b.process::text, b.event::text)
    FROM (SELECT floor(extract(epoch FROM h."timestamp") / 3600)::bigint AS hour,
                 h.process, h.event, count(*) AS n
          FROM work_history h
          WHERE h."timestamp" >= $1 AND h."timestamp" < now() + interval '1 hour'
          GROUP BY 1, 2, 3) b), '[]'::json)) AS doc"""


async def activity(reader: Reader) -> Activity:
    """Since the start of the UTC day DAYS - 1 days ago (by webug's clock; the buckets
    are then placed by the BMDB's)."""
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    doc = reader.parse(await reader.fetchval(_SQL, start - timedelta(days=DAYS - 1), history=True))
    return activity_from(doc)


def activity_from(doc: dict) -> Activity:
    """The hourly and daily series of the statement's document."""
    now = parse_timestamp(doc["now"]).astimezone(UTC)
    result = Activity(now, [], [])
    last_hour = result.first_hour + timedelta(hours=HOURS)
    hourly_rows = [
        Bucket(datetime.fromtimestamp(epoch, UTC), process, event, n)
        for epoch, process, event, n in doc["buckets"]
    ]
    hourly_rows = [b for b in hourly_rows if result.first_day <= b.start < last_hour]
    result.hourly.extend(b for b in hourly_rows if b.start >= result.first_hour)
    days: dict[tuple[datetime, str, str], int] = {}
    for b in hourly_rows:
        key = (b.start.replace(hour=0), b.process, b.event)
        days[key] = days.get(key, 0) + b.n
    result.daily.extend(Bucket(day, p, e, n) for (day, p, e), n in sorted(days.items()))
    return result
