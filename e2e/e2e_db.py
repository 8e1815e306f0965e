"""Synchronous access to the e2e database for tests that change what the server shows."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.support import run_sync


class Db:
    """Synchronous access to the e2e database, with cleanups run at teardown."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._cleanups: list[tuple[str, tuple[Any, ...]]] = []

    async def _run(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await getattr(conn, method)(sql, *args)
        finally:
            await conn.close()

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return run_sync(self._run("fetch", sql, args))

    def fetchval(self, sql: str, *args: Any) -> Any:
        return run_sync(self._run("fetchval", sql, args))

    def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return run_sync(self._run("fetchrow", sql, args))

    def execute(self, sql: str, *args: Any) -> str:
        return run_sync(self._run("execute", sql, args))

    def cleanup(self, sql: str, *args: Any) -> None:
        """Run `sql` at teardown; cleanups run newest first."""
        self._cleanups.append((sql, args))

    def run_cleanups(self) -> None:
        while self._cleanups:
            sql, args = self._cleanups.pop()
            self.execute(sql, *args)


def insert_backoff(
    db: Db, machine_id: uuid.UUID, process: str, cause: str, *, expired: bool = False
) -> None:
    db.execute(
        "INSERT INTO work_backoff (machine_id, process, until, cause, last_interval_seconds)"
        " VALUES ($1, $2, now() + make_interval(mins => $3), $4, 600)",
        machine_id,
        process,
        -30 if expired else 10,
        cause,
    )
    db.cleanup(
        "DELETE FROM work_backoff WHERE machine_id = $1 AND process = $2", machine_id, process
    )


def insert_session(
    db: Db,
    runtime_info: str,
    *,
    interval_seconds: int,
    deadline: str,
    created: str = "0",
    component: str = "e2e-shepherd",
) -> uuid.UUID:
    """A new session, created at now() + `created` with its deadline at now() + `deadline`
    (PostgreSQL intervals), deleted at teardown with the work it holds (ON DELETE CASCADE)."""
    session_id = uuid.uuid4()
    db.execute(
        "INSERT INTO sessions (session_id, session_component_name, session_runtime_info,"
        " session_created_at, session_interval_seconds, session_deadline)"
        " VALUES ($1, $2, $3, now() + $4::text::interval, $5, now() + $6::text::interval)",
        session_id,
        component,
        runtime_info,
        created,
        interval_seconds,
        deadline,
    )
    db.cleanup("DELETE FROM sessions WHERE session_id = $1", session_id)
    return session_id
