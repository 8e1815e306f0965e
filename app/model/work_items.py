"""Every work item (/work): its page model, shared by the HTML page and the JSON twin, and
what reads it (app/bmdb/work_list.py; app/model/live_list.py for what lists share)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from fastapi import Request
from pydantic import Field, computed_field

from app.bmdb import work_list as bmdb
from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache
from app.bmdb.keyset import Cursor
from app.bmdb.reflection import Schema
from app.model import live_list
from app.model.entities import Model, PageModel, Timestamp, seconds_until
from app.model.polling import Poll
from app.render import urls
from app.render.values import value_to_json

CSV_HEADER = [
    "machine_id", "process", "session_id", "component", "runtime_info", "alive",
    "session_deadline", "started", "age_seconds",
]  # fmt: skip


class WorkItem(Model):
    """A work row: session S runs process P on machine M, since `started` if history
    says so."""

    machine_id: UUID
    process: str
    session_id: UUID
    component: str | None
    runtime_info: str | None
    interval_seconds: int | None
    deadline: Timestamp | None  # the session's
    alive: bool  # the session's deadline is in the future
    started: Timestamp | None  # the machine's last Started event of this process

    @computed_field
    @property
    def stale(self) -> bool:
        """Held by an expired session: nobody is doing it, and nobody else may."""
        return not self.alive

    @computed_field
    @property
    def age_seconds(self) -> float | None:
        """How long it has run, as this is served (None: no Started event, or infinite)."""
        if self.started is None:
            return None
        until = seconds_until(self.started, datetime.now(UTC))
        return None if until is None else -until

    @computed_field
    @property
    def machine_url(self) -> str:
        return urls.machine(self.machine_id)

    @computed_field
    @property
    def session_url(self) -> str:
        return urls.session(self.session_id)


class WorkListPage(PageModel):
    items: list[WorkItem]
    total: int  # under every filter
    limit: int
    sort: str
    after: str | None
    next_after: str | None
    view: bmdb.WorkFilters = Field(exclude=True)
    states: dict[str, int]  # alive, stale and all, under the other filters
    processes: dict[str, int]  # per process, under the other filters
    components: dict[str, int]  # per component, under the other filters
    counted_at: datetime  # when the counts were taken

    @computed_field
    @property
    def filters(self) -> dict[str, str]:
        return dict(self.view.active())


def parse(schema: Schema, filters: bmdb.WorkFilters, after: str | None) -> Cursor | None:
    """The page's cursor; a 400 for an unknown process or a cursor of another order."""
    live_list.check_process(schema, filters.process)
    return live_list.cursor(filters.keyset(), after)


async def load(
    request: Request, reader: Reader, counts: CountCache, filters: bmdb.WorkFilters,
    after: Cursor | None, limit: int, poll: Poll,
) -> live_list.Live[WorkListPage]:  # fmt: skip
    """The page (one statement; None when the poll's copy is current)."""

    def build(read: live_list.Page) -> WorkListPage:
        c = read.counts
        return WorkListPage(
            items=[WorkItem.model_validate(r) for r in read.rows],
            total=c["total"], limit=read.limit, sort=filters.sort, after=read.after,
            next_after=read.next_after, view=filters,
            states={**c["states"], "all": c["states"]["alive"] + c["states"]["stale"]},
            processes=dict(c["processes"]), components=dict(c["components"]),
            counted_at=read.counted_at,
        )  # fmt: skip

    return await live_list.load(
        request, reader, counts, filters,
        count_key=("work", filters.model_copy(update={"sort": None})), view=("work", filters),
        after=after, limit=limit, poll=poll, build=build,
    )  # fmt: skip


def csv(reader: Reader, filters: bmdb.WorkFilters, cap: int):
    """Every work item of the filters, in the page's order, as a streamed CSV."""

    def row(document: dict) -> list[object]:
        w = WorkItem.model_validate(document)
        return [
            str(w.machine_id), w.process, str(w.session_id), w.component, w.runtime_info,
            w.alive, value_to_json(None, w.deadline), value_to_json(None, w.started), w.age_seconds,
        ]  # fmt: skip

    return live_list.csv_download(
        reader, filters, CSV_HEADER, row, cap, "webug-work.csv"
    )
