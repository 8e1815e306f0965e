"""The cached BMDB schema and the background task that keeps it fresh.

Pages read `SchemaCache.schema` (one attribute read: a swap is atomic for them).
The task re-reflects every `interval` seconds, retrying failures with exponential
backoff, until the lifespan cancels it. In between, every `version_check` seconds, it
reads `schema_migrations` (one tiny statement) and re-reflects at once when a migration
changed its version, as upstream's webug did.

Every reflection goes through `SchemaCache.refresh`, whoever asks (the task, the
drift retry in app/http/resilience.py, "refresh now"): at most one runs at a time and
callers it answers share its result. "Refresh now" (`refresh_now`) reflects at most
once per `min_interval`: a crowd of POSTs reflects once. The drift retry asks for a
reflection that started after its failed query, which that interval never delays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import stamina

from app.bmdb.connection import Database
from app.bmdb.reflection import Schema, reflect, schema_version

log = logging.getLogger(__name__)

# "Refresh now" reflects at most this often; a POST within it gets that reflection.
MIN_REFRESH_INTERVAL_S = 5.0
VERSION_CHECK_S = 30.0  # schema_migrations is read this often between reflections


class SchemaNotLoaded(Exception):
    """No reflection has succeeded yet (the BMDB has not answered since start)."""


class SchemaCache:
    def __init__(
        self,
        db: Database,
        interval: float,
        *,
        min_interval: float = MIN_REFRESH_INTERVAL_S,
        version_check: float = VERSION_CHECK_S,
    ) -> None:
        self._db = db
        self.interval = interval
        self.min_interval = min_interval
        self.version_check = version_check
        self._schema: Schema | None = None
        self.next_refresh_at: datetime | None = None
        self.last_error: str | None = None
        self.failures = 0
        self._running: asyncio.Task[Schema] | None = None  # the reflection in flight
        self._running_started = float("-inf")  # time.monotonic() when it started
        self._reflected_started = float("-inf")  # ... when the last successful one started
        self._requested_at = float("-inf")  # ... when "refresh now" last asked for a new one

    @property
    def loaded(self) -> bool:
        return self._schema is not None

    @property
    def schema(self) -> Schema:
        if self._schema is None:
            raise SchemaNotLoaded
        return self._schema

    @property
    def refreshing(self) -> bool:
        return self._running is not None

    async def refresh(
        self, *, since: float | None = None, fresh_connections: bool = False
    ) -> Schema:
        """The schema as reflected by a reflection started at `since` or later
        (`time.monotonic()`; by default now, so a new one).

        A reflection in flight that started early enough answers every caller; one that
        started too early (it may predate a change the caller saw) is waited for, then
        another starts. `fresh_connections` replaces the pooled connections first (their
        prepared statements describe the old schema) when a new reflection is needed.
        """
        since = time.monotonic() if since is None else since
        while True:
            if self._schema is not None and self._reflected_started >= since:
                return self._schema
            running = self._running
            if running is None:
                running = self._start(fresh_connections)
            elif self._running_started < since:
                await asyncio.wait([running])  # its outcome is not this caller's answer
                continue
            # Shielded: a caller that gives up (a timeout) does not cancel it for the others.
            return await asyncio.shield(running)

    async def refresh_now(self) -> Schema:
        """For "refresh now": reflect at most once per `min_interval`, however many ask.

        Within `min_interval` of the request that last asked for a reflection, the one
        started for it answers (in flight, or done: then no query at all).
        """
        now = time.monotonic()
        if now - self._requested_at >= self.min_interval:
            self._requested_at = now
        return await self.refresh(since=self._requested_at)

    def _start(self, fresh_connections: bool) -> asyncio.Task[Schema]:
        started = time.monotonic()

        async def reflect_once() -> Schema:
            try:
                if fresh_connections:
                    await self._db.expire_connections()
                async with self._db.connection() as conn:
                    new = await reflect(conn)
            finally:
                self._running = None
            self._swap(new)
            self._reflected_started = max(self._reflected_started, started)
            return new

        task = asyncio.create_task(reflect_once(), name="schema-reflection")
        # Retrieved here too: its callers may all have given up (no "never retrieved").
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._running, self._running_started = task, started
        return task

    def _swap(self, new: Schema) -> None:
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

    async def refresh_with_retry(
        self, *, wait_initial: float = 1.0, wait_max: float = 60.0, since: float | None = None
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
                    return await self.refresh(since=since)
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
            # The lifespan's first attempt may have just loaded it: that one answers.
            await self.refresh_with_retry(
                wait_initial=wait_initial,
                wait_max=wait_max,
                since=time.monotonic() - self.min_interval,
            )
            while True:
                self.next_refresh_at = datetime.now(UTC) + timedelta(seconds=self.interval)
                await self._until_due(time.monotonic() + self.interval)
                await self.refresh_with_retry(wait_initial=wait_initial, wait_max=wait_max)
        except asyncio.CancelledError:
            log.info("schema refresh task stopped")
            raise

    async def _until_due(self, due: float) -> None:
        """Sleeps until `due`, or until schema_migrations says a migration ran."""
        while (left := due - time.monotonic()) > 0:
            await asyncio.sleep(min(self.version_check, left))
            if left > self.version_check and await self._version_changed():
                return

    async def _version_changed(self) -> bool:
        try:
            async with self._db.connection() as conn:
                current = await schema_version(conn)
        except Exception as exc:  # the refresh itself says what is wrong, when it is due
            log.debug("schema version check failed: %s: %s", type(exc).__name__, exc)
            return False
        known = (self._schema.version, self._schema.dirty) if self._schema else None
        if current == known:
            return False
        log.info("schema_migrations is at %s (dirty: %s): re-reflecting", *current)
        return True
