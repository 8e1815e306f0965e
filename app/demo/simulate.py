"""Keep a demo BMDB moving, the way its real components would.

Simulated components hold sessions and keep them alive, occasionally "crash"
(their session expires and their work goes stale) and are replaced. Shepherd
sessions start work on eligible machines and finish, fail (exponential
backoff) or cancel it, always with the matching history rows. Agents heartbeat,
some go silent, new machines get provided.

Every tick is one transaction, so webug never sees half a change. Only one
simulator writes to a database: the first to take a session-level advisory
lock; others stay idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass

import asyncpg

from app.demo import protobuf_wire as pw
from app.demo.seed import BACKOFF_INITIAL_SECONDS, BACKOFF_MAX_SECONDS, CAUSES, LOCATIONS

log = logging.getLogger(__name__)

LOCK_KEY = int.from_bytes(b"webugsim", "big")  # pg_try_advisory_lock(bigint)
SESSION_INTERVAL_SECONDS = 60
SHEPHERD_PROCESSES = ["ShepherdAccess", "ShepherdAgentStart", "ShepherdRecovery"]
# Component -> (provider its work is about, or None; sessions to keep alive).
COMPONENTS = {
    "shepherd-equinix": ("Equinix", 2),
    "shepherd-lumen": ("Lumen", 1),
    "bmdb-agent-api": (None, 2),
    "bmdb-stats": (None, 1),
    "installer": (None, 1),
}
ZERO_UUID = uuid.UUID(int=0)
MAX_ENDS_PER_TICK = 20  # keeps ticks short after adopting a big seeded backlog

# Machines a shepherd process may start on ($1: random start key, $2: provider,
# $3: process): provided by that provider, no shepherd work, no active backoff.
# An agent is considered dead once its heartbeat is 5 minutes old.
_ELIGIBLE_BASE = (
    "SELECT mp.machine_id FROM machine_provided mp WHERE mp.machine_id >= $1 "
    "AND mp.provider = $2 "
    "AND NOT EXISTS (SELECT 1 FROM work w WHERE w.machine_id = mp.machine_id "
    "  AND w.process IN ('ShepherdAccess', 'ShepherdAgentStart', 'ShepherdRecovery')) "
    "AND NOT EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = mp.machine_id "
    "  AND b.process = $3 AND b.until > now()) "
)
ELIGIBLE = {
    "ShepherdAccess": _ELIGIBLE_BASE,
    "ShepherdAgentStart": _ELIGIBLE_BASE
    + ("AND NOT EXISTS (SELECT 1 FROM machine_agent_started a WHERE a.machine_id = mp.machine_id)"),
    "ShepherdRecovery": _ELIGIBLE_BASE
    + (
        "AND EXISTS (SELECT 1 FROM machine_agent_started a LEFT JOIN machine_agent_heartbeat h "
        "USING (machine_id) WHERE a.machine_id = mp.machine_id AND a.agent_started_at < now() - "
        "interval '5 minutes' AND (h.agent_heartbeat_at IS NULL OR "
        "h.agent_heartbeat_at < now() - interval '5 minutes'))"
    ),
}


@dataclass
class Rates:
    """Per-tick probabilities; tests turn them up to provoke every path."""

    session_death: float = 1 / 900
    start_work: float = 0.5  # per shepherd session
    end_work: float = 0.05  # per running work item (at most MAX_ENDS_PER_TICK)
    fail: float = 0.2  # share of ended work that failed ...
    cancel: float = 0.05  # ... or was canceled (the rest finished)
    agent_goes_silent: float = 0.02
    new_machine: float = 0.05
    provisioning_done: float = 0.2
    hardware_report: float = 0.05
    installation: float = 0.02


@dataclass
class _Session:
    id: uuid.UUID
    component: str


class Simulator:
    """State kept between ticks: own sessions, silent agents, heartbeat cursor."""

    def __init__(self, rng: random.Random | None = None, rates: Rates | None = None):
        self.rng = rng or random.Random()
        self.rates = rates or Rates()
        self.sessions: list[_Session] | None = None  # None: not adopted yet
        self.silent: set[uuid.UUID] = set()
        self.heartbeat_cursor = ZERO_UUID
        self.ended: set[uuid.UUID] = set()
        self.ticks = 0

    def start_key(self) -> uuid.UUID:
        """A random point in machine_id order, reproducible from the rng."""
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    async def tick(self, conn: asyncpg.Connection) -> None:
        # Machines whose work ended this tick start nothing new in it: both
        # history rows would carry the same now() and their order would be lost.
        self.ended = set()
        # If the transaction rolls back, so must the state that mirrors it (or
        # we would poke, and start work for, sessions that were never created).
        saved = (None if self.sessions is None else list(self.sessions), self.heartbeat_cursor)
        try:
            async with conn.transaction():
                await self._sessions(conn)
                await self._end_work(conn)
                await self._start_work(conn)
                await self._heartbeats(conn)
                await self._fleet_changes(conn)
        except BaseException:
            self.sessions, self.heartbeat_cursor = saved
            raise
        self.ticks += 1

    # --- sessions ---------------------------------------------------------------

    async def _sessions(self, conn) -> None:
        if self.sessions is None:
            # Adopt live sessions (seeded ones, or a previous simulator's), so a
            # restart does not turn every session stale at once.
            rows = await conn.fetch(
                "SELECT session_id, session_component_name FROM sessions "
                "WHERE session_deadline > now() AND session_component_name = ANY($1::text[])",
                list(COMPONENTS),
            )
            self.sessions = [_Session(r[0], r[1]) for r in rows]
        expired = {
            r[0]
            for r in await conn.fetch(
                "SELECT session_id FROM sessions WHERE session_id = ANY($1::uuid[]) "
                "AND session_deadline <= now()",
                [s.id for s in self.sessions],
            )
        }
        for session in list(self.sessions):
            if session.id in expired:  # e.g. this process was paused for too long
                self.sessions.remove(session)
                log.info("%s session %s expired; replacing it", session.component, session.id)
            elif self.rng.random() < self.rates.session_death:
                # A crash: stop poking. Its work stays, held by a dead session.
                self.sessions.remove(session)
                log.info("simulated crash of %s session %s", session.component, session.id)
        for component, (_, wanted) in COMPONENTS.items():
            for _ in range(wanted - sum(s.component == component for s in self.sessions)):
                self.sessions.append(await self._new_session(conn, component))
        # Poke every interval/2, i.e. once less than half the interval is left.
        await conn.execute(
            "UPDATE sessions SET session_deadline = now() + session_interval_seconds * "
            "interval '1 second' WHERE session_id = ANY($1::uuid[]) AND session_deadline < "
            "now() + session_interval_seconds * interval '0.5 second'",
            [s.id for s in self.sessions],
        )

    async def _new_session(self, conn, component: str) -> _Session:
        # New identities come from uuid4, not the rng: a simulator seeded like
        # the fleet would otherwise recreate the seed's ids.
        session = _Session(uuid.uuid4(), component)
        info = f"host={component}-sim-{self.rng.getrandbits(24):06x} pid=1 version=demo"
        await conn.execute(
            "INSERT INTO sessions (session_id, session_component_name, session_runtime_info, "
            "session_created_at, session_interval_seconds, session_deadline) "
            "VALUES ($1, $2, $3, now(), $4, now() + $4::bigint * interval '1 second')",
            session.id,
            component,
            info,
            SESSION_INTERVAL_SECONDS,
        )
        return session

    # --- work -----------------------------------------------------------------------

    async def _end_work(self, conn) -> None:
        rows = await conn.fetch(
            "SELECT machine_id, session_id, process::text FROM work "
            "WHERE session_id = ANY($1::uuid[]) ORDER BY machine_id, process",
            [s.id for s in self.sessions],
        )
        for machine_id, session_id, process in rows:
            if len(self.ended) >= MAX_ENDS_PER_TICK or self.rng.random() >= self.rates.end_work:
                continue
            self.ended.add(machine_id)
            await conn.execute(
                "DELETE FROM work WHERE machine_id = $1 AND session_id = $2 AND process = $3",
                machine_id,
                session_id,
                process,
            )
            roll = self.rng.random()
            if roll < self.rates.fail:
                await self._fail(conn, machine_id, process)
            elif roll < self.rates.fail + self.rates.cancel:
                await _history(conn, machine_id, process, "Canceled")
            else:
                await self._finish(conn, machine_id, process)

    async def _fail(self, conn, machine_id: uuid.UUID, process: str) -> None:
        ip = await conn.fetchval(
            "SELECT provider_ip_address FROM machine_provided WHERE machine_id = $1", machine_id
        )
        cause = CAUSES[process](self.rng, ip or "0.0.0.0")
        # Exponential backoff: double the last period (capped), like the shepherd.
        await conn.execute(
            "INSERT INTO work_backoff AS b (machine_id, process, cause, until, "
            "last_interval_seconds) VALUES ($1, $2, $3, now() + $4::bigint * interval '1 second', "
            "$4) ON CONFLICT (machine_id, process) DO UPDATE SET cause = EXCLUDED.cause, "
            "last_interval_seconds = LEAST(COALESCE(b.last_interval_seconds * 2, $4), $5), "
            "until = now() + LEAST(COALESCE(b.last_interval_seconds * 2, $4), $5) "
            "* interval '1 second'",
            machine_id,
            process,
            cause,
            BACKOFF_INITIAL_SECONDS,
            BACKOFF_MAX_SECONDS,
        )
        await _history(conn, machine_id, process, "Failed", cause)

    async def _finish(self, conn, machine_id: uuid.UUID, process: str) -> None:
        # Success clears any backoff, as upstream does.
        await conn.execute(
            "DELETE FROM work_backoff WHERE machine_id = $1 AND process = $2", machine_id, process
        )
        if process in ("ShepherdAgentStart", "ShepherdRecovery"):
            # A (re)started agent: new key, and it checks in right away.
            await conn.execute(
                "INSERT INTO machine_agent_started (machine_id, agent_started_at, "
                "agent_public_key) VALUES ($1, now(), $2) ON CONFLICT (machine_id) DO UPDATE "
                "SET agent_started_at = now(), agent_public_key = EXCLUDED.agent_public_key",
                machine_id,
                self.rng.randbytes(32),
            )
            await conn.execute(
                "INSERT INTO machine_agent_heartbeat (machine_id, agent_heartbeat_at) "
                "VALUES ($1, now()) ON CONFLICT (machine_id) DO UPDATE "
                "SET agent_heartbeat_at = now()",
                machine_id,
            )
            self.silent.discard(machine_id)
        await _history(conn, machine_id, process, "Finished")

    async def _start_work(self, conn) -> None:
        for session in self.sessions:
            provider = COMPONENTS[session.component][0]
            if provider is None or self.rng.random() >= self.rates.start_work:
                continue
            process = self.rng.choices(SHEPHERD_PROCESSES, (60, 25, 15))[0]
            machine_id = await _pick(conn, ELIGIBLE[process], self.start_key(), provider, process)
            if machine_id is not None and machine_id not in self.ended:
                await conn.execute(
                    "INSERT INTO work (machine_id, session_id, process) VALUES ($1, $2, $3)",
                    machine_id,
                    session.id,
                    process,
                )
                await _history(conn, machine_id, process, "Started")

    # --- agents and fleet --------------------------------------------------------------

    async def _heartbeats(self, conn) -> None:
        """Sweep through agents so each heartbeats about every 60 ticks."""
        if self.rng.random() < self.rates.agent_goes_silent:
            silent = await _pick(
                conn,
                "SELECT machine_id FROM machine_agent_heartbeat WHERE machine_id >= $1",
                self.start_key(),
            )
            if silent is not None:
                self.silent.add(silent)
        # Agents silent for 5 minutes stay silent until recovered (see ELIGIBLE).
        at_end, last = await conn.fetchrow(
            "WITH size AS (SELECT count(*) / 60 + 10 AS n FROM machine_agent_heartbeat),"
            " batch AS (SELECT machine_id FROM machine_agent_heartbeat WHERE machine_id > $1"
            "  ORDER BY machine_id LIMIT (SELECT n FROM size)),"
            " beat AS (UPDATE machine_agent_heartbeat h SET agent_heartbeat_at = now() FROM batch"
            "  WHERE h.machine_id = batch.machine_id AND NOT h.machine_id = ANY($2::uuid[])"
            "  AND h.agent_heartbeat_at > now() - interval '5 minutes')"
            " SELECT (SELECT count(*) FROM batch) < (SELECT n FROM size),"
            "  (SELECT machine_id FROM batch ORDER BY 1 DESC LIMIT 1)",  # no max(uuid) before PG 16
            self.heartbeat_cursor,
            list(self.silent),
        )
        self.heartbeat_cursor = ZERO_UUID if at_end else last

    async def _fleet_changes(self, conn) -> None:
        rates, rng = self.rates, self.rng
        if rng.random() < rates.new_machine:
            await self._new_machine(conn)
        if rng.random() < rates.provisioning_done:
            machine_id = await _pick(
                conn,
                "SELECT machine_id FROM machine_provided JOIN machines USING (machine_id) "
                "WHERE provider_status = 'Provisioning' AND machine_created_at < now() - "
                "interval '20 seconds' AND machine_id >= $1",
                self.start_key(),
            )
            if machine_id is not None:
                await conn.execute(
                    "UPDATE machine_provided SET provider_status = 'Running', provider_ip_address"
                    " = COALESCE(provider_ip_address, $2) WHERE machine_id = $1",
                    machine_id,
                    f"147.75.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                )
        if rng.random() < rates.hardware_report:
            machine_id = await _pick(
                conn,
                "SELECT machine_id FROM machine_agent_heartbeat h WHERE machine_id >= $1 "
                "AND NOT EXISTS (SELECT 1 FROM machine_hardware_report r "
                "WHERE r.machine_id = h.machine_id)",
                self.start_key(),
            )
            if machine_id is not None:
                await conn.execute(
                    "INSERT INTO machine_hardware_report (machine_id, hardware_report_raw) "
                    "VALUES ($1, $2)",
                    machine_id,
                    pw.hardware_report(rng),
                )
        if rng.random() < rates.installation:
            await self._installation(conn)

    async def _new_machine(self, conn) -> None:
        rng = self.rng
        machine_id = uuid.uuid4()
        provider = "Equinix" if rng.random() < 0.85 else "Lumen"
        provider_id = str(uuid.uuid4()) if provider == "Equinix" else f"lumen-{machine_id.hex[:12]}"
        await conn.execute(
            "INSERT INTO machines (machine_id, machine_created_at) VALUES ($1, now())", machine_id
        )
        await conn.execute(
            "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_location, "
            "provider_status) VALUES ($1, $2, $3, $4, 'Provisioning')",
            machine_id,
            provider,
            provider_id,
            rng.choice(LOCATIONS[provider]),
        )
        log.debug("simulated new %s machine %s", provider, machine_id)

    async def _installation(self, conn) -> None:
        """Request an OS installation, or report on a pending request."""
        machine_id = await _pick(
            conn,
            "SELECT machine_id FROM machine_hardware_report r WHERE machine_id >= $1 "
            "AND NOT EXISTS (SELECT 1 FROM machine_os_installation_report p "
            "WHERE p.machine_id = r.machine_id)",
            self.start_key(),
        )
        if machine_id is None:
            return
        generation = await conn.fetchval(
            "SELECT generation FROM machine_os_installation_request WHERE machine_id = $1",
            machine_id,
        )
        if generation is None:
            await conn.execute(
                "INSERT INTO machine_os_installation_request (machine_id, generation, "
                "os_installation_request_raw) VALUES ($1, 1, $2)",
                machine_id,
                pw.os_installation_request(self.rng, 1),
            )
            return
        error = "while writing ESP: short write on /dev/sda1" if self.rng.random() < 0.2 else None
        await conn.execute(
            "INSERT INTO machine_os_installation_report (machine_id, generation, "
            "os_installation_result, os_installation_report_raw) VALUES ($1, $2, $3, $4)",
            machine_id,
            generation,
            "Error" if error else "Success",
            pw.os_installation_report(generation, error),
        )


async def _pick(conn, query: str, start: uuid.UUID, *args) -> uuid.UUID | None:
    """A pseudo-random machine from a query filtering `machine_id >= $1`.

    Walks the primary key from a random point (wrapping around once) instead
    of `ORDER BY random()`, which would sort the whole fleet every tick.
    """
    found = await conn.fetchval(f"{query} ORDER BY 1 LIMIT 1", start, *args)
    if found is None:
        found = await conn.fetchval(f"{query} ORDER BY 1 LIMIT 1", ZERO_UUID, *args)
    return found


async def _history(conn, machine_id, process: str, event: str, cause: str | None = None):
    await conn.execute(
        "INSERT INTO work_history (machine_id, process, event, timestamp, failed_cause) "
        "VALUES ($1, $2, $3, now(), $4)",
        machine_id,
        process,
        event,
        cause,
    )


async def simulate_ticks(
    conn: asyncpg.Connection,
    n: int,
    *,
    rng: random.Random | None = None,
    simulator: Simulator | None = None,
) -> Simulator:
    """Run n ticks back to back on conn (no sleeping, no advisory lock): for tests."""
    simulator = simulator or Simulator(rng)
    for _ in range(n):
        await simulator.tick(conn)
    return simulator


async def run_simulator(
    dsn: str,
    *,
    tick_seconds: float = 1.0,
    stop: asyncio.Event | None = None,
    rng_seed: int | None = None,
    rates: Rates | None = None,
) -> None:
    """Simulate BMDB components on dsn until stop is set (or the task is cancelled)."""
    stop = stop or asyncio.Event()
    try:
        conn = await _connect(dsn)
    except (OSError, asyncpg.PostgresError) as e:
        log.error("simulator cannot connect, not simulating: %s", e)
        return
    try:
        leader = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        if leader:
            log.info("simulator running, one tick every %.1fs", tick_seconds)
            await _loop(conn, Simulator(random.Random(rng_seed), rates), tick_seconds, stop)
    finally:
        await conn.close()  # also releases the advisory lock
    if not leader:
        log.info("another simulator is running on this database; this one stays idle")
        await stop.wait()


async def _connect(dsn: str) -> asyncpg.Connection:
    """asyncpg.connect, but cancellation waits for it to finish, then closes.

    Cancelled mid-handshake, asyncpg leaves a future whose exception nobody
    retrieves ("unexpected connection_lost() call"), logged by asyncio as an
    error at shutdown; a connect takes milliseconds, so just let it complete.
    """
    connecting = asyncio.ensure_future(asyncpg.connect(dsn))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await (await connecting).close()
        raise


async def _loop(conn, simulator: Simulator, tick_seconds: float, stop: asyncio.Event) -> None:
    failing = False
    while not stop.is_set():
        try:
            await simulator.tick(conn)
        except asyncpg.PostgresError as e:
            # E.g. a not yet migrated database, or a conflict with a manual edit:
            # report once per streak and keep going.
            if not failing:
                log.warning("simulator tick failed (will keep trying): %s", e)
            failing = True
        except (OSError, asyncpg.InterfaceError) as e:
            log.error("simulator lost its database connection, stopping: %s", e)
            return
        else:
            if failing:
                log.info("simulator ticks succeed again")
            failing = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_seconds)
