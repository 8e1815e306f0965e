"""Every work item (/work): the statement of a page, of a poll and of a CSV page.

One row per `work` row (at most one per machine and process) with its session, and
since when it runs: the time of the machine's last `Started` history event for that
process (work_history is indexed by machine_id: a probe per work row, and work holds
only the fleet's current leases). Work held by an expired session is stale.

Orders (`sort=`): `started` (longest-running first, the default; work without a Started
event last), `machine_id`; `-` reverses either. Without a `state=` filter, stale work
comes first in either order, as on /sessions. Pages are keyset pages (app/bmdb/keyset.py)
of the WITH query `x`, which every part of the statement reads (PostgreSQL computes it
once). The counts (total, state tabs, process and component facets: each counted under
the other filters) are in the same statement when they are due (app/bmdb/counts.py).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.bmdb.keyset import (
    MACHINE_ID,
    Column,
    Keyset,
)
from app.bmdb.sql import SqlWhere
from app.bmdb.value_checks import check_timestamp

SORTS = ("started", "-started", "machine_id", "-machine_id")
STATES = ("alive", "stale")

WORK = (
    "WITH x AS (SELECT w.machine_id, w.process::text AS process, w.session_id,"
    " s.session_component_name AS component, s.session_runtime_info AS runtime_info,"
    " s.session_interval_seconds AS interval_seconds, s.session_deadline AS deadline,"
    " coalesce(s.session_deadline > now(), false) AS alive,"
    " (SELECT max(h.timestamp) FROM work_history h WHERE h.machine_id = w.machine_id"
    " AND h.process = w.process AND h.event = 'Started') AS started"
    " FROM work w LEFT JOIN sessions s ON s.session_id = w.session_id) "
)
ROW = (
    "json_build_object('machine_id', p.machine_id, 'process', p.process,"
    " 'session_id', p.session_id, 'component', p.component, 'runtime_info', p.runtime_info,"
    " 'interval_seconds', p.interval_seconds, 'deadline', p.deadline, 'alive', p.alive,"
    " 'started', p.started)"
)
TIES = (MACHINE_ID, Column("{t}.process", "text"))
STARTED = Column("{t}.started", "timestamptz", check_timestamp)


class WorkFilters(BaseModel):
    """The work list's filters and order, each a query parameter."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    process: str | None = Field(None, max_length=200, description="the work's process")
    component: str | None = Field(
        None, max_length=200, description="the holding session's component"
    )
    state: Literal[STATES] | None = Field(  # type: ignore[valid-type]
        None, description="alive or stale (held by an expired session); both when not given"
    )
    sort: Literal[SORTS] = Field(  # type: ignore[valid-type]
        "started",
        description="started: longest-running first; machine_id; '-' reverses",
    )

    @field_validator("process", "component")
    @classmethod
    def _empty_is_none(cls, text: str | None) -> str | None:
        return text or None

    def active(self) -> list[tuple[str, str]]:
        """The filters in use, as (parameter, value)."""
        return [(n, v) for n in ("process", "component", "state")
                if (v := getattr(self, n)) is not None]  # fmt: skip

    def where(self, params: SqlWhere, *, without: str = "") -> SqlWhere:
        """Conditions on `x` (but the one on `without`, for its facet)."""
        where = SqlWhere(params=params.params)
        if self.process is not None and without != "process":
            where.add(f"x.process = {where.param(self.process)}")
        if self.component is not None and without != "component":
            where.add(f"x.component = {where.param(self.component)}")
        if self.state is not None and without != "state":
            where.add("x.alive" if self.state == "alive" else "NOT x.alive")
        return where

    with_clause: ClassVar[str] = WORK

    def counts(self, params: SqlWhere) -> str:
        return _counts(self, params)

    def row(self, *, csv: bool = False) -> str:
        return ROW

    def keyset(self) -> Keyset:
        by_start = self.sort.removeprefix("-") == "started"
        return Keyset.build(
            self.sort, "x", "x", TIES,
            key=STARTED if by_start else None,
            groups=("NOT x.alive", "x.alive") if self.state is None else ("TRUE",),
            descending=self.sort.startswith("-"),
        )  # fmt: skip


def _counts(filters: WorkFilters, params: SqlWhere) -> str:
    """The total, the state tabs and the facets, each under the other filters."""

    def where(without: str = "") -> str:
        return filters.where(params, without=without).sql

    def by(column: str) -> str:
        return (
            "(SELECT coalesce(json_agg(json_build_array(g.v, g.n) ORDER BY g.v), '[]'::json)"
            f" FROM (SELECT x.{column} AS v, count(*) AS n FROM x WHERE {where(column)}"
            " GROUP BY 1) g)"
        )

    return (
        f"json_build_object('total', (SELECT count(*) FROM x WHERE {where()}),"
        " 'states', (SELECT json_build_object('alive', count(*) FILTER (WHERE x.alive),"
        " 'stale', count(*) FILTER (WHERE NOT x.alive)) FROM x"
        f" WHERE {where('state')}),"
        f" 'processes', {by('process')}, 'components', {by('component')})"
    )
