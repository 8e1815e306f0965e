"""What the page handlers share: the poll parameters, ID parsing, poll tags."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, HTTPException, Query, Request, Response

from app.bmdb.counts import Counted
from app.render import urls
from app.render.templating import fingerprint

EXAMPLE_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


@dataclass(frozen=True)
class Poll:
    """How a live view refreshes: every `every` seconds while `live` (live=0 pauses)."""

    live: bool
    every: int
    choices: tuple[int, ...]  # the intervals the view offers


def poll_parameters(
    default_every: int, choices: tuple[int, ...]
) -> Callable[..., Coroutine[Any, Any, Poll]]:
    """A dependency reading `live` and `every` (async: FastAPI runs a sync one in a thread)."""

    async def poll(
        live: Annotated[bool, Query(description="poll for changes; live=0 pauses")] = True,
        every: Annotated[
            int, Query(ge=1, le=300, description="poll interval, seconds")
        ] = default_every,
    ) -> Poll:
        return Poll(live, every, choices)

    return poll


list_poll = poll_parameters(urls.LIST_EVERY, (2, 5, 10, 30))
detail_poll = poll_parameters(urls.DETAIL_EVERY, (1, 2, 5, 10))
ListPoll = Annotated[Poll, Depends(list_poll)]  # a list page's `live` and `every`
DetailPoll = Annotated[Poll, Depends(detail_poll)]  # one machine's or session's

PAGE_SIZES = (50, 100, 500)  # the page sizes a list offers


def parse_id(text: str, what: str, column: str) -> UUID:
    """A machine or session ID from the path; a 400 that shows the format otherwise."""
    try:
        return UUID(text)
    except ValueError:
        raise HTTPException(
            400,
            f"{text[:100]!r} is not a {what} ID: a {what} ID is a UUID such as "
            f"{EXAMPLE_ID} (the {column} column).",
        ) from None


class PollTag:
    """The `HX-PTag` of a polled fragment: the view's parameters plus the md5 of its data,
    which the BMDB computes (and, for counts, the one the browser shows: `Counted`). The
    statement is given the md5 the browser holds (when the view is the same) and returns
    no document when it is unchanged: a 304 then.

    Nothing in a tag depends on the process that made it (the view's fingerprint is a
    digest of its repr, the schema's `layout_key` a digest too), so any worker or replica
    answers a tag another one made."""

    def __init__(self, request: Request, *view: object) -> None:
        self.view = fingerprint(view)
        self.held = request.headers.get("HX-PTag", "")
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
