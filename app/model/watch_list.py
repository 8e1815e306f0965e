"""Watch lists as pages share them: what each given ID or prefix names, and the watched
machines, read in one statement (app/bmdb/watch.py) whose time-dependent parts (active
backoffs, alive sessions, recent heartbeats) the BMDB computes, so an unchanged poll is a
304 and one that flips answers with the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import computed_field

from app.bmdb import watch as bmdb
from app.bmdb.columns import PgSpecial
from app.bmdb.connection import Reader
from app.bmdb.filters import uuid_prefix_range
from app.bmdb.machines import MachineLayout, list_layout
from app.bmdb.reflection import Schema
from app.bmdb.watch import CANDIDATES
from app.bmdb.workflows import Fleet
from app.model.entities import Machine, Model, Timestamp, WorkflowStatus
from app.model.ids import MIN_HEX_DIGITS, hex_digits
from app.model.polling import Poll, PollTag
from app.model.workflow_status import statuses
from app.render import urls
from app.render.tag_hints import summary_fields

TokenState = Literal["machine", "ambiguous", "unknown", "invalid"]
LAST_EVENT_FIELDS = ("process", "event", "timestamp", "failed_cause")


def _utc(ts: object) -> str:
    """A time as the browser compares it: ISO text (or PostgreSQL's, for 'infinity')."""
    if isinstance(ts, PgSpecial):
        return ts.text
    return ts.isoformat() if isinstance(ts, datetime) else str(ts)


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


class LastEvent(Model):
    """The newest history event of one process on a watched machine: how its work went."""

    process: str
    event: str  # Started, Finished, Failed, Canceled
    timestamp: Timestamp
    failed_cause: str | None  # its first CAUSE_CHARS characters


class WatchedMachine(Machine):
    named_by: list[str]  # the tokens that named it
    last_heartbeat: Timestamp | None  # agent_heartbeat_at; None: never
    heartbeat_recent: bool | None  # within 10 minutes; None: no heartbeat tag in this BMDB
    workflows: list[WorkflowStatus] = []  # would a component pick it up, and what stops it
    last_events: list[LastEvent] = []  # per process that ever ran on it

    @property
    def facts(self) -> dict[str, object]:
        """What watch.js compares from poll to poll to log each change (besides work,
        backoff processes and the heartbeat, which have attributes of their own)."""
        return {
            "backoffs": {b.process: _utc(b.until) for b in self.active_backoffs},
            "workflows": {w.workflow: w.state for w in self.workflows},
            "last": {
                e.process: [e.event, _utc(e.timestamp), e.failed_cause] for e in self.last_events
            },
        }

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


@dataclass(frozen=True)
class WatchRead:
    """What the tokens name, and the watched machines in the order they were named; None
    for both when the browser's copy is still true (a 304). `ptag`: None without any
    token that can name a machine (nothing was read)."""

    tokens: list[WatchToken] | None
    machines: list[WatchedMachine] | None
    ptag: str | None


async def read_watch(
    reader: Reader, schema: Schema, fleet: Fleet, tokens: list[str], capped: bool,
    as_json: bool, poll: Poll,
) -> WatchRead:  # fmt: skip
    """The watch list of `tokens`: one statement resolves the prefixes and reads the
    machines (none when no token is a prefix)."""
    ranges = {i: uuid_prefix_range(t) for i, t in enumerate(tokens)}
    ranges = {i: r for i, r in ranges.items() if r and hex_digits(tokens[i]) >= MIN_HEX_DIGITS}
    if not ranges:
        return WatchRead([_token(t, None) for t in tokens], [], None)
    layout = list_layout(schema, None if as_json else summary_fields)
    tag = PollTag(poll, "watch", tokens, capped, schema.layout_key)
    order = list(ranges)  # statement position -> token index
    doc = await bmdb.watch(
        reader, schema, layout, [ranges[i] for i in order], candidates=CANDIDATES + 1,
        known_ptag=tag.known, fleet=fleet,
    )  # fmt: skip
    if doc.tokens is None:
        return WatchRead(None, None, tag.of(doc.ptag))
    found = {order[i]: machines for i, machines in doc.tokens.items()}
    named = [_token(t, found.get(i, []) if i in ranges else None) for i, t in enumerate(tokens)]
    machines = _machines(doc.machines or [], layout, fleet, named)
    return WatchRead(named, machines, tag.of(doc.ptag))


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


def _machines(
    documents: list, layout: MachineLayout, fleet: Fleet, tokens: list[WatchToken]
) -> list[WatchedMachine]:
    """The watched machines, in the order their tokens came."""
    named_by: dict[UUID, list[str]] = {}
    for t in tokens:
        if t.machine_id is not None:
            named_by.setdefault(t.machine_id, []).append(t.token)
    machines = []
    for key, document, heartbeat, last in documents:
        at, recent = heartbeat if heartbeat is not None else (None, None)
        machine = WatchedMachine.model_validate(
            {**document, "key": key, "named_by": named_by.get(UUID(document["machine_id"]), []),
             "last_heartbeat": at, "heartbeat_recent": recent,
             "last_events": [dict(zip(LAST_EVENT_FIELDS, e, strict=True)) for e in last]},
            context={"layout": layout},
        )  # fmt: skip
        workflows = statuses(fleet, document["workflow_conditions"], machine)
        machines.append(machine.model_copy(update={"workflows": workflows}))
    position = {machine_id: n for n, machine_id in enumerate(named_by)}
    return sorted(machines, key=lambda m: position.get(m.machine_id, len(position)))
