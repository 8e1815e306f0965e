"""Relative times ("3m ago") filled in when a response is rendered, not when its HTML is.

Templates and tag hints emit `later(ts)`, an opaque marker; `app.render.templating.render` replaces
every marker with the text relative to that response's now (`fill`). HTML that holds
markers depends on data alone, so it can be reused across responses (app/render/fragment_cache.py)
without its relative times going stale. A marker carries a per-process random token, so
text from the database cannot forge one.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from markupsafe import Markup

from app.render.formatting import relative_seconds

_START = "\x1e" + secrets.token_hex(8)
_END = "\x1f"


def later(ts: datetime | None) -> Markup:
    """A marker for the time relative to `ts` at render time ('' for NULL). It holds the instant as
    seconds since the epoch: filling a page's hundreds of markers is then arithmetic."""
    if not isinstance(ts, datetime):  # NULL, or 'infinity' (app.bmdb.columns.PgSpecial)
        return Markup("")
    if ts.tzinfo is None:  # `timestamp without time zone`: read as UTC
        ts = ts.replace(tzinfo=UTC)
    try:
        return Markup(f"{_START}{ts.timestamp():.6f}{_END}")
    except (OverflowError, ValueError):  # out of range once its offset is applied
        return Markup("")


def fill(body: str, now: datetime) -> str:
    """`body` with every marker replaced by its relative time as of `now`."""
    if _START not in body:
        return body
    return str(Unfilled(body).fill(now))


class Unfilled:
    """HTML cut at its markers once, to be filled for one response (`fill`) or for many
    without scanning it again (the list's live table: hundreds of markers in ~100 KiB)."""

    def __init__(self, html: str) -> None:
        pieces = html.split(_START)
        self._head = pieces[0]
        self._parts = []
        for piece in pieces[1:]:  # every _START is a marker: the token is ours alone
            end = piece.index(_END)
            self._parts.append((float(piece[:end]), piece[end + 1 :]))
        self._length = len(html)

    def __len__(self) -> int:  # for the size bound of app/render/fragment_cache.py
        return self._length

    def fill(self, now: datetime) -> Markup:
        now_seconds = now.timestamp()
        return Markup(
            self._head
            + "".join(relative_seconds(at - now_seconds) + rest for at, rest in self._parts)
        )
