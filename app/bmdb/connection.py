"""The BMDB connection pool: read-only sessions, one statement per page.

Pages never see a connection: they get a `Reader` that runs each statement in the
dialect's form (a statement is its own consistent read) and records it for the footer.
A statement that loses a conflict with a writer (`CONFLICTS`) runs once more; a second
loss reaches the page's error handler (a 503 with Retry-After, app/http/errors.py).

Every connection starts with the settings both dialects accept (in the start-up
packet); a new one then detects the dialect (the first only) and runs that dialect's
session settings once, never per page: PostgreSQL's planner settings (see
`POSTGRESQL_SESSION`); CockroachDB would refuse them and gets none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import stamina

from app.config import Settings

# PostgreSQL only, set once per connection (CockroachDB refuses settings it does not know).
POSTGRESQL_SESSION = (
    # Join the list's filter conditions (semi-joins, one per filter) in the order written,
    # rare ones first (app.bmdb.filters.build_where), instead of searching every order:
    # with the default of 8, twenty-five repeats of one tag filter planned for seconds.
    # Explicit JOINs of other pages, of two or three tables, keep their written order too.
    ("join_collapse_limit", "1"),
    ("from_collapse_limit", "1"),
    # No JIT compilation: webug's statements run in milliseconds to a second, and the
    # facets' counts join the fleet with grouped subqueries from a CTE, whose rows the
    # planner cannot estimate: at 100k machines it expected 4.7 million, and compiling
    # the statement took 1.9 s of its 3.2 s.
    ("jit", "off"),
)
# ...and on the connections of statements whose best plan depends on their values (the
# list's filters): filter values, enum labels too, are bound parameters, and asyncpg
# prepares every statement, so after five runs PostgreSQL may switch to a generic plan,
# which estimates every provider and status alike. At 100k machines the list of a rare
# pair then walked all of machine_provided in ID order (205 ms, not 8 ms). Planning each
# run costs about a millisecond, which the other pages (a machine, a poll) need not pay:
# their plans do not depend on which machine.
POSTGRESQL_PLAN_PER_VALUES = (("plan_cache_mode", "force_custom_plan"),)


@dataclass(frozen=True)
class Dialect:
    """How to read consistently, without contending with the fleet, on this kind of server.

    A page's data is ONE statement: on PostgreSQL a statement is its own snapshot, and on
    CockroachDB the statement itself carries `AS OF SYSTEM TIME` for a follower read, so
    no page needs BEGIN/SET/COMMIT round trips.
    """

    name: str
    follower_reads: bool = False

    @property
    def consistency(self) -> str:
        """For the page footer of one statement: which read it was and how stale its data
        may be."""
        if self.name == "cockroachdb":
            if self.follower_reads:
                return f"{self._read}: {self._freshness}"
            return f"strict read (one statement, SERIALIZABLE): {self._freshness}"
        return f"one statement, one snapshot: {self._freshness}"

    def consistency_of(self, purposes: list[str]) -> str:
        """For the page footer: what the statements read, each with its purpose, said
        truthfully for none, one, or several (each then a read of its own)."""
        if not purposes:
            return "no statement: nothing was read from the BMDB for this answer"
        if len(purposes) == 1:
            return self.consistency
        return f"each statement its own {self._read} ({'; '.join(purposes)}): {self._freshness}"

    @property
    def _read(self) -> str:
        if self.name != "cockroachdb":
            return "snapshot"
        if self.follower_reads:
            return "follower read (AS OF SYSTEM TIME follower_read_timestamp())"
        return "strict read (SERIALIZABLE)"

    @property
    def _freshness(self) -> str:
        if self.name == "cockroachdb" and self.follower_reads:
            return "data typically ~4.8 s behind"
        return "current data"

    def statement(self, sql: str) -> str:
        """`sql` as this server runs it: a follower read puts the clause at the end of the
        outermost FROM, which makes every subquery read at that time."""
        if self.name == "cockroachdb" and self.follower_reads:
            return f"SELECT * FROM ({sql}) AS page AS OF SYSTEM TIME follower_read_timestamp()"
        return sql

    def session_statements(self, *, plan_per_values: bool = False) -> tuple[str, ...]:
        """The SQL a new connection runs once, after the start-up settings."""
        if self.name == "cockroachdb":
            return ()
        settings = POSTGRESQL_SESSION + (POSTGRESQL_PLAN_PER_VALUES if plan_per_values else ())
        return ("; ".join(f"SET {name} = {value}" for name, value in settings),)


def detect_dialect(server_version: str, *, strict: bool) -> Dialect:
    if "CockroachDB" in server_version:
        return Dialect("cockroachdb", follower_reads=not strict)
    return Dialect("postgresql")


# Set by app.http.observability: called after every page statement with (seconds, error or None).
query_hook: Callable[[float, BaseException | None], None] | None = None

# A read that lost to a writer: PostgreSQL's deadlock victim (40P01; a tag table dropped
# takes ACCESS EXCLUSIVE on machines), CockroachDB's "restart transaction" under
# contention (40001). The read has no effects: it can simply run again.
CONFLICTS: tuple[type[asyncpg.PostgresError], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
CONFLICT_ATTEMPTS = 2  # the statement once more, after a pause of a few tens of ms


# A statement's purpose in the footer unless it says otherwise.
PAGE_PURPOSE = "the page"


@dataclass(frozen=True)
class QueryRecord:
    sql: str
    ms: float
    rows: int
    purpose: str = PAGE_PURPOSE  # why the page ran it (the footer says why there are several)


class Reader:
    """One page's access to the BMDB: each statement is its own consistent read, run on a
    pooled connection held only while it runs, and kept with its time for the footer."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.queries: list[QueryRecord] = []

    async def fetch(
        self,
        sql: str,
        *args: object,
        history: bool = False,
        plan_per_values: bool = False,
        purpose: str = PAGE_PURPOSE,
    ) -> list[asyncpg.Record]:
        """Rows of `sql`; `history`: a fleet-wide read of work_history, on the connection
        kept for those, under its own time budget; `plan_per_values`: a statement whose
        best plan depends on its values (`Database.connection`); `purpose`: what it reads,
        for the footer (a read shared with other views says so)."""
        async for attempt in stamina.retry_context(
            on=CONFLICTS, attempts=CONFLICT_ATTEMPTS, timeout=None, wait_initial=0.02,
            wait_max=0.1,
        ):  # fmt: skip
            with attempt:
                return await self._fetch_once(sql, args, history, plan_per_values, purpose)
        raise AssertionError("unreachable: the last attempt's error is raised")

    async def _fetch_once(
        self, sql: str, args: tuple[object, ...], history: bool, plan_per_values: bool,
        purpose: str,
    ) -> list[asyncpg.Record]:  # fmt: skip
        async with self.db.connection(history=history, plan_per_values=plan_per_values) as conn:
            assert self.db.dialect is not None
            statement = self.db.dialect.statement(sql)
            start = time.perf_counter()
            try:
                rows = await conn.fetch(statement, *args)
            except BaseException as exc:
                if query_hook is not None:
                    query_hook(time.perf_counter() - start, exc)
                raise
        elapsed = time.perf_counter() - start
        self.queries.append(QueryRecord(statement, elapsed * 1000, len(rows), purpose))
        if query_hook is not None:
            query_hook(elapsed, None)
        return rows

    async def fetchrow(
        self, sql: str, *args: object, **options: bool | str
    ) -> asyncpg.Record | None:
        rows = await self.fetch(sql, *args, **options)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: object, **options: bool | str) -> object:
        row = await self.fetchrow(sql, *args, **options)
        return row[0] if row else None

    @staticmethod
    def parse(document: str | None) -> Any:
        """A JSON document as a statement returned it (asyncpg hands json over as text)."""
        return None if document is None else json.loads(document)

    @property
    def query_ms(self) -> float:
        return sum(q.ms for q in self.queries)

    @property
    def consistency(self) -> str:
        dialect = self.db.dialect
        if dialect is None:
            return "not connected yet"
        return dialect.consistency_of([q.purpose for q in self.queries])


# What a BMDB that is down, restarting or unreachable raises.
DB_UNAVAILABLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)


async def _end_transaction(conn: asyncpg.Connection) -> None:
    """What a connection needs before its next page: no open transaction.

    asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a round
    trip per page for state webug never creates: its sessions only read, one statement at
    a time, and set nothing but the connection's start-up settings and the dialect's
    session settings (which RESET ALL would undo).
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class HistoryReadBusy(Exception):
    """The connection for fleet-wide history reads stayed busy (another such read) for
    longer than their time budget."""


class Database:
    """An asyncpg pool whose every session is read-only with a statement timeout.

    Fleet-wide reads of work_history (no index on its timestamp: a scan of the whole
    table) get a pool of their own, one connection, with their own statement timeout
    (WEBUG_HISTORY_TIMEOUT_MS), so their budget is enforced by the server like every
    page's, may differ from it, and at most one such scan runs at a time. A timeout of
    its own needs a session of its own: `SET LOCAL statement_timeout` needs a transaction
    around the statement (round trips every page avoids), a session `SET` would leak into
    the next page on a shared connection, and asyncpg's `timeout=` only cancels from the
    client once the page's (shorter) server timeout has not already.
    """

    def __init__(self, dsn: str, settings: Settings) -> None:
        self.dsn = dsn
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._per_values_pool: asyncpg.Pool | None = None  # plans each run (POSTGRESQL_...)
        self._history_pool: asyncpg.Pool | None = None
        self._history_turn = asyncio.Semaphore(1)  # renewed by open(), in its event loop
        self.dialect: Dialect | None = None
        self.server_version: str | None = None

    async def open(self) -> None:
        self._pool = await self._create_pool(
            self._settings.pool_max_size, self._settings.statement_timeout_ms
        )
        self._per_values_pool = await self._create_pool(
            self._settings.pool_max_size, self._settings.statement_timeout_ms, plan_per_values=True
        )
        self._history_pool = await self._create_pool(1, self._settings.history_timeout_ms)
        self._history_turn = asyncio.Semaphore(1)

    async def _create_pool(
        self, max_size: int, statement_timeout_ms: int, *, plan_per_values: bool = False
    ) -> asyncpg.Pool:
        # min_size=0: creating the pool never needs the BMDB, so webug starts while it is down.
        return await asyncpg.create_pool(
            self.dsn,
            min_size=0,
            max_size=max_size,
            server_settings={
                "default_transaction_read_only": "on",
                "statement_timeout": str(statement_timeout_ms),
                "application_name": "webug",
                # Backslashes are plain characters in '...' whatever the database's default
                # (webug binds its values; a literal anywhere must never be escapable).
                # CockroachDB accepts this setting, and only with this value.
                "standard_conforming_strings": "on",
            },
            timeout=10,
            # Connections a burst opened go back to the BMDB once it is over.
            max_inactive_connection_lifetime=self._settings.pool_idle_seconds,
            init=lambda conn: self._init_connection(conn, plan_per_values=plan_per_values),
            reset=_end_transaction,
        )

    async def _init_connection(
        self, conn: asyncpg.Connection, *, plan_per_values: bool = False
    ) -> None:
        """Once per new connection: learn the dialect (the first time), apply its settings."""
        if self.dialect is None:
            self.server_version = await conn.fetchval("SELECT version()")
            self.dialect = detect_dialect(
                self.server_version, strict=self._settings.strict_consistency
            )
        for sql in self.dialect.session_statements(plan_per_values=plan_per_values):
            await conn.execute(sql)  # one round trip: a simple query may hold several

    def _pools(self) -> tuple[asyncpg.Pool | None, ...]:
        return (self._pool, self._per_values_pool, self._history_pool)

    async def close(self) -> None:
        for pool in self._pools():
            if pool is not None:
                await pool.close()

    def pool_stats(self) -> tuple[int, int, int]:
        """(connections in use, connections open, maximum) of the pages' pools, for /metrics."""
        pools = [p for p in (self._pool, self._per_values_pool) if p is not None]
        if not pools:
            return 0, 0, 2 * self._settings.pool_max_size
        size, idle = sum(p.get_size() for p in pools), sum(p.get_idle_size() for p in pools)
        return size - idle, size, sum(p.get_max_size() for p in pools)

    @asynccontextmanager
    async def connection(
        self, *, history: bool = False, plan_per_values: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; `history`: the one for fleet-wide history reads, waited
        for at most their time budget (then HistoryReadBusy); `plan_per_values`: one that
        plans each statement for its values (the list's filters)."""
        pool = (
            self._history_pool if history
            else self._per_values_pool if plan_per_values
            else self._pool
        )  # fmt: skip
        assert pool is not None, "Database.open() was not awaited"
        if not history:
            async with pool.acquire() as conn:
                yield conn  # its dialect is known: _init_connection ran when it was opened
            return
        try:  # the wait for the turn, not the connect (its own timeout, an outage error)
            async with asyncio.timeout(self._settings.history_timeout_ms / 1000):
                await self._history_turn.acquire()
        except TimeoutError:
            raise HistoryReadBusy() from None
        try:
            async with pool.acquire() as conn:
                yield conn
        finally:
            self._history_turn.release()

    async def expire_connections(self) -> None:
        """Replace every pooled connection on its next use (fresh prepared statements)."""
        for pool in self._pools():
            if pool is not None:
                await pool.expire_connections()

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1")
            return True
        except (*DB_UNAVAILABLE, asyncpg.PostgresError):
            return False
