"""The physical limit: each page's rows in ONE hand-written statement returning JSON.

What a page needs, fetched by one prepared statement on asyncpg and decoded with
`json.loads`: no HTTP, no rendering, one round trip. The bench times these next to
webug's pages ("raw (1 query)"). They depend on the BMDB schema only (the tag tables of
schema version 1698288577 are written out by hand here, where webug reflects them),
never on webug's code, so they measure today's data layer and a rewritten one alike.

- list page: a keyset page of 100 machines (101 IDs read: the 101st says there is a next
  page) with, per machine, its created time, the summary fields the list shows of each
  tag (no protobuf blobs: a hardware report is only its presence), its work with the
  holding session's fields, an alive flag and since when (its last Started event), and
  its backoffs with an active flag;
- machine page: one machine with every column of every tag (blobs included), its work
  with sessions and its backoffs;
- live fragment: the same document and its md5, the tag an unchanged poll compares; an
  unchanged poll sends the tag it has and gets only the md5 back (no document);
- sessions list: a keyset page of 100 sessions (101 read) with the work each holds, their
  total and counts by state, per component its sessions alive and expired, its held and
  its stale work, and the stale work (held by expired sessions: its count and the 200
  longest-expired items).

Plain PostgreSQL that CockroachDB also runs (json_build_object, json_agg, CTEs, joins,
correlated subqueries, row_to_json, md5).
"""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg

# A machine's work (w) with the holding session (s), and its backoffs (b), as JSON arrays.
WORK_AGG = """json_agg(json_build_object(
        'process', w.process, 'session_id', w.session_id,
        'component', s.session_component_name, 'runtime_info', s.session_runtime_info,
        'session_created_at', s.session_created_at,
        'interval_seconds', s.session_interval_seconds, 'deadline', s.session_deadline,
        'alive', coalesce(s.session_deadline > now(), false),
        'started', (SELECT max(h.timestamp) FROM work_history h WHERE h.machine_id = w.machine_id
                    AND h.process = w.process AND h.event = 'Started')) ORDER BY w.process)"""

BACKOFF_AGG = """json_agg(json_build_object(
        'process', b.process, 'until', b.until, 'cause', b.cause,
        'last_interval_seconds', b.last_interval_seconds, 'active', b.until > now())
        ORDER BY b.until DESC)"""

# One keyset page: machine IDs after $1, optionally of one provider ($2) and status ($3).
_PAGE_IDS = """SELECT m.machine_id, m.machine_created_at FROM machines m
    WHERE m.machine_id > $1 {filter}
    ORDER BY m.machine_id LIMIT 101"""

_PROVIDED_IS = """AND EXISTS (SELECT 1 FROM machine_provided p WHERE p.machine_id = m.machine_id
        AND p.provider = $2::provider AND p.provider_status = $3::provider_status)"""


def _tag(alias: str, fields: str) -> str:
    """A tag's summary object, or null when the machine has no such tag."""
    return f"CASE WHEN {alias}.machine_id IS NOT NULL THEN json_build_object({fields}) END"


# What the list shows of each tag (app/render/tag_hints.py's summary_fields, written out).
_TAG_SUMMARIES = ",\n        ".join(
    f"'{name}', {_tag(alias, fields)}"
    for name, alias, fields in (
        (
            "Provided",
            "p",
            "'provider', p.provider, 'provider_id', p.provider_id,"
            " 'provider_location', p.provider_location,"
            " 'provider_ip_address', p.provider_ip_address, 'provider_status', p.provider_status",
        ),
        ("AgentStarted", "a", "'agent_started_at', a.agent_started_at"),
        ("AgentHeartbeat", "h", "'agent_heartbeat_at', h.agent_heartbeat_at"),
        ("HardwareReport", "hw", ""),  # its presence: the report is a blob
        ("OSInstallationRequest", "rq", "'generation', rq.generation"),
        (
            "OSInstallationReport",
            "rp",
            "'generation', rp.generation, 'os_installation_result', rp.os_installation_result",
        ),
    )
)

# The page's IDs first, then each tag table joined to exactly those (at most one row per
# machine), work and backoffs aggregated per machine: hash and index joins over the page,
# about half the time of a correlated subquery per machine and tag (8 x 100 rescans).
_LIST = f"""WITH page AS ({{ids}})
SELECT coalesce(json_agg(json_build_object(
    'machine_id', m.machine_id,
    'created_at', m.machine_created_at,
    'tags', json_build_object(
        {_TAG_SUMMARIES}),
    'work', w.work,
    'backoffs', b.backoffs
) ORDER BY m.machine_id), '[]')
FROM page m
LEFT JOIN machine_provided p ON p.machine_id = m.machine_id
LEFT JOIN machine_agent_started a ON a.machine_id = m.machine_id
LEFT JOIN machine_agent_heartbeat h ON h.machine_id = m.machine_id
LEFT JOIN machine_hardware_report hw ON hw.machine_id = m.machine_id
LEFT JOIN machine_os_installation_request rq ON rq.machine_id = m.machine_id
LEFT JOIN machine_os_installation_report rp ON rp.machine_id = m.machine_id
LEFT JOIN (SELECT w.machine_id, {WORK_AGG} AS work
    FROM work w LEFT JOIN sessions s ON s.session_id = w.session_id
    WHERE w.machine_id IN (SELECT machine_id FROM page) GROUP BY w.machine_id) w
    ON w.machine_id = m.machine_id
LEFT JOIN (SELECT b.machine_id, {BACKOFF_AGG} AS backoffs
    FROM work_backoff b
    WHERE b.machine_id IN (SELECT machine_id FROM page) GROUP BY b.machine_id) b
    ON b.machine_id = m.machine_id"""

LIST_PAGE = _LIST.format(ids=_PAGE_IDS.format(filter=""))
LIST_PAGE_FILTERED = _LIST.format(ids=_PAGE_IDS.format(filter=_PROVIDED_IS))

MACHINE = f"""SELECT json_build_object(
    'machine_id', m.machine_id,
    'created_at', m.machine_created_at,
    'tags', json_build_object(
        'Provided', (SELECT row_to_json(t) FROM machine_provided t
            WHERE t.machine_id = m.machine_id),
        'AgentStarted', (SELECT row_to_json(t) FROM machine_agent_started t
            WHERE t.machine_id = m.machine_id),
        'AgentHeartbeat', (SELECT row_to_json(t) FROM machine_agent_heartbeat t
            WHERE t.machine_id = m.machine_id),
        'HardwareReport', (SELECT row_to_json(t) FROM machine_hardware_report t
            WHERE t.machine_id = m.machine_id),
        'OSInstallationRequest', (SELECT row_to_json(t) FROM machine_os_installation_request t
            WHERE t.machine_id = m.machine_id),
        'OSInstallationReport', (SELECT row_to_json(t) FROM machine_os_installation_report t
            WHERE t.machine_id = m.machine_id)),
    'work', (SELECT {WORK_AGG} FROM work w LEFT JOIN sessions s ON s.session_id = w.session_id
        WHERE w.machine_id = m.machine_id),
    'backoffs', (SELECT {BACKOFF_AGG} FROM work_backoff b WHERE b.machine_id = m.machine_id))
FROM machines m WHERE m.machine_id = $1"""

LIVE = f"SELECT d, md5(d::text) FROM ({MACHINE}) AS live(d)"

# A poll: the document only when its md5 differs from the tag the poll sent ($2).
LIVE_POLL = f"""SELECT CASE WHEN tag IS DISTINCT FROM $2 THEN d END, tag
FROM (SELECT d, md5(d::text) AS tag FROM ({MACHINE}) AS live(d)) AS polled"""

SESSIONS = """WITH held AS (SELECT session_id, count(*) AS n FROM work GROUP BY session_id),
stale AS (SELECT w.machine_id, w.process, w.session_id, s.session_component_name AS component,
        s.session_deadline
    FROM work w JOIN sessions s ON s.session_id = w.session_id
    WHERE s.session_deadline <= now())
SELECT json_build_object(
    'sessions', (SELECT coalesce(json_agg(json_build_object(
            'session_id', s.session_id, 'component', s.session_component_name,
            'runtime_info', s.session_runtime_info, 'created_at', s.session_created_at,
            'interval_seconds', s.session_interval_seconds, 'deadline', s.session_deadline,
            'alive', s.session_deadline > now(), 'held_work', coalesce(h.n, 0))
            ORDER BY s.session_id), '[]')
        FROM (SELECT * FROM sessions ORDER BY session_id LIMIT 101) s
        LEFT JOIN held h ON h.session_id = s.session_id),
    'states', (SELECT json_build_object(
            'alive', count(*) FILTER (WHERE session_deadline > now()),
            'expired', count(*) FILTER (WHERE session_deadline <= now()),
            'all', count(*))
        FROM sessions),
    'components', (SELECT coalesce(json_agg(c ORDER BY c.component), '[]')
        FROM (SELECT s.session_component_name AS component,
                count(*) FILTER (WHERE s.session_deadline > now()) AS alive,
                count(*) FILTER (WHERE s.session_deadline <= now()) AS expired,
                coalesce(sum(h.n), 0) AS held_work,
                coalesce(sum(h.n) FILTER (WHERE s.session_deadline <= now()), 0) AS stale_work
            FROM sessions s LEFT JOIN held h ON h.session_id = s.session_id
            GROUP BY 1) c),
    'stale', json_build_object(
        'total', (SELECT count(*) FROM stale),
        'items', (SELECT coalesce(json_agg(x ORDER BY x.session_deadline, x.machine_id,
                x.process), '[]')
            FROM (SELECT * FROM stale ORDER BY session_deadline, machine_id, process
                LIMIT 200) x)))"""

FIRST = UUID(int=0)  # the first page: every machine ID is after this one


async def list_page(
    conn: asyncpg.Connection,
    after: UUID | None = None,
    provider: str | None = None,
    status: str | None = None,
) -> list[dict]:
    """A page of the machine list, optionally filtered by provider and status."""
    if provider is None:
        text = await conn.fetchval(LIST_PAGE, after or FIRST)
    else:
        text = await conn.fetchval(LIST_PAGE_FILTERED, after or FIRST, provider, status)
    return json.loads(text)


async def machine(conn: asyncpg.Connection, machine_id: UUID) -> dict | None:
    """The machine page's data."""
    text = await conn.fetchval(MACHINE, machine_id)
    return None if text is None else json.loads(text)


async def live(conn: asyncpg.Connection, machine_id: UUID) -> tuple[dict, str] | None:
    """The live fragment's data and its tag (an unchanged poll compares only the tag)."""
    row = await conn.fetchrow(LIVE, machine_id)
    return None if row is None else (json.loads(row[0]), row[1])


async def live_poll(
    conn: asyncpg.Connection, machine_id: UUID, tag: str | None
) -> tuple[dict | None, str | None]:
    """A poll that has `tag`: (the document, or None when unchanged; the current tag)."""
    row = await conn.fetchrow(LIVE_POLL, machine_id, tag)
    if row is None:
        return None, None
    return (None if row[0] is None else json.loads(row[0])), row[1]


async def sessions(conn: asyncpg.Connection) -> dict:
    """The sessions list's data: its first page, with every count it shows."""
    return json.loads(await conn.fetchval(SESSIONS))
