"""Synchronous access to the e2e database for tests that change what the server shows."""

from __future__ import annotations

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
