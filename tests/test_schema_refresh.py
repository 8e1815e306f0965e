"""The schema refresh task: retry with backoff until the BMDB answers, then periodic refresh."""

from __future__ import annotations

import asyncio
import time

from app.bmdb.connection import Database
from app.bmdb.dsn import with_database
from app.bmdb.schema_cache import SchemaCache
from app.config import Settings
from tests.support import execute


def _cache(dsn: str, interval: float = 3600) -> tuple[Database, SchemaCache]:
    db = Database(dsn, Settings(dsn=dsn))
    return db, SchemaCache(db, interval)


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_failure_is_retried_until_the_bmdb_answers(pg_server_dsn, migrated_template):
    # The database does not exist yet: reflection fails until a "migration" creates it.
    missing = with_database(pg_server_dsn, "webug_test_appears_later")
    await execute(pg_server_dsn, 'DROP DATABASE IF EXISTS "webug_test_appears_later"')
    db, cache = _cache(missing)
    await db.open()
    task = asyncio.create_task(cache.refresh_with_retry(wait_initial=0.05, wait_max=0.1))
    try:
        await _wait_for(lambda: cache.failures >= 2)
        assert not cache.loaded and "webug_test_appears_later" in cache.last_error
        await execute(
            pg_server_dsn,
            f'CREATE DATABASE "webug_test_appears_later" TEMPLATE "{migrated_template}"',
        )
        schema = await asyncio.wait_for(task, 10)
        assert schema.version == "1698288577" and cache.loaded and cache.last_error is None
    finally:
        task.cancel()
        await db.close()
        await execute(pg_server_dsn, 'DROP DATABASE IF EXISTS "webug_test_appears_later"')


async def test_periodic_refresh_picks_up_a_new_tag_table_and_stops_cleanly(migrated_db_dsn):
    db, cache = _cache(migrated_db_dsn, interval=0.1)
    await db.open()
    task = asyncio.create_task(cache.run(wait_initial=0.05, wait_max=0.1))
    try:
        await _wait_for(lambda: cache.loaded)
        assert cache.schema.tag("Rack") is None
        await execute(
            migrated_db_dsn,
            "CREATE TABLE machine_rack (machine_id uuid PRIMARY KEY, rack text NOT NULL)",
            "UPDATE schema_migrations SET version = 1800000000",
        )
        await _wait_for(lambda: cache.schema.tag("Rack") is not None)
        assert cache.schema.version == "1800000000"
        assert cache.next_refresh_at is not None
    finally:
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        await db.close()
    assert done and task.cancelled()  # cancellation ends the loop promptly, no hang


async def test_refresh_now_is_rate_limited_but_a_refresh_after_a_change_never_is(migrated_db_dsn):
    db, cache = _cache(migrated_db_dsn)
    await db.open()
    try:
        first = await cache.refresh_now()
        again = await asyncio.gather(*(cache.refresh_now() for _ in range(5)))
        assert all(schema is first for schema in again)  # within min_interval: reused
        changed_at = time.monotonic()
        await execute(migrated_db_dsn, "CREATE TABLE machine_rack (machine_id uuid PRIMARY KEY)")
        assert (await cache.refresh_now()).tag("Rack") is None  # still the recent one
        # What the drift retry asks for: a reflection that started after its failed query.
        assert (await cache.refresh(since=changed_at)).tag("Rack") is not None
    finally:
        await db.close()


async def test_a_changed_migration_version_is_noticed_between_refreshes(migrated_db_dsn):
    """Every `version_check` seconds one tiny statement reads schema_migrations; a new
    version re-reflects at once, however far the next periodic refresh is."""
    db = Database(migrated_db_dsn, Settings(dsn=migrated_db_dsn))
    cache = SchemaCache(db, 3600, version_check=0.1)
    await db.open()
    task = asyncio.create_task(cache.run(wait_initial=0.05, wait_max=0.1))
    try:
        await _wait_for(lambda: cache.loaded)
        await execute(
            migrated_db_dsn, "CREATE TABLE machine_rack (machine_id uuid PRIMARY KEY, rack text)"
        )
        await asyncio.sleep(0.5)  # five checks: the same version, so no reflection
        assert cache.schema.tag("Rack") is None
        await execute(migrated_db_dsn, "UPDATE schema_migrations SET version = 1800000000")
        await _wait_for(lambda: cache.schema.tag("Rack") is not None, timeout=5)
        assert cache.schema.version == "1800000000"
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
        await db.close()
