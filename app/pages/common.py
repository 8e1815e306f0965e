"""What the page handlers share: the poll parameters, ID parsing, poll tags."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, HTTPException, Query, Request

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
    which the BMDB computes. The statement is given the md5 the browser holds (when the
    view is the same) and returns no document when it is unchanged: a 304 then."""

    def __init__(self, request: Request, *view: object) -> None:
        self.view = fingerprint(view)
        held = request.headers.get("HX-PTag", "")
        prefix, _, md5 = held.partition(".")
        self.known: str | None = md5 if prefix == self.view and md5 else None

    def of(self, md5: str) -> str:
        return f"{self.view}.{md5}"
