"""The cached BMDB schema and the background task that keeps it fresh.

Pages read `SchemaCache.schema` (one attribute read: a swap is atomic for them).
The task re-reflects every `interval` seconds, retrying failures with exponential
backoff, until the lifespan cancels it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import stamina

from app.bmdb.connection import Database
from app.bmdb.reflection import Schema, reflect

log = logging.getLogger(__name__)


class SchemaNotLoaded(Exception):
    """No reflection has succeeded yet (the BMDB has not answered since start)."""


class SchemaCache:
    def __init__(self, db: Database, interval: float) -> None:
        self._db = db
        self.interval = interval
        self._schema: Schema | None = None
        self.next_refresh_at: datetime | None = None
        self.last_error: str | None = None
        self.failures = 0

    @property
    def loaded(self) -> bool:
        return self._schema is not None

    @property
    def schema(self) -> Schema:
        if self._schema is None:
            raise SchemaNotLoaded
        return self._schema

    async def refresh(self) -> Schema:
        """Reflect once and swap the cached schema if anything changed."""
        async with self._db.connection() as conn:
            new = await reflect(conn)
        old = self._schema
        if old != new:
            # Not only on a version bump: a tag table added without one must show too.
            log.info(
                "schema %s -> %s (%d tag types)",
                old.version if old else "none",
                new.version,
                len(new.tag_types),
            )
        self._schema = new  # also when unchanged: reflected_at says when it was checked
        self.last_error = None
        return new

    async def refresh_with_retry(
        self, *, wait_initial: float = 1.0, wait_max: float = 60.0
    ) -> Schema:
        """Keep trying until reflection succeeds; only cancellation stops it."""
        async for attempt in stamina.retry_context(
            on=Exception,
            attempts=None,
            timeout=None,
            wait_initial=wait_initial,
            wait_max=wait_max,
        ):
            with attempt:
                try:
                    return await self.refresh()
                except Exception as exc:
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "schema reflection failed (attempt %d): %s", attempt.num, self.last_error
                    )
                    raise
        raise AssertionError("unreachable: attempts=None retries forever")

    async def run(self, *, wait_initial: float = 1.0, wait_max: float = 60.0) -> None:
        """The refresh loop: load now (retrying), then every `interval` seconds."""
        try:
            await self.refresh_with_retry(wait_initial=wait_initial, wait_max=wait_max)
            while True:
                self.next_refresh_at = datetime.now(UTC) + timedelta(seconds=self.interval)
                await asyncio.sleep(self.interval)
                await self.refresh_with_retry(wait_initial=wait_initial, wait_max=wait_max)
        except asyncio.CancelledError:
            log.info("schema refresh task stopped")
            raise
