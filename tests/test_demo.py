"""The demo fleet: seeding (counts, shape, consistency) and the simulator."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime

import asyncpg
import pytest

from app.demo import protobuf_wire as pw
from app.demo.seed import BACKOFF_MAX_SECONDS, SUMMARY_FIELDS, build_fleet, seed_fleet
from app.demo.simulate import (
    COMPONENTS,
    LOCK_KEY,
    Rates,
    Simulator,
    run_simulator,
    simulate_ticks,
)

# --- protobuf wire format ------------------------------------------------------------


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def walk(buf: bytes) -> dict[int, list]:
    """Parse one message level: field -> values; asserts the buffer is consumed exactly."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        assert field > 0, f"invalid field number at {pos}"
        if wire_type == 0:
            value, pos = read_varint(buf, pos)
        elif wire_type == 2:
            size, pos = read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            value, pos = buf[pos : pos + width], pos + width
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
        assert pos <= len(buf), "field runs past the end"
        fields.setdefault(field, []).append(value)
    return fields


def check_hardware_report(raw: bytes) -> None:
    report = walk(raw)
    node = walk(report[1][0])
    assert node[8][0] >= 1 << 30  # memory
    for cpu in node[10]:
        assert walk(cpu)[8][0] > 0  # cores
    for disk in node[11]:
        assert walk(disk)[6][0] > 0  # capacity
    for nic in node[12]:
        assert len(walk(nic)[1][0]) == 6  # MAC
    for warning in report.get(2, []):
        warning.decode()


def test_varint_encoding():
    assert pw.varint(0) == b"\x00"
    assert pw.varint(300) == b"\xac\x02"
    assert pw.varint(-1) == b"\xff" * 9 + b"\x01"  # int64 two's complement
    assert read_varint(pw.varint(2**40 + 7), 0) == (2**40 + 7, 6)
    fixed = walk(pw.message(pw.f_fixed64(1, 5), pw.f_float(2, 1.5), pw.f_varint(3, 0)))
    assert fixed == {1: [(5).to_bytes(8, "little")], 2: [b"\x00\x00\xc0\x3f"]}


def test_messages_are_valid_wire_format():
    rng = random.Random(1)
    for _ in range(50):
        check_hardware_report(pw.hardware_report(rng))
    request = walk(pw.os_installation_request(rng, 3))
    assert request[1] == [3] and walk(request[2][0])[1][0].startswith(b"https://")
    assert walk(pw.os_installation_report(2)) == {1: [2], 2: [b""]}
    assert walk(walk(pw.os_installation_report(1, "boom"))[3][0]) == {1: [b"boom"]}


# --- seeding -------------------------------------------------------------------------

TABLES = SUMMARY_FIELDS  # table -> SeedSummary field

# History invariants of a BMDB, seeded or simulated (each query counts violations).
HISTORY_VIOLATIONS = {
    # Per (machine, process), events alternate: Started, then one end event.
    "end without Started, or Started twice": """
        WITH e AS (SELECT event, lag(event) OVER (PARTITION BY machine_id, process
                                                  ORDER BY timestamp) AS prev
                   FROM work_history)
        SELECT count(*) FROM e
        WHERE (event <> 'Started' AND prev IS DISTINCT FROM 'Started')
           OR (event = 'Started' AND prev = 'Started')""",
    # Current work: its last event is Started, at/after its session began.
    "work without a Started event in its session": """
        SELECT count(*) FROM work w JOIN sessions s USING (session_id)
        WHERE NOT EXISTS (
            SELECT 1 FROM work_history h
            WHERE h.machine_id = w.machine_id AND h.process = w.process AND h.event = 'Started'
              AND h.timestamp >= s.session_created_at AND h.timestamp <= s.session_deadline
              AND h.timestamp = (SELECT max(timestamp) FROM work_history l
                                 WHERE l.machine_id = w.machine_id AND l.process = w.process))""",
    "backoff without a Failed event carrying its cause": """
        SELECT count(*) FROM work_backoff b
        WHERE NOT EXISTS (
            SELECT 1 FROM work_history h
            WHERE h.machine_id = b.machine_id AND h.process = b.process AND h.event = 'Failed'
              AND h.failed_cause = b.cause)""",
    # The last failure set the backoff: Failed at until - last_interval_seconds.
    "backoff period not matching its last failure": """
        SELECT count(*) FROM work_backoff b
        WHERE b.last_interval_seconds IS NOT NULL AND b.until - b.last_interval_seconds
              * interval '1 second' <> (SELECT max(timestamp) FROM work_history h
                                        WHERE h.machine_id = b.machine_id
                                          AND h.process = b.process AND h.event = 'Failed')""",
    # A machine whose last attempt failed is in backoff (deleted machines lose theirs).
    "last failure without backoff": """
        WITH last AS (SELECT DISTINCT ON (machine_id, process) machine_id, process, event,
                             failed_cause
                      FROM work_history WHERE event <> 'Started'
                      ORDER BY machine_id, process, timestamp DESC)
        SELECT count(*) FROM last JOIN machines USING (machine_id)
        WHERE event = 'Failed' AND NOT EXISTS (
            SELECT 1 FROM work_backoff b WHERE b.machine_id = last.machine_id
              AND b.process = last.process AND b.cause = last.failed_cause)""",
}


async def assert_history_consistent(conn: asyncpg.Connection) -> None:
    violations = {name: await conn.fetchval(sql) for name, sql in HISTORY_VIOLATIONS.items()}
    assert violations == dict.fromkeys(HISTORY_VIOLATIONS, 0)


@pytest.fixture
async def seeded(migrated_db_dsn):
    """(dsn, summary, connection) of a freshly seeded 300-machine fleet."""
    summary = await seed_fleet(migrated_db_dsn, 300, rng_seed=1)
    conn = await asyncpg.connect(migrated_db_dsn)
    yield migrated_db_dsn, summary, conn
    await conn.close()


async def test_seed_inserts_what_it_reports(seeded):
    _, summary, conn = seeded
    for table, attribute in TABLES.items():
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == getattr(summary, attribute)
    deleted = await conn.fetchval(
        "SELECT count(DISTINCT machine_id) FROM work_history "
        "WHERE machine_id NOT IN (SELECT machine_id FROM machines)"
    )
    assert deleted == summary.deleted_machines > 0
    assert summary.machines == 300
    assert 0.8 < summary.provided / summary.machines < 0.97


async def test_seed_distributions(seeded):
    _, summary, conn = seeded
    work = await conn.fetch(
        "SELECT s.session_deadline < now() AS stale, count(*) FROM work "
        "JOIN sessions s USING (session_id) GROUP BY 1"
    )
    assert {r["stale"] for r in work} == {True, False}  # stale work and live work
    backoffs = await conn.fetch(
        "SELECT until > now() AS active, count(*) FROM work_backoff GROUP BY 1"
    )
    assert {r["active"] for r in backoffs} == {True, False}
    providers = {
        r[0] for r in await conn.fetch("SELECT DISTINCT provider::text FROM machine_provided")
    }
    assert {"Equinix", "Lumen"} <= providers
    statuses = {
        r[0]
        for r in await conn.fetch("SELECT DISTINCT provider_status::text FROM machine_provided")
    }
    assert {"Running", "Provisioning", None} <= statuses
    alive = await conn.fetchval(
        "SELECT count(DISTINCT session_component_name) FROM sessions WHERE session_deadline > now()"
    )
    assert alive == 5
    stale_heartbeats = await conn.fetchval(
        "SELECT count(*) FROM machine_agent_heartbeat "
        "WHERE agent_heartbeat_at < now() - interval '1 hour'"
    )
    assert 0 < stale_heartbeats < summary.agent_heartbeats / 2
    for (raw,) in await conn.fetch("SELECT hardware_report_raw FROM machine_hardware_report"):
        check_hardware_report(raw)
    assert summary.hardware_reports > summary.agent_started / 2
    results = {
        r[0]
        for r in await conn.fetch(
            "SELECT os_installation_result::text FROM machine_os_installation_report"
        )
    }
    assert results == {"Success", "Error"}


async def test_seed_history_is_consistent(seeded):
    await assert_history_consistent(seeded[2])


def test_seed_is_reproducible():
    now = datetime(2024, 5, 1, tzinfo=UTC)
    assert build_fleet(40, rng_seed=9, now=now) == build_fleet(40, rng_seed=9, now=now)
    assert build_fleet(40, rng_seed=9, now=now) != build_fleet(40, rng_seed=10, now=now)


# --- simulator -----------------------------------------------------------------------


async def backoffs(conn) -> dict[tuple, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT machine_id, process::text, until, last_interval_seconds, cause FROM work_backoff"
    )
    return {(r["machine_id"], r["process"]): r for r in rows}


async def test_simulator_changes_the_fleet_consistently(seeded):
    _, _, conn = seeded
    history_before = await conn.fetchval("SELECT count(*) FROM work_history")
    backoffs_before = await backoffs(conn)
    machines_before = await conn.fetchval("SELECT count(*) FROM machines")
    start = await conn.fetchval("SELECT now()")
    sim = Simulator(random.Random(3), Rates(fail=0.5, new_machine=0.3, session_death=0.02))
    await simulate_ticks(conn, 30, simulator=sim)

    events = dict(
        await conn.fetch(
            "SELECT event::text, count(*) FROM work_history WHERE timestamp > $1 GROUP BY 1",
            start,
        )
    )
    assert sum(events.values()) == (
        await conn.fetchval("SELECT count(*) FROM work_history") - history_before
    )
    assert events.keys() >= {"Started", "Finished", "Failed"}
    assert await conn.fetchval("SELECT count(*) FROM machines") > machines_before
    assert await conn.fetchval(
        "SELECT count(*) FROM machine_agent_heartbeat WHERE agent_heartbeat_at > $1", start
    )
    await assert_history_consistent(conn)

    # Each failure pushed its backoff further out, with a doubled (capped) period.
    changed = 0
    for key, after in (await backoffs(conn)).items():
        before = backoffs_before.get(key)
        if before is None:
            assert after["last_interval_seconds"] == 60
        elif after["until"] != before["until"]:
            changed += 1
            assert after["until"] > before["until"]
            if before["last_interval_seconds"] is not None:
                assert after["last_interval_seconds"] == min(
                    before["last_interval_seconds"] * 2, BACKOFF_MAX_SECONDS
                )
    assert len(await backoffs(conn)) > len(backoffs_before) or changed


async def test_simulator_sessions_live_and_die(seeded):
    _, _, conn = seeded
    wanted = sum(count for _, count in COMPONENTS.values())
    sim = await simulate_ticks(conn, 1, rng=random.Random(1))
    own = [s.id for s in sim.sessions]
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM sessions WHERE session_id = ANY($1) AND session_deadline > now()",
            own,
        )
        == len(own)
        >= wanted
    )
    held = await conn.fetchval("SELECT count(*) FROM work WHERE session_id = ANY($1)", own)
    sim.rates = Rates(session_death=1.0, end_work=0)  # every session crashes and is replaced
    await simulate_ticks(conn, 1, simulator=sim)
    assert not set(own) & {s.id for s in sim.sessions}
    assert len(sim.sessions) == wanted
    # The crashed sessions keep their work: it goes stale when their deadline passes.
    assert await conn.fetchval("SELECT count(*) FROM work WHERE session_id = ANY($1)", own) == held


async def test_failed_tick_leaves_no_phantom_sessions(seeded):
    _, _, conn = seeded
    sim = await simulate_ticks(conn, 1, rng=random.Random(2))
    sim.rates = Rates(session_death=1.0)  # the next tick replaces every session ...
    await conn.execute("ALTER TABLE machine_agent_heartbeat RENAME TO heartbeat_elsewhere")
    with pytest.raises(asyncpg.UndefinedTableError):  # ... but fails half-way
        await sim.tick(conn)
    await conn.execute("ALTER TABLE heartbeat_elsewhere RENAME TO machine_agent_heartbeat")
    sim.rates = Rates(session_death=0)
    await simulate_ticks(conn, 2, simulator=sim)
    own = [s.id for s in sim.sessions]
    assert await conn.fetchval(
        "SELECT count(*) FROM sessions WHERE session_id = ANY($1) AND session_deadline > now()",
        own,
    ) == len(own)


async def wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


def simulator_lock_held(conn):
    # pg_locks shows a bigint advisory key as two 32-bit halves. Advisory locks belong to a
    # database: another database's simulator on the same server holds its own.
    return conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid::bigint = $1 AND objid::bigint = $2 AND database ="
        " (SELECT oid FROM pg_database WHERE datname = current_database()))",
        LOCK_KEY >> 32,
        LOCK_KEY & 0xFFFFFFFF,
    )


async def wait_for_ticks(conn) -> None:
    """Until a running simulator holds the lock and has written history."""
    start = await conn.fetchval("SELECT now()")
    await wait_for(lambda: simulator_lock_held(conn))
    await wait_for(
        lambda: conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM work_history WHERE timestamp > $1)", start
        )
    )


async def test_only_one_simulator_writes(seeded, caplog):
    dsn, _, conn = seeded
    caplog.set_level(logging.INFO, logger="app.demo.simulate")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(run_simulator(dsn, tick_seconds=0.02, stop=stop_first))
    await wait_for_ticks(conn)
    second = asyncio.create_task(run_simulator(dsn, tick_seconds=0.02, stop=stop_second))
    await wait_for(lambda: _logged(caplog, "this one stays idle"))
    # The idle one keeps no connection open.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        == 2
    )
    stop_first.set()
    await asyncio.wait_for(first, 5)
    stop_second.set()
    await asyncio.wait_for(second, 5)
    assert not await simulator_lock_held(conn)  # released when the first stopped


async def _logged(caplog, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_cancelling_the_simulator_is_clean(seeded):
    dsn, _, conn = seeded
    task = asyncio.create_task(run_simulator(dsn, tick_seconds=0.01))
    await wait_for_ticks(conn)
    await asyncio.sleep(0.03)  # mid-tick or mid-wait: either must be fine
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(
        lambda: conn.fetchval(
            "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = current_database()"
        )
    )
    assert not await simulator_lock_held(conn)
