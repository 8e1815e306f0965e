"""Every backoff (/backoffs): its page model, shared by the HTML page and the JSON twin,
and what reads it (app/bmdb/backoff_list.py; app/model/live_list.py for what lists share)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from fastapi import Request
from pydantic import Field, computed_field

from app.bmdb import backoff_list as bmdb
from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache
from app.bmdb.failures import DEFAULT_WINDOW, window_text
from app.bmdb.keyset import Cursor
from app.bmdb.reflection import Schema
from app.model import live_list
from app.model.entities import Model, PageModel, Timestamp, seconds_until
from app.model.polling import Poll
from app.render import urls
from app.render.values import value_to_json

CSV_HEADER = [
    "machine_id", "process", "until", "active", "last_interval_seconds", "cause",
    "failure_group",
]  # fmt: skip


class BackoffItem(Model):
    """A backoff: `process` may not run on the machine again before `until`."""

    machine_id: UUID
    process: str
    until: Timestamp
    cause: str
    last_interval_seconds: int | None
    active: bool  # until > now()
    failure_digest: str  # of the cause's failure signature (app/bmdb/failures.py)

    @computed_field
    @property
    def ends_in_seconds(self) -> float | None:
        """Seconds until it ends as this is served (negative: ended that long ago; None:
        never)."""
        return seconds_until(self.until, datetime.now(UTC))

    @computed_field
    @property
    def failure_group(self) -> str:
        """The ID of its cause's group on /failures: among active backoffs while it is
        active, else among the failed work of the default window (when it failed then)."""
        if self.active:
            return f"backoff-{self.failure_digest}"
        return f"history-{window_text(DEFAULT_WINDOW)}-{self.failure_digest}"

    @computed_field
    @property
    def failure_url(self) -> str:
        return urls.failure_group(self.failure_group)

    @computed_field
    @property
    def machine_url(self) -> str:
        return urls.machine(self.machine_id)


class BackoffListPage(PageModel):
    items: list[BackoffItem]
    total: int  # under every filter
    limit: int
    sort: str  # the order in use (the state's default when not given)
    after: str | None
    next_after: str | None
    view: bmdb.BackoffFilters = Field(exclude=True)
    states: dict[str, int]  # active, expired and all, under the other filters
    processes: dict[str, int]  # per process, under the other filters
    counted_at: datetime  # when the counts were taken

    @computed_field
    @property
    def filters(self) -> dict[str, str]:
        return {"state": self.view.state, **dict(self.view.active())}


def parse(schema: Schema, filters: bmdb.BackoffFilters, after: str | None) -> Cursor | None:
    """The page's cursor; a 400 for an unknown process or a cursor of another order."""
    live_list.check_process(schema, filters.process)
    return live_list.cursor(filters.keyset(), after)


async def load(
    request: Request, reader: Reader, counts: CountCache, filters: bmdb.BackoffFilters,
    after: Cursor | None, limit: int, poll: Poll,
) -> live_list.Live[BackoffListPage]:  # fmt: skip
    """The page (one statement; None when the poll's copy is current)."""

    def build(read: live_list.Page) -> BackoffListPage:
        c = read.counts
        return BackoffListPage(
            items=[BackoffItem.model_validate(r) for r in read.rows],
            total=c["total"], limit=read.limit, sort=filters.order, after=read.after,
            next_after=read.next_after, view=filters, states=c["states"],
            processes=dict(c["processes"]), counted_at=read.counted_at,
        )  # fmt: skip

    return await live_list.load(
        request, reader, counts, filters,
        count_key=("backoffs", filters.model_copy(update={"sort": None})),
        view=("backoffs", filters), after=after, limit=limit, poll=poll, build=build,
    )  # fmt: skip


def csv(reader: Reader, filters: bmdb.BackoffFilters, cap: int):
    """Every backoff of the filters, in the page's order, as a streamed CSV."""

    def row(document: dict) -> list[object]:
        b = BackoffItem.model_validate(document)
        return [
            str(b.machine_id), b.process, value_to_json(None, b.until), b.active,
            b.last_interval_seconds, b.cause, b.failure_group,
        ]  # fmt: skip

    return live_list.csv_download(
        reader, filters, CSV_HEADER, row, cap, "webug-backoffs.csv"
    )
