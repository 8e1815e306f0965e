"""Sessions: components' liveness records, the work they hold, and stale work.

A session is alive while `session_deadline > now()`; work held by an expired session is
stale (nobody is doing it). Each page is ONE statement returning one JSON document. A
session's document:

    {"session_id", "component", "runtime_info", "created_at", "interval_seconds",
     "deadline", "alive", "held_work": count}

`work` has no index on session_id, but it only holds the fleet's current leases, so
scanning it is cheap. Values are always bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.bmdb.connection import Reader
from app.bmdb.filters import SqlWhere
from app.bmdb.sql import polled

SESSION_DOC = (
    "json_build_object('session_id', s.session_id, 'component', s.session_component_name,"
    " 'runtime_info', s.session_runtime_info, 'created_at', s.session_created_at,"
    " 'interval_seconds', s.session_interval_seconds, 'deadline', s.session_deadline,"
    " 'alive', coalesce(s.session_deadline > now(), false),"
    " 'held_work', (SELECT count(*) FROM work w WHERE w.session_id = s.session_id))"
)


class SessionFilters(BaseModel):
    """The sessions list's filters, each a query parameter."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    component: str | None = Field(None, max_length=200, description="session_component_name")
    state: Literal["alive", "expired", "all"] = Field("all", description="alive, expired or all")

    @field_validator("component")
    @classmethod
    def _empty_is_none(cls, text: str | None) -> str | None:
        return text or None

    def where(self, params: SqlWhere, *, state: bool = True) -> str:
        """Conditions on `sessions s` (without the state one, for the state tabs)."""
        conditions = ["true"]
        if self.component is not None:
            conditions.append(f"s.session_component_name = {params.param(self.component)}")
        if state and self.state == "alive":
            conditions.append("s.session_deadline > now()")
        elif state and self.state == "expired":
            conditions.append("s.session_deadline <= now()")
        return " AND ".join(conditions)


def _page(filters: SessionFilters, params: SqlWhere, after: UUID | None, limit: int) -> str:
    """SQL: the documents of a keyset page of the filtered sessions, by ID, as a JSON array."""
    where = filters.where(params)
    if after is not None:
        where += f" AND s.session_id > {params.param(after)}::uuid"
    return (
        f"(SELECT coalesce(json_agg({SESSION_DOC} ORDER BY s.session_id), '[]'::json)"
        f" FROM (SELECT * FROM sessions s WHERE {where} ORDER BY s.session_id"
        f" LIMIT {params.param(limit)}) s)"
    )


async def session_page(
    reader: Reader, filters: SessionFilters, *, after: UUID | None, limit: int
) -> list[dict]:
    """A keyset page of the filtered sessions' documents and nothing else (a CSV's page)."""
    params = SqlWhere()
    sql = f"SELECT {_page(filters, params, after, limit)} AS doc"
    return reader.parse(await reader.fetchval(sql, *params.params))


def list_statement(
    filters: SessionFilters,
    *,
    after: UUID | None,
    limit: int,
    stale_limit: int,
    with_facets: bool,
) -> tuple[str, list[object]]:
    """A keyset page of sessions by ID with their held work counts, their total and the
    stale work (longest-expired first, bounded, with its count): the `doc` a poll
    compares; and `facets`: for a full page, the state tabs' counts and every
    component's sessions and work."""
    params = SqlWhere()
    page = _page(filters, params, after, limit)
    where = filters.where(params)
    component = params.param(filters.component)
    facets = "'states', NULL, 'components', NULL"
    if with_facets:
        facets = (
            "'states', (SELECT json_build_object("
            "'alive', count(*) FILTER (WHERE s.session_deadline > now()),"
            " 'expired', count(*) FILTER (WHERE s.session_deadline <= now()),"
            f" 'all', count(*)) FROM sessions s WHERE {filters.where(params, state=False)}),"
            " 'components', (SELECT coalesce(json_agg(json_build_object("
            "'component', c.component, 'alive', c.alive, 'expired', c.expired,"
            " 'held_work', c.held_work, 'stale_work', c.stale_work) ORDER BY c.component),"
            " '[]'::json) FROM (SELECT s.session_component_name AS component,"
            " count(*) FILTER (WHERE s.session_deadline > now()) AS alive,"
            " count(*) FILTER (WHERE s.session_deadline <= now()) AS expired,"
            " coalesce(sum(w.n), 0) AS held_work,"
            " coalesce(sum(w.n) FILTER (WHERE s.session_deadline <= now()), 0) AS stale_work"
            " FROM sessions s LEFT JOIN"
            " (SELECT session_id, count(*) AS n FROM work GROUP BY session_id) w"
            " ON w.session_id = s.session_id GROUP BY 1) c)"
        )
    sql = (
        "SELECT json_build_object("
        f"'sessions', {page},"
        f" 'total', (SELECT count(*) FROM sessions s WHERE {where}),"
        " 'stale', (SELECT json_build_object('total', (SELECT count(*) FROM work w"
        " JOIN sessions s ON s.session_id = w.session_id WHERE s.session_deadline <= now()"
        f" AND ({component}::text IS NULL OR s.session_component_name = {component})),"
        " 'items', coalesce(json_agg(json_build_object('machine_id', x.machine_id,"
        " 'process', x.process, 'session_id', x.session_id, 'component', x.component,"
        " 'session_deadline', x.deadline) ORDER BY x.deadline, x.machine_id, x.process),"
        " '[]'::json))"
        " FROM (SELECT w.machine_id, w.process, w.session_id,"
        " s.session_component_name AS component, s.session_deadline AS deadline"
        " FROM work w JOIN sessions s ON s.session_id = w.session_id"
        " WHERE s.session_deadline <= now()"
        f" AND ({component}::text IS NULL OR s.session_component_name = {component})"
        " ORDER BY s.session_deadline, w.machine_id, w.process"
        f" LIMIT {params.param(stale_limit)}) x)) AS doc,"
        f" json_build_object({facets}) AS facets"
    )
    return sql, params.params


async def session_list(
    reader: Reader,
    filters: SessionFilters,
    *,
    after: UUID | None,
    limit: int,
    stale_limit: int,
    with_facets: bool,
    known_ptag: str | None = None,
) -> tuple[str, dict | None]:
    """(md5 of the page's sessions and stale work, the page's document with its facets
    unless that md5 is `known_ptag`)."""
    sql, params = list_statement(
        filters, after=after, limit=limit, stale_limit=stale_limit, with_facets=with_facets
    )
    params.append(known_ptag)
    row = await reader.fetchrow(polled(sql, f"${len(params)}::text", "facets"), *params)
    doc = reader.parse(row["doc"])
    return row["ptag"], None if doc is None else doc | reader.parse(row["facets"])


LIVE_DOCUMENT = (
    f"SELECT (SELECT json_build_object('session', {SESSION_DOC},"
    " 'work', (SELECT coalesce(json_agg(json_build_object("
    "'machine_id', w.machine_id, 'process', w.process) ORDER BY w.machine_id, w.process),"
    " '[]'::json) FROM work w WHERE w.session_id = s.session_id))"
    " FROM sessions s WHERE s.session_id = $1) AS doc"
)


def _history(limit: int) -> str:
    """The newest work history of the machines the session holds, since it was created."""
    return (
        "(SELECT coalesce(json_agg(json_build_object('machine_id', h.machine_id,"
        " 'process', h.process, 'event', h.event, 'timestamp', h.timestamp,"
        " 'failed_cause', h.failed_cause) ORDER BY h.timestamp DESC, h.machine_id),"
        " '[]'::json) FROM (SELECT * FROM work_history"
        " WHERE machine_id IN (SELECT machine_id FROM work WHERE session_id = $1)"
        " AND timestamp >= (SELECT session_created_at FROM sessions WHERE session_id = $1)"
        f" ORDER BY timestamp DESC, machine_id LIMIT {int(limit)}) h)"
    )


@dataclass
class SessionDocument:
    ptag: str | None  # md5 of the live part's document; None: no such session
    doc: dict | None  # {session, work}; None: unchanged since the known ptag, or no session
    history: list | None  # when asked for


async def session(
    reader: Reader,
    session_id: UUID,
    *,
    history_limit: int | None = None,
    known_ptag: str | None = None,
) -> SessionDocument:
    """A session and the work it holds (the live part, with its md5) and, for its page,
    its machines' history."""
    history = _history(history_limit) if history_limit is not None else "NULL"
    sql = (
        f"SELECT live.ptag, live.doc, CASE WHEN live.ptag IS NOT NULL THEN {history} END"
        f" AS history FROM ({polled(LIVE_DOCUMENT, '$2::text')}) live"
    )
    row = await reader.fetchrow(sql, session_id, known_ptag)
    return SessionDocument(row["ptag"], reader.parse(row["doc"]), reader.parse(row["history"]))
