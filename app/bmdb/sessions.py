"""Sessions: components' liveness records, the work they hold, and stale work.

A session is alive while `session_deadline > now()`; work held by an expired session is
stale (nobody is doing it). `work` has no index on session_id, but it only holds the
fleet's current leases, so scanning it is cheap. Values are always bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from app.bmdb.connection import Snapshot
from app.bmdb.machines import fingerprint

STATES = ("alive", "expired", "all")

_SESSION_COLUMNS = (
    "s.session_id, s.session_component_name, s.session_runtime_info, s.session_created_at,"
    " s.session_interval_seconds, s.session_deadline, s.session_deadline > now() AS alive"
)


@dataclass
class Session:
    session_id: UUID
    component: str
    runtime_info: str
    created_at: datetime
    interval_seconds: int
    deadline: datetime
    alive: bool
    held_work: int = 0

    @property
    def expired(self) -> bool:
        return not self.alive

    @property
    def last_heartbeat(self) -> datetime:
        """When the owner last pushed the deadline: it sets `now() + interval`."""
        return self.deadline - timedelta(seconds=self.interval_seconds)

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            (
                self.session_id,
                self.component,
                self.runtime_info,
                self.created_at,
                self.interval_seconds,
                self.deadline,
                self.alive,
                self.held_work,
            )
        )


def _session(r) -> Session:
    return Session(
        r["session_id"],
        r["session_component_name"],
        r["session_runtime_info"],
        r["session_created_at"],
        r["session_interval_seconds"],
        r["session_deadline"],
        r["alive"],
    )


@dataclass(frozen=True)
class SessionFilters:
    component: str | None = None
    state: str = "all"  # alive | expired | all

    def where(self, *, state: bool = True, component: bool = True) -> tuple[str, list[object]]:
        """Conditions on `sessions s` (optionally leaving one filter out, for facets)."""
        conditions, params = ["true"], []
        if component and self.component is not None:
            params.append(self.component)
            conditions.append(f"s.session_component_name = ${len(params)}")
        if state and self.state == "alive":
            conditions.append("s.session_deadline > now()")
        elif state and self.state == "expired":
            conditions.append("s.session_deadline <= now()")
        return " AND ".join(conditions), params


async def session_page(
    snap: Snapshot, filters: SessionFilters, *, after: UUID | None, limit: int
) -> list[Session]:
    """One keyset page of sessions by session ID (the primary key), with held work counts."""
    where, params = filters.where()
    n = len(params)
    rows = await snap.fetch(
        f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE {where}"
        f" AND (${n + 1}::uuid IS NULL OR s.session_id > ${n + 1}::uuid)"
        f" ORDER BY s.session_id LIMIT ${n + 2}",
        *params,
        after,
        limit,
    )
    sessions = [_session(r) for r in rows]
    if sessions:
        counts = await held_work_counts(snap, [s.session_id for s in sessions])
        for s in sessions:
            s.held_work = counts.get(s.session_id, 0)
    return sessions


async def held_work_counts(snap: Snapshot, ids: list[UUID]) -> dict[UUID, int]:
    rows = await snap.fetch(
        "SELECT session_id, count(*) AS n FROM work WHERE session_id = ANY($1::uuid[])"
        " GROUP BY session_id",
        ids,
    )
    return {r["session_id"]: r["n"] for r in rows}


async def count_sessions(snap: Snapshot, filters: SessionFilters) -> int:
    where, params = filters.where()
    return await snap.fetchval(f"SELECT count(*) FROM sessions s WHERE {where}", *params)


async def state_counts(snap: Snapshot, filters: SessionFilters) -> dict[str, int]:
    """Alive / expired / all, under the component filter (the state tabs)."""
    where, params = filters.where(state=False)
    row = await snap.fetchrow(
        "SELECT count(*) FILTER (WHERE s.session_deadline > now()) AS alive,"
        " count(*) FILTER (WHERE s.session_deadline <= now()) AS expired, count(*) AS total"
        f" FROM sessions s WHERE {where}",
        *params,
    )
    return {"alive": row["alive"], "expired": row["expired"], "all": row["total"]}


@dataclass(frozen=True)
class ComponentCount:
    component: str
    alive: int
    expired: int
    held_work: int
    stale_work: int

    @property
    def total(self) -> int:
        return self.alive + self.expired


async def component_counts(snap: Snapshot) -> list[ComponentCount]:
    """Every component with its sessions and work, alive vs expired (the facet)."""
    rows = await snap.fetch(
        "SELECT s.session_component_name AS component,"
        " count(*) FILTER (WHERE s.session_deadline > now()) AS alive,"
        " count(*) FILTER (WHERE s.session_deadline <= now()) AS expired,"
        " coalesce(sum(w.n), 0)::bigint AS held_work,"
        " coalesce(sum(w.n) FILTER (WHERE s.session_deadline <= now()), 0)::bigint AS stale_work"
        " FROM sessions s LEFT JOIN"
        " (SELECT session_id, count(*) AS n FROM work GROUP BY session_id) w"
        " ON w.session_id = s.session_id"
        " GROUP BY 1 ORDER BY 1"
    )
    return [
        ComponentCount(r["component"], r["alive"], r["expired"], r["held_work"], r["stale_work"])
        for r in rows
    ]


@dataclass(frozen=True)
class StaleWork:
    """Work held by an expired session: nobody is doing it, and nobody else may."""

    machine_id: UUID
    process: str
    session_id: UUID
    component: str
    deadline: datetime


@dataclass
class StaleWorkSummary:
    total: int = 0
    items: list[StaleWork] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.items)


async def stale_work(snap: Snapshot, *, component: str | None, limit: int) -> StaleWorkSummary:
    """Stale work, longest-expired first (bounded), and how much there is in all."""
    rows = await snap.fetch(
        "SELECT w.machine_id, w.process::text AS process, w.session_id,"
        " s.session_component_name, s.session_deadline, count(*) OVER () AS total"
        " FROM work w JOIN sessions s ON s.session_id = w.session_id"
        " WHERE s.session_deadline <= now()"
        " AND ($1::text IS NULL OR s.session_component_name = $1)"
        " ORDER BY s.session_deadline, w.machine_id, w.process LIMIT $2",
        component,
        limit,
    )
    if not rows:
        return StaleWorkSummary()
    return StaleWorkSummary(
        rows[0]["total"],
        [
            StaleWork(
                r["machine_id"],
                r["process"],
                r["session_id"],
                r["session_component_name"],
                r["session_deadline"],
            )
            for r in rows
        ],
    )


async def session_by_id(snap: Snapshot, session_id: UUID) -> Session | None:
    row = await snap.fetchrow(
        f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.session_id = $1", session_id
    )
    return _session(row) if row else None


@dataclass(frozen=True)
class HeldWork:
    machine_id: UUID
    process: str


async def held_work(snap: Snapshot, session_id: UUID) -> list[HeldWork]:
    rows = await snap.fetch(
        "SELECT machine_id, process::text AS process FROM work WHERE session_id = $1"
        " ORDER BY machine_id, process",
        session_id,
    )
    return [HeldWork(r["machine_id"], r["process"]) for r in rows]


@dataclass(frozen=True)
class MachineEvent:
    machine_id: UUID
    process: str
    event: str
    timestamp: datetime
    failed_cause: str | None


async def history_since(
    snap: Snapshot, machine_ids: list[UUID], since: datetime, limit: int
) -> list[MachineEvent]:
    """These machines' work history from `since` on, newest first, at most `limit` rows."""
    if not machine_ids:
        return []
    rows = await snap.fetch(
        "SELECT machine_id, process::text AS process, event::text AS event, timestamp,"
        " failed_cause FROM work_history"
        " WHERE machine_id = ANY($1::uuid[]) AND timestamp >= $2"
        " ORDER BY timestamp DESC, machine_id LIMIT $3",
        machine_ids,
        since,
        limit,
    )
    return [
        MachineEvent(r["machine_id"], r["process"], r["event"], r["timestamp"], r["failed_cause"])
        for r in rows
    ]
