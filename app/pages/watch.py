"""Watch lists (/watch?ids=...): the machines an incident is about, side by side, live.

IDs or unique prefixes, separated by commas (or spaces), up to MAX_IDS. Tokens that name
no machine, several machines or are no ID at all are listed as such. The table polls;
app/static/watch.js compares each poll's rows with the previous ones and raises a browser
notification for what an operator waits for (a backoff ended, work started, a heartbeat
returned, a machine deleted) when the user allowed it.

/watch/filtered?<the machine list's filters> opens the first MAX_IDS machines of a filter
as a watch list: a snapshot, so a machine stays watched when it leaves the filter (its
backoff ended: exactly what the operator was waiting for).

Data: app/bmdb/watch.py, one statement per page and per poll (an unchanged poll: 304).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import computed_field

from app.bmdb import watch as bmdb
from app.bmdb.filters import MachineFilters
from app.bmdb.watch import MAX_IDS
from app.deps import Counts, CurrentSchema, HistoryCache, ListPoll, PageReader, Workflows
from app.model.entities import PageModel
from app.model.ids import MIN_HEX_DIGITS, parse_tokens
from app.model.machine_list import list_query
from app.model.twin import twin
from app.model.watch_list import WatchedMachine, WatchToken, read_watch
from app.render import urls
from app.render.templating import is_htmx, json_requested, respond, rows_html

router = APIRouter()


HELP = (
    f"Machine IDs or unique prefixes (at least {MIN_HEX_DIGITS} hex digits, any case), "
    f"separated by commas or spaces, up to {MAX_IDS}."
)

class WatchPage(PageModel):
    ids: list[str]  # the tokens, normalized, in the order given
    tokens: list[WatchToken]
    machines: list[WatchedMachine]  # in the order they were named
    capped: bool  # the first MAX_IDS machines of a longer list (/watch/filtered)
    max_ids: int = MAX_IDS

    @computed_field
    @property
    def full_ids_url(self) -> str | None:
        """The same watch list by full IDs, when it was given prefixes: a link that keeps
        naming these machines when new ones come to share a prefix."""
        full = [str(m.machine_id) for m in self.machines]
        if full == self.ids or not full:
            return None
        return urls.watch(full, self.capped)

    @property
    def unresolved(self) -> list[WatchToken]:
        return [t for t in self.tokens if t.state != "machine"]


@router.get(
    urls.WATCH,
    name="watch",
    responses=twin(WatchPage, "machines by ID or prefix, side by side, with what the IDs name"),
)
async def watch_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    fleet: Workflows,
    poll: ListPoll,
    ids: Annotated[
        list[str],
        Query(
            max_length=MAX_IDS,
            description=f"machine IDs or prefixes (≥{MIN_HEX_DIGITS} hex digits), comma-"
            f"separated (or repeated), up to {MAX_IDS}",
        ),
    ] = [],  # noqa: B006 (FastAPI copies defaults)
    capped: Annotated[bool, Query(description="the first of a longer list")] = False,
):
    tokens = parse_tokens(ids)
    if len(tokens) > MAX_IDS:
        raise HTTPException(
            400, f"A watch list has at most {MAX_IDS} machines; {len(tokens)} IDs were given."
        )
    fragment, as_json = is_htmx(request), json_requested(request)
    found = await read_watch(reader, schema, fleet, tokens, capped, as_json, poll)
    if found.machines is None:  # unchanged: the browser keeps what it shows
        return Response(status_code=304, headers={"HX-PTag": found.ptag})
    page = WatchPage(ids=tokens, tokens=found.tokens, machines=found.machines, capped=capped)
    rows = "" if as_json else await rows_html(
        request, "partials/watch_row.html", page.machines, page.ids
    )
    return respond(
        request, "partials/watch_live.html" if fragment else "templates/watch.html", page,
        reader=reader, headers={"HX-PTag": found.ptag} if found.ptag else None, poll=poll,
        ptag=found.ptag, help=HELP, rows_html=rows,
    )  # fmt: skip


@router.get(urls.WATCH_FILTERED, name="watch_filtered")
async def watch_filtered(
    reader: PageReader,
    schema: CurrentSchema,
    fleet: Workflows,
    counts: Counts,
    reads: HistoryCache,
    filters: Annotated[MachineFilters, Query()],
):
    """303 to the watch list of the filter's first MAX_IDS machines, in the list's order."""
    _, where, order = await list_query(counts, reads, reader, schema, fleet, filters)
    ids = await bmdb.filtered_ids(reader, where, order, schema, MAX_IDS + 1)
    if not ids:
        raise HTTPException(404, "No machine matches this filter: there is nothing to watch.")
    return RedirectResponse(urls.watch(ids[:MAX_IDS], len(ids) > MAX_IDS), status_code=303)
