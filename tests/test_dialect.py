"""The read each dialect takes: detection from version(), the SQL it sends, the footer.

CockroachDB is not available here: its statements are checked as text (against
CockroachDB's documented follower-read form); PostgreSQL's are run on the real server.
"""

from __future__ import annotations

import html
import re

import asyncpg
import pytest

from app.bmdb.connection import Database, Dialect, Reader, detect_dialect
from app.config import Settings
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


def test_detection_from_version_strings():
    assert detect_dialect(COCKROACH_VERSION, strict=False) == FOLLOWER
    assert detect_dialect(COCKROACH_VERSION, strict=True) == STRICT
    assert detect_dialect(POSTGRES_VERSION, strict=False) == POSTGRES
    assert detect_dialect(POSTGRES_VERSION, strict=True) == POSTGRES  # strict is CockroachDB's


def test_postgresql_runs_each_page_statement_as_it_is():
    # A single statement is its own snapshot: no BEGIN, no SET, no COMMIT around it.
    assert POSTGRES.statement("SELECT 1 AS doc") == "SELECT 1 AS doc"


def test_cockroachdb_follower_reads_carry_the_clause_in_the_statement():
    # CockroachDB's documented form: AS OF SYSTEM TIME at the end of the outermost FROM,
    # which sets the read time of the whole statement, subqueries included.
    page = "SELECT json_build_object('n', (SELECT count(*) FROM machines)) AS doc"
    assert FOLLOWER.statement(page) == (
        f"SELECT * FROM ({page}) AS page AS OF SYSTEM TIME follower_read_timestamp()"
    )


def test_cockroachdb_strict_reads_are_current():
    assert STRICT.statement("SELECT 1 AS doc") == "SELECT 1 AS doc"


def test_only_postgresql_gets_session_settings_and_in_one_statement():
    # CockroachDB refuses settings it does not know (join_collapse_limit is PostgreSQL's).
    assert FOLLOWER.session_statements() == STRICT.session_statements() == ()
    assert FOLLOWER.session_statements(plan_per_values=True) == ()
    assert POSTGRES.session_statements() == (
        "SET join_collapse_limit = 1; SET from_collapse_limit = 1; SET jit = off",
    )
    assert POSTGRES.session_statements(plan_per_values=True) == (
        "SET join_collapse_limit = 1; SET from_collapse_limit = 1; SET jit = off;"
        " SET plan_cache_mode = force_custom_plan",
    )


def test_consistency_says_how_stale_the_data_may_be():
    assert "~4.8 s behind" in FOLLOWER.consistency
    assert "follower_read_timestamp()" in FOLLOWER.consistency
    assert "current data" in STRICT.consistency and "behind" not in STRICT.consistency
    assert "one statement" in POSTGRES.consistency and "current" in POSTGRES.consistency
    several = ["a", "b"]
    assert FOLLOWER.consistency_of(several) == (
        "each statement its own follower read (AS OF SYSTEM TIME follower_read_timestamp())"
        " (a; b): data typically ~4.8 s behind"
    )
    assert STRICT.consistency_of(several).startswith("each statement its own strict read")


# --- on the real PostgreSQL -------------------------------------------------------------

PAGES = [
    "/",
    "/?provider=Equinix&has=AgentStarted",
    f"/machine/{mid(2)}",
    f"/machine/{mid(2)}/history",
    "/sessions",
    "/overview",
    "/search?q=eq-",
]


async def test_a_statement_is_its_own_snapshot_and_read_only(migrated_db_dsn):
    database = Database(migrated_db_dsn, Settings(dsn=migrated_db_dsn))
    await database.open()
    try:
        reader = Reader(database)
        assert await reader.fetchval("SELECT count(*) FROM machines") == 0
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await reader.fetch("INSERT INTO machines VALUES (gen_random_uuid(), now())")
        assert [q.sql for q in reader.queries] == ["SELECT count(*) FROM machines"]
        async with database.connection() as conn:
            assert not conn.is_in_transaction()  # nothing left open between pages
    finally:
        await database.close()


async def test_session_settings_are_applied_once_per_connection_not_per_page(migrated_db_dsn):
    database = Database(migrated_db_dsn, Settings(dsn=migrated_db_dsn))
    initialized = []
    init = database._init_connection

    async def counting_init(conn: asyncpg.Connection, **options: bool) -> None:
        initialized.append(conn)
        await init(conn, **options)

    database._init_connection = counting_init
    await database.open()
    try:
        for _ in range(5):  # five statements, one after the other: one pooled connection
            reader = Reader(database)
            assert await reader.fetchval("SHOW join_collapse_limit") == "1"
            assert await reader.fetchval("SHOW from_collapse_limit") == "1"
            assert await reader.fetchval("SHOW plan_cache_mode") == "auto"  # a machine, a poll
            filtered = await reader.fetchval("SHOW plan_cache_mode", plan_per_values=True)
            assert filtered == "force_custom_plan"  # the list's filters: planned per values
        assert len(initialized) == 2 and database.dialect == POSTGRES  # one of each kind
        await database.expire_connections()  # a new connection is set up again
        assert await Reader(database).fetchval("SHOW join_collapse_limit") == "1"
        assert len(initialized) == 3
    finally:
        await database.close()


@pytest.mark.parametrize("path", PAGES)
def test_each_page_statement_in_each_dialect(module_fleet_dsn, path):
    """What every page sends: on PostgreSQL the statement as built, on CockroachDB the same
    statement carrying its follower-read clause (one statement, so no transaction)."""
    with webug_client(module_fleet_dsn) as client:
        data = client.get(path + ("&" if "?" in path else "?") + "format=json").json()
    statements = [q["sql"] for q in data["queries"]]
    assert statements and all(";" not in sql for sql in statements)
    for sql in statements:
        follower = FOLLOWER.statement(sql)
        assert follower.startswith("SELECT * FROM (") and sql in follower
        assert follower.endswith(") AS page AS OF SYSTEM TIME follower_read_timestamp()")
        assert STRICT.statement(sql) == sql == POSTGRES.statement(sql)


def test_page_footer_names_the_read(module_fleet_dsn):
    with webug_client(module_fleet_dsn) as client:
        page = client.get(f"/machine/{mid(1)}")
        assert page.status_code == 200
        assert POSTGRES.consistency in page.text
        assert "follower" not in page.text
    # Strict consistency only concerns CockroachDB: PostgreSQL reads the same way.
    with webug_client(module_fleet_dsn, strict_consistency=True) as client:
        assert POSTGRES.consistency in client.get(f"/machine/{mid(1)}").text


def footer(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", page.split('<div class="query-footer">')[1]))


def test_the_footer_says_what_was_read_for_none_one_or_several_statements(module_fleet_dsn):
    with webug_client(module_fleet_dsn) as client:
        nothing = footer(client.get("/search").text)
        assert nothing.startswith(" 0 statements") and "no statement: nothing was read" in nothing
        assert "one statement" not in nothing and "snapshot" not in nothing
        # Both sources of /failures are read apart because each is shared with other views.
        failures = footer(client.get("/failures").text)
        assert failures.startswith(" 2 statements") and "one statement" not in failures
        assert (
            "each statement its own snapshot (failure groups of active backoffs, shared with"
            " other views; failure groups of work history, shared with other views):"
            " current data" in failures
        )
        listed = footer(client.get("/?has=Provided").text)  # its counts are due: 2
        assert listed.startswith(" 2 statements") and "one statement" not in listed
        assert "(the total and facets, shared with other views of the filter; the page)" in listed
        again = footer(client.get("/?has=Provided").text)  # counts shared now: 1
        assert again.startswith(" 1 statement ") and POSTGRES.consistency in again
