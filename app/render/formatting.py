"""Jinja filters for times and durations (absolute UTC plus relative to the page's now)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.bmdb.columns import PgSpecial


def utc(ts: datetime | PgSpecial | None) -> str:
    if ts is None:
        return ""
    if isinstance(ts, PgSpecial):  # 'infinity' and the like: as stored
        return ts.text
    if ts.tzinfo is None:  # `timestamp without time zone`: shown as stored
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(seconds: float) -> str:
    """Compact human duration: 45s, 3m 20s, 2h 5m, 4d 3h."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def relative(ts: datetime | None, now: datetime | None = None) -> str:
    """'3m ago' or 'in 20s'."""
    if ts is None:
        return ""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return relative_seconds((ts - (now or datetime.now(UTC))).total_seconds())


def relative_seconds(delta: float) -> str:
    """'3m ago' or 'in 20s' for a time `delta` seconds from now."""
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


FILTERS = {"utc": utc, "duration": duration}  # `relative`: app/render/relative_times.py
