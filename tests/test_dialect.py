"""The read each dialect takes: detection from version(), the SQL it sends, the footer.

CockroachDB is not available here: its statements are checked as text (and against
CockroachDB's documented follower-read form); PostgreSQL's are run on the real server,
recorded by asyncpg's query logger as they are sent.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.config import Settings
from app.db import Database, Dialect, Snapshot, detect_dialect
from app.web import templates
from tests.fleet import mid
from tests.support import webug_client

# What `SELECT version()` answers (CockroachDB's format, from a v23.1 node; PostgreSQL 17).
COCKROACH_VERSION = (
    "CockroachDB CCL v23.1.11 (x86_64-pc-linux-gnu, built 2023/09/27 01:53:43, go1.19.10)"
)
POSTGRES_VERSION = "PostgreSQL 17.2 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 12.2.0, 64-bit"

POSTGRES = Dialect("postgresql")
FOLLOWER = Dialect("cockroachdb", follower_reads=True)
STRICT = Dialect("cockroachdb", follower_reads=False)


@pytest.fixture(scope="module")
def fleet_dsn(pg_server_dsn, migrated_template):
    """tests/fleet.py's small fleet in a database of this module's own, loaded when the
    module runs (its rows are relative to now(): the shared one ages as the run goes)."""
    from app.dsn import with_database
    from tests.fleet import load_small_fleet
    from tests.support import create_database, drop_database

    name = create_database(pg_server_dsn, template=migrated_template)
    dsn = with_database(pg_server_dsn, name)
    load_small_fleet(dsn)
    yield dsn
    drop_database(pg_server_dsn, name)


def test_detection_from_version_strings():
    assert detect_dialect(COCKROACH_VERSION, strict=False) == FOLLOWER
    assert detect_dialect(COCKROACH_VERSION, strict=True) == STRICT
    assert detect_dialect(POSTGRES_VERSION, strict=False) == POSTGRES
    assert detect_dialect(POSTGRES_VERSION, strict=True) == POSTGRES  # strict is CockroachDB's


def test_postgresql_opens_one_repeatable_read_read_only_transaction():
    assert POSTGRES.begin_statements() == (
        "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )


def test_cockroachdb_follower_reads_use_follower_read_timestamp():
    # CockroachDB's documented form for a whole read-only transaction of follower reads.
    assert FOLLOWER.begin_statements() == (
        "BEGIN",
        "SET TRANSACTION AS OF SYSTEM TIME follower_read_timestamp()",
    )


def test_cockroachdb_strict_reads_are_current():
    statements = STRICT.begin_statements()
    assert statements == ("BEGIN TRANSACTION READ ONLY",)
    assert not any("AS OF SYSTEM TIME" in s for s in statements)


def test_only_postgresql_gets_session_settings_and_in_one_statement():
    # CockroachDB refuses settings it does not know (join_collapse_limit is PostgreSQL's).
    assert FOLLOWER.session_statements() == STRICT.session_statements() == ()
    assert POSTGRES.session_statements() == (
        "SET join_collapse_limit = 1; SET from_collapse_limit = 1;"
        " SET plan_cache_mode = force_custom_plan",
    )


def test_consistency_says_how_stale_the_data_may_be():
    assert "~4.8 s behind" in FOLLOWER.consistency
    assert "follower_read_timestamp()" in FOLLOWER.consistency
    assert "current data" in STRICT.consistency and "behind" not in STRICT.consistency
    assert "REPEATABLE READ" in POSTGRES.consistency and "current" in POSTGRES.consistency


@pytest.mark.parametrize("dialect", [POSTGRES, FOLLOWER, STRICT], ids=lambda d: str(d))
def test_footer_names_the_read_and_its_statements(dialect):
    html = templates.get_template("partials/query_footer.html").render(
        snap=Snapshot(conn=None, dialect=dialect)  # rendering only: no query runs
    )
    assert dialect.consistency in html
    for sql in dialect.begin_statements():
        assert sql in html  # in the title: which SQL opened the read


# --- on the real PostgreSQL -------------------------------------------------------------


async def test_begin_sends_exactly_its_statements_and_gives_a_snapshot(migrated_db_dsn):
    database = Database(migrated_db_dsn, Settings(dsn=migrated_db_dsn))
    await database.open()
    writer = await asyncpg.connect(migrated_db_dsn)
    try:
        async with database.connection() as conn:
            sent: list[str] = []
            conn.add_query_logger(lambda record: sent.append(record.query))
            await database.dialect.begin(conn)
            await asyncio.sleep(0)  # asyncpg calls query loggers soon after, not inline
            assert sent == list(POSTGRES.begin_statements())
            assert await conn.fetchval("SHOW transaction_isolation") == "repeatable read"
            assert await conn.fetchval("SHOW transaction_read_only") == "on"
            before = await conn.fetchval("SELECT count(*) FROM machines")
            # A BMDB component commits a machine while the page is reading...
            await writer.execute("INSERT INTO machines VALUES (gen_random_uuid(), now())")
            # ...and the page's later queries still see the snapshot it started with.
            assert await conn.fetchval("SELECT count(*) FROM machines") == before
            await conn.execute("ROLLBACK")
        async with database.snapshot() as snap:
            assert snap.dialect == POSTGRES
            assert await snap.fetchval("SELECT count(*) FROM machines") == before + 1
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await snap.fetch("INSERT INTO machines VALUES (gen_random_uuid(), now())")
        async with database.connection() as conn:
            assert not conn.is_in_transaction()  # the snapshot was ended
    finally:
        await writer.close()
        await database.close()


async def test_session_settings_are_applied_once_per_connection_not_per_page(migrated_db_dsn):
    database = Database(migrated_db_dsn, Settings(dsn=migrated_db_dsn))
    initialized = []
    init = database._init_connection

    async def counting_init(conn: asyncpg.Connection) -> None:
        initialized.append(conn)
        await init(conn)

    database._init_connection = counting_init
    await database.open()
    try:
        for _ in range(5):  # five pages, one after the other: one pooled connection
            async with database.snapshot() as snap:
                assert await snap.fetchval("SHOW join_collapse_limit") == "1"
                assert await snap.fetchval("SHOW from_collapse_limit") == "1"
                assert await snap.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        assert len(initialized) == 1 and database.dialect == POSTGRES
        await database.expire_connections()  # a new connection is set up again
        async with database.snapshot() as snap:
            assert await snap.fetchval("SHOW join_collapse_limit") == "1"
        assert len(initialized) == 2
    finally:
        await database.close()


def test_page_footer_on_postgresql_says_repeatable_read(fleet_dsn):
    with webug_client(fleet_dsn) as client:
        page = client.get(f"/machine/{mid(1)}")
        assert page.status_code == 200
        assert "REPEATABLE READ READ ONLY" in page.text
        assert "current data" in page.text
        assert "follower" not in page.text
    # Strict consistency only concerns CockroachDB: PostgreSQL reads the same way.
    with webug_client(fleet_dsn, strict_consistency=True) as client:
        assert "REPEATABLE READ READ ONLY" in client.get("/").text
