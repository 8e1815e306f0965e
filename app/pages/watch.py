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

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ConfigDict, Field, computed_field

from app.bmdb import watch as bmdb
from app.bmdb.filters import MachineFilters, uuid_prefix_range
from app.bmdb.machines import MachineLayout, list_layout
from app.bmdb.watch import CANDIDATES, MAX_IDS
from app.bmdb.workflows import Fleet
from app.deps import Counts, CurrentSchema, HistoryCache, ListPoll, PageReader, Workflows
from app.model.entities import Machine, Model, PageModel, Timestamp, WorkflowStatus
from app.model.ids import MIN_HEX_DIGITS, hex_digits, parse_tokens
from app.model.machine_list import list_query
from app.model.polling import PollTag
from app.model.twin import twin
from app.model.workflow_status import statuses
from app.render import urls
from app.render.tag_hints import summary_fields
from app.render.templating import is_htmx, json_requested, respond

router = APIRouter()


HELP = (
    f"Machine IDs or unique prefixes (at least {MIN_HEX_DIGITS} hex digits, any case), "
    f"separated by commas or spaces, up to {MAX_IDS}."
)

TokenState = Literal["machine", "ambiguous", "unknown", "invalid"]


class WatchToken(Model):
    """One of the IDs or prefixes the watch list was given, and what it names."""

    token: str
    state: TokenState  # one machine / several / none / not an ID or prefix at all
    machine_id: UUID | None = None  # state "machine"
    candidates: list[UUID] = []  # state "ambiguous": the first CANDIDATES machines
    more: bool = False  # ambiguous: more machines than `candidates` start with it

    @computed_field
    @property
    def url(self) -> str | None:
        """The machine, or for an ambiguous prefix the page listing all its machines."""
        if self.machine_id is not None:
            return urls.machine(self.machine_id)
        return urls.machine(self.token) if self.state == "ambiguous" else None


class WatchedMachine(Machine):
    named_by: list[str]  # the tokens that named it
    last_heartbeat: Timestamp | None  # agent_heartbeat_at; None: never
    heartbeat_recent: bool | None  # within 10 minutes; None: no heartbeat tag in this BMDB
    workflows: list[WorkflowStatus] = []  # would a component pick it up, and what stops it

    @computed_field
    @property
    def heartbeat(self) -> Literal["recent", "stale", "none", "unknown"]:
        """The heartbeat's state as watch.js compares it ("unknown": no heartbeat tag)."""
        if self.heartbeat_recent is None:
            return "unknown"
        if self.last_heartbeat is None:
            return "none"
        return "recent" if self.heartbeat_recent else "stale"

    @property
    def work_processes(self) -> list[str]:
        return [w.process for w in self.work]

    @property
    def backoff_processes(self) -> list[str]:
        return [b.process for b in self.active_backoffs]


class WatchRow:
    """One watched machine as its document came, decoded only when asked: a row whose
    HTML is reused (app/render/templating.py's watch_rows_html) is never decoded."""

    __slots__ = (
        "_machine", "document", "fleet", "heartbeat", "key", "layout", "machine_id", "named_by",
    )  # fmt: skip

    def __init__(
        self, key: str, document: dict, heartbeat: list | None, named_by: list[str],
        layout: MachineLayout, fleet: Fleet,
    ) -> None:  # fmt: skip
        self.key, self.document, self.layout, self.fleet = key, document, layout, fleet
        self.heartbeat = tuple(heartbeat) if heartbeat is not None else None
        self.machine_id = UUID(document["machine_id"])
        self.named_by = tuple(named_by)
        self._machine: WatchedMachine | None = None

    @property
    def view_key(self) -> tuple:
        """Everything its HTML shows: the document (by its md5: its workflow conditions
        too), the heartbeat, the tokens."""
        return (self.key, self.heartbeat, self.named_by)

    @property
    def machine(self) -> WatchedMachine:
        if self._machine is None:
            at, recent = self.heartbeat if self.heartbeat is not None else (None, None)
            machine = WatchedMachine.model_validate(
                {**self.document, "key": self.key, "named_by": list(self.named_by),
                 "last_heartbeat": at, "heartbeat_recent": recent},
                context={"layout": self.layout},
            )  # fmt: skip
            workflows = statuses(self.fleet, self.document["workflow_conditions"], machine)
            self._machine = machine.model_copy(update={"workflows": workflows})
        return self._machine


class WatchPage(PageModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    ids: list[str]  # the tokens, normalized, in the order given
    tokens: list[WatchToken]
    rows: list[WatchRow] = Field(exclude=True)  # in the order they were named
    capped: bool  # the first MAX_IDS machines of a longer list (/watch/filtered)
    max_ids: int = MAX_IDS

    @computed_field
    @property
    def machines(self) -> list[WatchedMachine]:
        return [row.machine for row in self.rows]

    @computed_field
    @property
    def full_ids_url(self) -> str | None:
        """The same watch list by full IDs, when it was given prefixes: a link that keeps
        naming these machines when new ones come to share a prefix."""
        full = [str(r.machine_id) for r in self.rows]
        if full == self.ids or not full:
            return None
        return urls.watch(full, self.capped)

    @property
    def unresolved(self) -> list[WatchToken]:
        return [t for t in self.tokens if t.state != "machine"]


def _token(token: str, found: list[UUID] | None) -> WatchToken:
    if found is None:
        return WatchToken(token=token, state="invalid")
    if not found:
        return WatchToken(token=token, state="unknown")
    if len(found) == 1:
        return WatchToken(token=token, state="machine", machine_id=found[0])
    return WatchToken(
        token=token, state="ambiguous", candidates=found[:CANDIDATES], more=len(found) > CANDIDATES
    )




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
    ranges = {i: uuid_prefix_range(t) for i, t in enumerate(tokens)}
    ranges = {i: r for i, r in ranges.items() if r and hex_digits(tokens[i]) >= MIN_HEX_DIGITS}
    page = WatchPage(ids=tokens, tokens=[], rows=[], capped=capped)
    ptag = None
    if ranges:
        layout = list_layout(schema, None if as_json else summary_fields)
        tag = PollTag(request, "watch", tokens, capped, poll, schema.layout_key)
        order = list(ranges)  # statement position -> token index
        doc = await bmdb.watch(
            reader, schema, layout, [ranges[i] for i in order], candidates=CANDIDATES + 1,
            known_ptag=tag.known, fleet=fleet,
        )  # fmt: skip
        ptag = tag.of(doc.ptag)
        if doc.tokens is None:
            return Response(status_code=304, headers={"HX-PTag": ptag})
        found = {order[i]: machines for i, machines in doc.tokens.items()}
        page = page.model_copy(update={
            "tokens": [_token(t, found.get(i, []) if i in ranges else None)
                       for i, t in enumerate(tokens)],
            "rows": _rows(doc.machines or [], layout, fleet, tokens, found),
        })  # fmt: skip
    else:
        page = page.model_copy(update={"tokens": [_token(t, None) for t in tokens]})
    template = "partials/watch_live.html" if fragment else "templates/watch.html"
    headers = {"HX-PTag": ptag} if ptag else None
    return respond(
        request, template, page, reader=reader, headers=headers, poll=poll, ptag=ptag, help=HELP,
    )  # fmt: skip


def _rows(
    machines: list,
    layout: MachineLayout,
    fleet: Fleet,
    tokens: list[str],
    found: dict[int, list[UUID]],
) -> list[WatchRow]:
    """The watched machines' rows, in the order their tokens came."""
    named_by: dict[UUID, list[str]] = {}
    for i, token in enumerate(tokens):
        if len(found.get(i, ())) == 1:
            named_by.setdefault(found[i][0], []).append(token)
    rows = [
        WatchRow(
            key, document, heartbeat, named_by.get(UUID(document["machine_id"]), []), layout,
            fleet,
        )  # fmt: skip
        for key, document, heartbeat in machines
    ]
    position = {machine_id: n for n, machine_id in enumerate(named_by)}
    return sorted(rows, key=lambda r: position.get(r.machine_id, len(position)))


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
