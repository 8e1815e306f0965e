"""Times and durations as pages show them.

Every instant is a `<time datetime>` whose text is the absolute UTC time: that is what a
page without JavaScript shows, and what stays true however long the page is open.
app/static/times.js rewrites it in the browser: in the user's zone when asked, and, for
`relative` times, as "3m ago" / "in 20s", kept current every second. So the server never
writes a relative time, and a page depends on its data alone.

`absolute` and `relative` build their markup in Python rather than in a macro: a page
holds hundreds of times (a history, a list), and SVG text needs `<tspan>` instead.
"""

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


def _instant(ts: object) -> bool:
    """A time the browser can count from: not NULL, 'infinity' or without a zone."""
    return isinstance(ts, datetime) and ts.tzinfo is not None


def absolute(ts: datetime | PgSpecial | None, variant: str = "full", tag: str = "time") -> Markup:
    """An absolute time: its UTC text in a `<time datetime data-absolute>`. `tag` names
    another element (SVG text has no <time>: `tspan`), the instant then in `data-datetime`.
    Times that are no instant (NULL, 'infinity', `timestamp without time zone`) are shown
    as stored, without markup."""
    if not _instant(ts):
        return Markup(escape(utc(ts)))
    assert isinstance(ts, datetime)
    # An f-string, not Markup.format (a history page holds hundreds): every part is made
    # here of digits, '-', ':', '.', '+', 'T', 'Z' or our own names.
    if variant == "full":
        text, marker = utc(ts), "data-absolute"
    else:
        text = ts.astimezone(UTC).strftime(_VARIANTS[variant])
        marker = f'data-absolute="{_VARIANT_NAMES[variant]}"'
    attribute = "datetime" if tag == "time" else "data-datetime"
    element = _TAGS[tag]
    return Markup(f'<{element} {attribute}="{ts.isoformat()}" {marker}>{text}</{element}>')


def relative(ts: datetime | PgSpecial | None) -> Markup:
    """A time the browser shows relative to now ("3m ago", "in 20s"), its absolute time
    on hover; the UTC text until then, and without JavaScript."""
    if not _instant(ts):
        return Markup(escape(utc(ts)))
    assert isinstance(ts, datetime)
    return Markup(f'<time datetime="{ts.isoformat()}" data-relative>{utc(ts)}</time>')


def duration(seconds: float) -> str:
    """Compact human duration: 45s, 3m 20s, 2h 5m, 4d 3h (app/static/times.js: `span`)."""
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


def took(ms: float | None) -> str:
    """How long a read took: '45 ms', '2.3 s' ('' when unknown)."""
    if ms is None:
        return ""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


FILTERS = {
    "utc": utc,
    "absolute": absolute,
    "relative": relative,
    "duration": duration,
    "took": took,
}
