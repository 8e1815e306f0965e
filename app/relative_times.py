"""Relative times ("3m ago") filled in when a response is rendered, not when its HTML is.

Templates and tag hints emit `later(ts)`, an opaque marker; `app.web.render` replaces
every marker with the text relative to that response's now (`fill`). HTML that holds
markers depends on data alone, so it can be reused across responses (app/fragment_cache.py)
without its relative times going stale. A marker carries a per-process random token, so
text from the database cannot forge one.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from markupsafe import Markup

from app.formatting import relative

_START = "\x1e" + secrets.token_hex(8)
_END = "\x1f"
_MARKER = re.compile(re.escape(_START) + r"([0-9T:.+\-]{10,40})" + _END)


def later(ts: datetime | None) -> Markup:
    """A marker for `relative(ts)` at render time ('' for NULL)."""
    if ts is None:
        return Markup("")
    return Markup(f"{_START}{ts.isoformat()}{_END}")


def _text(iso: str, now: datetime) -> str:
    try:
        return relative(datetime.fromisoformat(iso), now)
    except (OverflowError, ValueError):  # 'infinity' is datetime.max/min: no sensible text
        return ""


def fill(body: str, now: datetime) -> str:
    """`body` with every marker replaced by its relative time as of `now`."""
    if _START not in body:
        return body
    return _MARKER.sub(lambda m: _text(m[1], now), body)
