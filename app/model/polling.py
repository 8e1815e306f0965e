"""What live views share: how a view polls, and its poll tag."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Response

from app.bmdb.counts import Counted
from app.render.fragments import fingerprint


@dataclass(frozen=True)
class Poll:
    """How a live view refreshes: every `every` seconds while `live` (live=0 pauses)."""

    live: bool
    every: int
    choices: tuple[int, ...]  # the intervals the view offers
    held: str | None = None  # the poll tag of what the browser shows (its `HX-PTag`)


PAGE_SIZES = (50, 100, 500)  # the page sizes a list offers


class PollTag:
    """The `HX-PTag` of a polled fragment: the view's parameters plus the md5 of its data,
    which the BMDB computes (and, for counts, the one the browser shows: `Counted`). The
    statement is given the md5 the browser holds (when the view is the same) and returns
    no document when it is unchanged: a 304 then.

    Nothing in a tag depends on the process that made it (the view's fingerprint is a
    digest of its repr, the schema's `layout_key` a digest too), so any worker or replica
    answers a tag another one made."""

    def __init__(self, poll: Poll, *view: object) -> None:
        """`view`: what the fragment shows besides its data (its parameters)."""
        self.view = fingerprint((poll.live, poll.every, *view))
        self.held = poll.held or ""
        prefix, _, rest = self.held.partition(".")
        md5, _, stamp = rest.partition(".")
        same_view = prefix == self.view and bool(md5)
        self.known: str | None = md5 if same_view else None
        # The count the browser shows (lists, the overview), when its view is this one.
        self.counted: Counted | None = Counted.parse(stamp) if same_view and stamp else None

    def of(self, md5: str, counted: Counted | None = None) -> str:
        return f"{self.view}.{md5}" if counted is None else f"{self.view}.{md5}.{counted.stamp}"

    def unchanged(self) -> Response:
        """304: the browser keeps what it shows, and the tag it holds."""
        return Response(status_code=304, headers={"HX-PTag": self.held})
