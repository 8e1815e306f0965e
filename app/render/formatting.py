"""Jinja filters for times and durations (absolute UTC plus relative to the page's now)."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

from app.bmdb.columns import PgSpecial


def utc(ts: datetime | PgSpecial | None) -> str:
    if ts is None:
        return ""
    if isinstance(ts, PgSpecial):  # 'infinity' and the like: as stored
        return ts.text
    if ts.tzinfo is None:  # `timestamp without time zone`: shown as stored
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# How `absolute` shows an instant besides in full (`utc`), by variant; app/static/times.js
# knows the same variants and shows them in the browser's zone when the user picks "local".
_VARIANTS = {
    "time": "%H:%M:%SZ",
    "minutes": "%m-%d %H:%M",  # the timeline's axis
}
_VARIANT_NAMES = {name: name for name in _VARIANTS}  # only these reach the markup
_TAGS = {"time": "time", "tspan": "tspan"}


def absolute(ts: datetime | PgSpecial | None, variant: str = "full", tag: str = "time") -> Markup:
    """An absolute time as HTML: its UTC text in a `<time datetime data-absolute>` that
    app/static/times.js re-renders in the user's zone when asked. `tag` names another
    element (SVG text has no <time>: `tspan`), the instant then in `data-datetime`. Times
    that are no instant (NULL, 'infinity', `timestamp without time zone`) are shown as
    stored, without markup."""
    if not isinstance(ts, datetime) or ts.tzinfo is None:
        return Markup(escape(utc(ts)))
    # Built with an f-string, not Markup.format (a history page holds hundreds): every
    # part is made here of digits, '-', ':', '.', '+', 'T', 'Z' or our own names.
    if variant == "full":
        text, marker = utc(ts), "data-absolute"
    else:
        text = ts.astimezone(UTC).strftime(_VARIANTS[variant])
        marker = f'data-absolute="{_VARIANT_NAMES[variant]}"'
    attribute = "datetime" if tag == "time" else "data-datetime"
    element = _TAGS[tag]
    return Markup(f'<{element} {attribute}="{ts.isoformat()}" {marker}>{text}</{element}>')


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


def relative_seconds(delta: float) -> str:
    """'3m ago' or 'in 20s' for a time `delta` seconds from now."""
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def took(ms: float | None) -> str:
    """How long a read took: '45 ms', '2.3 s' ('' when unknown)."""
    if ms is None:
        return ""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


# `relative`: app/render/relative_times.py
FILTERS = {"utc": utc, "absolute": absolute, "duration": duration, "took": took}
