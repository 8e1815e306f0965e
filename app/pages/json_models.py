"""Documented shapes of the JSON twins (`?format=json` or `Accept: application/json`).

Every HTML page answers the same data as JSON; these models are what /api names and
/openapi.json details. Timestamps are ISO 8601 in UTC; bytes are {hex, base64, length}
(+ decoded protobuf).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from app.bmdb.machines import Backoff, HistoryEvent, Machine, WorkItem
from app.bmdb.reflection import Schema
from app.render.values import value_to_json


class QueryJSON(BaseModel):
    sql: str
    ms: float
    rows: int


class WorkJSON(BaseModel):
    process: str
    session_id: UUID
    component: str | None
    runtime_info: str | None
    session_created_at: datetime | None
    session_interval_seconds: int | None
    session_deadline: datetime | None
    session_alive: bool
    stale: bool


class BackoffJSON(BaseModel):
    process: str
    until: datetime
    cause: str
    last_interval_seconds: int | None
    active: bool


class MachineJSON(BaseModel):
    machine_id: UUID
    url: str
    created_at: datetime
    tags: dict[str, dict[str, Any]]
    work: list[WorkJSON]
    backoffs: list[BackoffJSON]


class HistoryEventJSON(BaseModel):
    process: str
    event: str
    timestamp: datetime
    failed_cause: str | None


def work_json(w: WorkItem) -> WorkJSON:
    return WorkJSON(
        process=w.process,
        session_id=w.session_id,
        component=w.component,
        runtime_info=w.runtime_info,
        session_created_at=w.session_created_at,
        session_interval_seconds=w.interval_seconds,
        session_deadline=w.session_deadline,
        session_alive=w.session_alive,
        stale=w.stale,
    )


def backoff_json(b: Backoff) -> BackoffJSON:
    return BackoffJSON(
        process=b.process,
        until=b.until,
        cause=b.cause,
        last_interval_seconds=b.last_interval_seconds,
        active=b.active,
    )


def machine_json(machine: Machine, schema: Schema) -> MachineJSON:
    tags = {}
    for name, values in machine.tags.items():
        tag = schema.tag(name)
        tags[name] = {k: value_to_json(tag.field(k) if tag else None, v) for k, v in values.items()}
    return MachineJSON(
        machine_id=machine.machine_id,
        url=f"/machine/{machine.machine_id}",
        created_at=machine.created_at,
        tags=tags,
        work=[work_json(w) for w in machine.work],
        backoffs=[backoff_json(b) for b in machine.backoffs],
    )


def history_json(e: HistoryEvent) -> HistoryEventJSON:
    return HistoryEventJSON(
        process=e.process, event=e.event, timestamp=e.timestamp, failed_cause=e.failed_cause
    )


class ErrorJSON(BaseModel):
    status: int
    error: str
    detail: str


def twin(model: type[BaseModel], what: str) -> dict:
    """`responses=` for a route that serves HTML or, on request, `model` as JSON."""
    return {
        200: {
            "model": model,
            "description": f"{what}: HTML, or JSON with `?format=json` / "
            "`Accept: application/json`",
            "content": {"text/html": {}},
        },
        400: {"model": ErrorJSON, "description": "invalid parameter"},
        503: {"model": ErrorJSON, "description": "BMDB unreachable"},
    }
