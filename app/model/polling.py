"""What live views share: how a view polls, and its poll tag."""

from __future__ import annotations

from dataclasses import dataclass

from app.render.environment import fingerprint


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
    which the BMDB computes. The statement is given the md5 the browser holds (when the
    view is the same) and returns no document when it is unchanged: a 304 then."""

    def __init__(self, poll: Poll, *view: object) -> None:
        """`view`: what the fragment shows besides its data (its parameters)."""
        self.view = fingerprint((poll.live, poll.every, *view))
        prefix, _, md5 = (poll.held or "").partition(".")
        self.known: str | None = md5 if prefix == self.view and md5 else None

    def of(self, md5: str) -> str:
        return f"{self.view}.{md5}"
