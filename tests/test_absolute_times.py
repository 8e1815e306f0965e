"""Every time webug shows is a `<time datetime>` whose text is its instant in UTC.

The server renders times in UTC and never relative to now (pages work without
JavaScript, and depend on their data alone); app/static/times.js re-renders them in the
browser: absolute ones (`data-absolute`, formatting.absolute) in the browser's zone when
the user asks, relative ones (`data-relative`, formatting.relative) as "3m ago". It can
only do that for a time that says which instant it is. Each page and fragment is scanned
for clock times in text and in hover titles: each must sit in such an element, and its
text must be that instant in UTC (e2e/test_times.py switches and ticks them in Chromium).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from uuid import UUID

import pytest

from app.bmdb.columns import PgSpecial
from app.render.formatting import absolute
from tests.fleet import ALIVE, DEAD, mid
from tests.support import webug_client

HTMX = {"HX-Request": "true"}
CLOCK = re.compile(r"\d\d:\d\d")  # any time of day, whatever its format
UTC_TEXT = re.compile(r"\d\d:\d\d:\d\dZ")  # how `utc` writes one
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip
NOWHERE = UUID("0000dead-0000-4000-8000-000000000000")
AT = datetime(2024, 5, 1, 11, 57, 3, 250000, tzinfo=UTC)


# --- the markup ---------------------------------------------------------------------------


def test_an_instant_is_a_time_element_with_its_iso_datetime_and_utc_text():
    assert str(absolute(AT)) == (
        '<time datetime="2024-05-01T11:57:03.250000+00:00" data-absolute>'
        "2024-05-01 11:57:03Z</time>"
    )
    plus_two = AT.astimezone(timezone(timedelta(hours=2)))
    assert 'data-absolute>2024-05-01 11:57:03Z</time>' in str(absolute(plus_two))  # shown in UTC
    assert str(absolute(AT, "time")) == (
        '<time datetime="2024-05-01T11:57:03.250000+00:00" data-absolute="time">11:57:03Z</time>'
    )
    assert str(absolute(AT, "minutes", "tspan")) == (
        '<tspan data-datetime="2024-05-01T11:57:03.250000+00:00" data-absolute="minutes">'
        "05-01 11:57</tspan>"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        (PgSpecial("infinity", 1), "infinity"),
        (datetime(2024, 5, 1, 11, 57, 3), "2024-05-01 11:57:03"),  # no zone: no instant
    ],
)
def test_what_is_no_instant_is_shown_as_stored_without_markup(value, shown):
    assert str(absolute(value)) == shown


# --- every page ---------------------------------------------------------------------------


class Times(HTMLParser):
    """Collects absolute-time elements and the clock times found outside them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.found: list[tuple[dict[str, str | None], str]] = []  # (attributes, text)
        self.stray: list[str] = []

    def _absolute(self) -> dict[str, str | None] | None:
        for tag, attrs in reversed(self.stack):
            if "data-absolute" in attrs or (tag == "time" and "data-relative" in attrs):
                return attrs
        return None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        title = attributes.get("title") or ""
        if UTC_TEXT.search(title) and not (attributes.get("datetime") and tag == "time"):
            self.stray.append(f"<{tag} title={title!r}>")
        if tag not in VOID:
            self.stack.append((tag, attributes))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        if not CLOCK.search(data):
            return
        attrs = self._absolute()
        if attrs is None:
            self.stray.append(data.strip())
        else:
            self.found.append((attrs, data))


def utc_text(attrs: dict[str, str | None]) -> str:
    instant = datetime.fromisoformat(attrs.get("datetime") or attrs["data-datetime"])
    variant = attrs.get("data-absolute") or "full"
    return str(absolute(instant, variant, "tspan")).split(">")[1].split("<")[0]


PAGES = [
    "/",
    "/?live=0",
    f"/machine/{mid(1)}",  # live work, a timestamptz tag value (machine_agent_started)
    f"/machine/{mid(2)}",  # stale work, an active backoff, history with a failure
    f"/machine/{mid(2)}/history",
    f"/machine/{mid(99)}/history",  # the history of a deleted machine
    f"/session/{DEAD}",
    f"/session/{ALIVE}",
    "/sessions",
    "/overview",
    "/schema",
    "/failures",  # when read; first and last seen
    "/activity",  # when read; the bars' tooltips
    "/forecast",  # from, to; each change's time; the bars' tooltips
    # the list of a failure group (tests/fleet.py's 'ssh: refused'), with when it was read
    "/?failure=history-24h-" + hashlib.md5(b"ssh: refused").hexdigest()[:12],
]
FRAGMENTS = [
    "/",
    "/sessions",
    f"/machine/{mid(2)}/live",
    f"/machine/{mid(2)}/history",
    f"/session/{DEAD}/live",
    f"/machine/{NOWHERE}/live",  # "deleted while you were watching (noticed at ...)"
    f"/session/{NOWHERE}/live",
]


@pytest.fixture(scope="module")
def client(module_fleet_dsn):
    with webug_client(module_fleet_dsn) as c:
        yield c


@pytest.mark.parametrize(
    ("url", "headers"), [(u, {}) for u in PAGES] + [(u, HTMX) for u in FRAGMENTS]
)
def test_every_time_carries_its_instant(client, url, headers):
    response = client.get(url, headers=headers)
    assert response.status_code in (200, 404), response.text[:500]
    times = Times()
    times.feed(response.text)
    times.close()
    assert times.stray == [], f"times without their instant on {url}"
    assert times.found, f"{url} shows no time: the scan saw nothing"
    for attrs, text in times.found:
        assert text == utc_text(attrs), attrs


def test_the_machine_page_marks_every_time_it_shows(client):
    """The scan above finds what it should: the times of a busy machine, one by one."""
    times = Times()
    times.feed(client.get(f"/machine/{mid(2)}").text)
    variants = [attrs.get("data-absolute") or "full" for attrs, _ in times.found]
    assert variants.count("full") >= 3  # created, the work's deadline, the backoff's end
    relative = [attrs for attrs, _ in times.found if "data-relative" in attrs]
    assert len(relative) >= 3  # and each again as the browser counts it: "3m ago"
    history = Times()
    history.feed(client.get(f"/machine/{mid(2)}/history").text)
    kinds = {(attrs.get("data-absolute") or "full") for attrs, _ in history.found}
    assert kinds == {"full", "minutes"}  # the rows and the tooltips; the timeline's axis
