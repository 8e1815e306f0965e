"""What the BMDB already determines will happen, within a horizon: one statement.

- `backoff_ends`: an active backoff's `until`, one entry per backoff;
- `recovery_due`: the moment a workflow's heartbeat thresholds pass (AgentRecovery's:
  an agent that never heartbeated is due `agent_started_at` + 30 min, one whose last
  heartbeat is late (older than WEBUG_HEARTBEAT_LATE_SECONDS) that heartbeat + 10 min),
  for machines that nothing else keeps out of the workflow: every other condition holds
  now, and no backoff of the workflow's is still active then. At that instant the
  machine is in the component's selection, unless something changed in between. A
  healthy agent that heartbeated seconds ago is not forecast: its next heartbeat moves
  the moment (listing those would list the fleet).

Cost: active backoffs within the horizon (an index-only scan of work_backoff's
(process, machine_id) INCLUDE (until) index); agents that never heartbeated and started
within the threshold, and late heartbeats within theirs (a scan of the heartbeat table,
which has no index on the time), each few machines checked against the conditions by
their primary keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from app.bmdb import tables
from app.bmdb.columns import parse_timestamp
from app.bmdb.connection import Reader
from app.bmdb.formulas import correlated
from app.bmdb.reflection import Schema
from app.bmdb.sql import SqlWhere
from app.bmdb.workflows import PROCESS, CompiledWorkflow, Fleet

BACKOFF_ENDS, RECOVERY_DUE = "backoff_ends", "recovery_due"
# Conditions whose moment the forecast computes; every other one must hold now.
_TIMED = ("silent", "due", "no_backoff")


@dataclass(frozen=True)
class Upcoming:
    machine_id: UUID
    at: datetime
    what: str  # BACKOFF_ENDS or RECOVERY_DUE
    process: str | None  # the backoff's
    workflow: str | None  # the workflow it becomes due for


@dataclass(frozen=True)
class Forecast:
    now: datetime  # the statement's now()
    until: datetime  # now + the horizon
    upcoming: list[Upcoming]  # by time


def _due_sql(w: CompiledWorkflow, params: SqlWhere, horizon: str, late: timedelta) -> str:
    """The moments `w`'s heartbeat thresholds pass, for machines nothing else keeps out."""
    beat = w.spec.heartbeat
    assert beat is not None
    silent = params.param(timedelta(minutes=beat.silent_after_minutes))
    never = params.param(timedelta(minutes=beat.never_after_minutes))
    late_after = params.param(late)
    now_holding = [correlated(c.holds, params, "m", joins=False)
                   for c in w.conditions if c.kind not in _TIMED]  # fmt: skip
    backoff = "TRUE"
    if w.spec.no_backoff_of:
        backoff = (
            "NOT EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = m.machine_id"
            f" AND b.process = ANY({params.param(w.spec.no_backoff_of)}::{PROCESS}[])"
            " AND b.until > c.at)"
        )
    return f"""
  SELECT c.machine_id, c.at, '{RECOVERY_DUE}', NULL, {params.param(w.name)}::text
  FROM (
    SELECT a.machine_id, a.agent_started_at + {never}::interval AS at
    FROM {tables.AGENT_STARTED} a
    WHERE a.agent_started_at > now() - {never}::interval
      AND NOT EXISTS (SELECT 1 FROM {tables.HEARTBEAT} h WHERE h.machine_id = a.machine_id)
    UNION ALL
    SELECT h.machine_id, h.agent_heartbeat_at + {silent}::interval
    FROM {tables.HEARTBEAT} h
    WHERE h.agent_heartbeat_at <= now() - {late_after}::interval
      AND h.agent_heartbeat_at > now() - {silent}::interval
  ) c JOIN machines m ON m.machine_id = c.machine_id
  WHERE c.at <= now() + {horizon}::interval AND {" AND ".join([*now_holding, backoff])}"""


def forecast_sql(
    schema: Schema, fleet: Fleet, horizon: timedelta, late: timedelta
) -> tuple[str, list[object]]:
    """The statement and its parameters."""
    params = SqlWhere()
    h = params.param(horizon)
    parts = []
    if "work_backoff" in schema.tables:
        parts.append(
            f"SELECT b.machine_id, b.until, '{BACKOFF_ENDS}', b.process::text, NULL::text"
            f" FROM work_backoff b WHERE b.until > now() AND b.until <= now() + {h}::interval"
        )
    parts += [_due_sql(w, params, h, late) for w in fleet.known if w.spec.heartbeat]
    union = " UNION ALL ".join(parts) or "SELECT NULL::uuid, NULL::timestamptz, '', '', '' LIMIT 0"
    sql = (
        f"SELECT json_build_object('now', now(), 'until', now() + {h}::interval,"
        " 'upcoming', coalesce((SELECT json_agg(json_build_array(u.machine_id, u.at, u.what,"
        " u.process, u.workflow) ORDER BY u.at, u.what, u.machine_id)"
        f" FROM ({union}) u (machine_id, at, what, process, workflow)), '[]'::json)) AS doc"
    )
    return sql, params.params


async def forecast(
    reader: Reader, schema: Schema, fleet: Fleet, horizon: timedelta, late: timedelta
) -> Forecast:
    sql, params = forecast_sql(schema, fleet, horizon, late)
    doc = reader.parse(await reader.fetchval(sql, *params))
    return Forecast(
        now=parse_timestamp(doc["now"]),
        until=parse_timestamp(doc["until"]),
        upcoming=[
            Upcoming(UUID(m), parse_timestamp(at), what, process, workflow)
            for m, at, what, process, workflow in doc["upcoming"]
        ],
    )
