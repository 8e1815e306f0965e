"""The BMDB migrations and their golang-migrate compatible runner, on a real PostgreSQL."""

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from app.bmdb.migrate import (
    MIGRATIONS_DIR,
    DirtyDatabaseError,
    current_version,
    load_migrations,
    migrate,
)

VERSIONS = [
    (1662136250, "initial"),
    (1667232160, "agent_tags"),
    (1672743627, "installation_tags"),
    (1672749980, "backoff"),
    (1681826233, "exponential_backoff"),
    (1681909788, "extra_provider_data"),
    (1681980576, "extra_shepherd_processes"),
    (1686656942, "add_indexes"),
    (1687875953, "add_installation_report"),
    (1698288577, "add_providers"),
]
LATEST = VERSIONS[-1][0]

# The upstream BMDB's tables at its latest version, written out here rather than read from
# sql/migrations/, as information_schema reports them: data_type, "(length)" for varchar,
# the udt_name of enums, and " NULL" for nullable columns.
TZ = "timestamp with time zone"
VC = "character varying(128)"
TAG = {"machine_id": "uuid"}
TABLES = {
    "machines": {"machine_id": "uuid", "machine_created_at": TZ},
    "sessions": {
        "session_id": "uuid",
        "session_component_name": "text",
        "session_runtime_info": "text",
        "session_created_at": TZ,
        "session_interval_seconds": "bigint",
        "session_deadline": TZ,
    },
    "work": {"machine_id": "uuid", "session_id": "uuid", "process": "USER-DEFINED process"},
    "work_backoff": {
        "machine_id": "uuid",
        "process": "USER-DEFINED process",
        "until": TZ,
        "cause": "text",
        "last_interval_seconds": "bigint NULL",
    },
    "work_history": {
        "machine_id": "uuid",
        "process": "USER-DEFINED process",
        "event": "USER-DEFINED work_history_event",
        "timestamp": TZ,
        "failed_cause": "text NULL",
    },
    "machine_provided": TAG
    | {
        "provider": "USER-DEFINED provider",
        "provider_id": VC,
        "provider_reservation_id": f"{VC} NULL",
        "provider_ip_address": f"{VC} NULL",
        "provider_location": f"{VC} NULL",
        "provider_status": "USER-DEFINED provider_status NULL",
    },
    "machine_agent_started": TAG | {"agent_started_at": TZ, "agent_public_key": "bytea"},
    "machine_agent_heartbeat": TAG | {"agent_heartbeat_at": TZ},
    "machine_hardware_report": TAG | {"hardware_report_raw": "bytea"},
    "machine_os_installation_request": TAG
    | {"generation": "bigint", "os_installation_request_raw": "bytea"},
    "machine_os_installation_report": TAG
    | {
        "generation": "bigint",
        "os_installation_result": "USER-DEFINED machine_os_installation_result",
        "os_installation_report_raw": "bytea",
    },
    "schema_migrations": {"version": "bigint", "dirty": "boolean"},
}
ENUMS = {
    "process": [
        "UnitTest1",
        "UnitTest2",
        "ShepherdAccess",
        "ShepherdAgentStart",
        "ShepherdRecovery",
    ],
    "work_history_event": ["Started", "Finished", "Failed", "Canceled"],
    "provider": ["Equinix", "Lumen", "None"],
    "provider_status": [
        "Missing",
        "Provisioning",
        "ProvisioningFailedPermanent",
        "Running",
        "Stopped",
        "Unknown",
    ],
    "machine_os_installation_result": ["Success", "Error"],
}
# Foreign keys: (table, column) -> (referenced table, ON DELETE rule).
TAG_FK = ("machines", "RESTRICT")
FOREIGN_KEYS = {
    ("work", "machine_id"): ("machines", "RESTRICT"),
    ("work", "session_id"): ("sessions", "CASCADE"),
    ("work_backoff", "machine_id"): ("machines", "CASCADE"),
} | {(table, "machine_id"): TAG_FK for table in TABLES if table.startswith("machine_")}
# Non-key indexes, as PostgreSQL spells their definitions.
INDEXES = {
    "work_history_machine_id_idx": "ON public.work_history USING btree (machine_id)",
    "agent_public_key_idx": (
        "ON public.machine_agent_started USING btree (agent_public_key) INCLUDE (agent_started_at)"
    ),
    "session_id_deadline_idx": (
        "ON public.sessions USING btree (session_id, session_deadline) INCLUDE "
        "(session_component_name, session_runtime_info, session_created_at, "
        "session_interval_seconds)"
    ),
    "process_machine_id_idx": (
        "ON public.work_backoff USING btree (process, machine_id) INCLUDE (until)"
    ),
}


async def columns(conn: asyncpg.Connection) -> dict[str, dict[str, str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name, data_type, character_maximum_length, udt_name,"
        " is_nullable FROM information_schema.columns WHERE table_schema = 'public'"
    )
    tables: dict[str, dict[str, str]] = {}
    for r in rows:
        spec = r["data_type"]
        if r["character_maximum_length"] is not None:
            spec += f"({r['character_maximum_length']})"
        if spec == "USER-DEFINED":
            spec += f" {r['udt_name']}"
        if r["is_nullable"] == "YES":
            spec += " NULL"
        tables.setdefault(r["table_name"], {})[r["column_name"]] = spec
    return tables


async def public_types(conn: asyncpg.Connection) -> set[str]:
    """Types created in public, leaving out the row types PostgreSQL makes for every table."""
    rows = await conn.fetch(
        "SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE nspname = 'public' AND typtype <> 'c' AND typelem = 0"
    )
    return {r["typname"] for r in rows}


@pytest.fixture
async def conn(empty_db_dsn):
    conn = await asyncpg.connect(empty_db_dsn)
    yield conn
    await conn.close()


async def test_load_migrations_lists_upstream_versions_in_order():
    migrations = load_migrations()
    assert [(m.version, m.name) for m in migrations] == VERSIONS
    assert all(m.up_sql.strip() and m.down_sql.strip() for m in migrations)


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (["1_a.up.sql", "1_a.down.sql", "README.md"], "not a migration file name"),
        (["1_a.up.sql", "x_a.down.sql"], "not a migration file name"),
        (["1_a.up.sql", "1_a.down.sql", "2_b.up.sql"], "2_b.down.sql is missing"),
        (["1_a.up.sql", "1_b.down.sql"], "version 1 is already used by"),
    ],
)
def test_load_migrations_rejects_bad_directories(tmp_path: Path, files, error):
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(ValueError, match=error):
        load_migrations(tmp_path)


async def test_migrations_build_the_bmdb_schema(empty_db_dsn, conn):
    assert await migrate(empty_db_dsn) == [v for v, _ in VERSIONS]

    assert await columns(conn) == TABLES
    enums = await conn.fetch(
        "SELECT typname, array_agg(enumlabel::text ORDER BY enumsortorder) AS labels"
        " FROM pg_enum JOIN pg_type t ON t.oid = enumtypid GROUP BY typname"
    )
    assert {r["typname"]: r["labels"] for r in enums} == ENUMS
    assert (
        await conn.fetchval(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_name = 'machines' AND column_name = 'machine_id'"
        )
        == "gen_random_uuid()"
    )

    foreign_keys = await conn.fetch(
        "SELECT src.relname AS tbl, a.attname AS col, dst.relname AS ref,"
        " c.confdeltype::text AS rule"
        " FROM pg_constraint c"
        " JOIN pg_class src ON src.oid = c.conrelid JOIN pg_class dst ON dst.oid = c.confrelid"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)"
        " WHERE c.contype = 'f'"
    )
    rules = {"r": "RESTRICT", "c": "CASCADE"}
    assert {
        (r["tbl"], r["col"]): (r["ref"], rules.get(r["rule"], r["rule"])) for r in foreign_keys
    } == FOREIGN_KEYS

    keys = await conn.fetch(
        "SELECT conrelid::regclass::text AS tbl, contype::text,"
        " array(SELECT attname::text FROM unnest(conkey) WITH ORDINALITY k(n, i)"
        "  JOIN pg_attribute ON attrelid = conrelid AND attnum = n ORDER BY i) AS cols"
        " FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u')"
    )
    by_table: dict[str, set] = {}
    for r in keys:
        by_table.setdefault(r["tbl"], set()).add((r["contype"], tuple(r["cols"])))
    tag_key = {("p", ("machine_id",))}
    assert by_table == {
        "machines": tag_key,
        "sessions": {("p", ("session_id",))},
        "work": {("p", ("machine_id", "session_id", "process")), ("u", ("machine_id", "process"))},
        "work_backoff": {("u", ("machine_id", "process"))},
        "machine_provided": tag_key | {("u", ("provider", "provider_id"))},
        "machine_agent_started": tag_key,
        "machine_agent_heartbeat": tag_key,
        "machine_hardware_report": tag_key,
        "machine_os_installation_request": tag_key,
        "machine_os_installation_report": tag_key,
        "schema_migrations": {("p", ("version",))},
    }

    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY ($1::text[])",
        list(INDEXES),
    )
    assert {r["indexname"]: r["indexdef"] for r in indexes} == {
        name: f"CREATE INDEX {name} {definition}" for name, definition in INDEXES.items()
    }


async def test_migrate_is_idempotent(empty_db_dsn, conn):
    await migrate(empty_db_dsn)
    assert await migrate(empty_db_dsn) == []
    rows = await conn.fetch("SELECT version, dirty FROM schema_migrations")
    assert [tuple(r) for r in rows] == [(LATEST, False)]
    assert await current_version(conn) == (LATEST, False)


async def test_migrate_up_to_a_target_then_the_rest(empty_db_dsn, conn):
    assert await current_version(conn) == (None, False)
    assert await migrate(empty_db_dsn, target=1672749980) == [v for v, _ in VERSIONS[:4]]
    assert await current_version(conn) == (1672749980, False)
    # work_backoff exists, exponential_backoff's column does not yet.
    assert set((await columns(conn))["work_backoff"]) == {"machine_id", "process", "until", "cause"}
    assert await migrate(empty_db_dsn) == [v for v, _ in VERSIONS[4:]]
    with pytest.raises(ValueError, match="no migration with version 42"):
        await migrate(empty_db_dsn, target=42)


async def test_dirty_database_is_refused(empty_db_dsn, conn):
    await migrate(empty_db_dsn, target=1672749980)
    await conn.execute("UPDATE schema_migrations SET dirty = true")

    with pytest.raises(DirtyDatabaseError, match="dirty at version 1672749980") as raised:
        await migrate(empty_db_dsn)
    assert raised.value.version == 1672749980
    assert "migrate force 1672749980" in str(raised.value)
    assert await current_version(conn) == (1672749980, True)
    assert await conn.fetchval("SELECT to_regclass('session_id_deadline_idx')") is None


async def test_failed_migration_leaves_database_dirty(empty_db_dsn, conn, tmp_path: Path):
    for initial in MIGRATIONS_DIR.glob("1662136250_initial.*.sql"):
        shutil.copy(initial, tmp_path)
    (tmp_path / "1700000000_broken.up.sql").write_text(
        "CREATE TABLE half_done (x int);\nSELECT no_such_column FROM machines;"
    )
    (tmp_path / "1700000000_broken.down.sql").write_text("DROP TABLE half_done;")

    with pytest.raises(asyncpg.UndefinedColumnError) as raised:
        await migrate(empty_db_dsn, tmp_path)
    assert "while applying migration 1700000000_broken.up.sql" in raised.value.__notes__
    assert await current_version(conn) == (1700000000, True)
    # The file ran as one implicit transaction: its first statement was rolled back too.
    assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    with pytest.raises(DirtyDatabaseError):
        await migrate(empty_db_dsn, tmp_path)


async def test_down_migrations_undo_everything(empty_db_dsn, conn):
    await migrate(empty_db_dsn)
    for m in reversed(load_migrations()):
        await conn.execute(m.down_sql)
    # schema_migrations is the runner's, not a migration's.
    assert set(await columns(conn)) == {"schema_migrations"}
    assert await public_types(conn) == set()


async def test_constraints(empty_db_dsn, conn):
    await migrate(empty_db_dsn)
    now = datetime.now(UTC)
    machine = await conn.fetchval(
        "INSERT INTO machines (machine_created_at) VALUES ($1) RETURNING machine_id", now
    )
    session = await conn.fetchval(
        "INSERT INTO sessions (session_component_name, session_runtime_info,"
        " session_created_at, session_interval_seconds, session_deadline)"
        " VALUES ('shepherd', 'pod-1', $1, 30, $2) RETURNING session_id",
        now,
        now + timedelta(seconds=30),
    )
    await conn.execute("INSERT INTO work VALUES ($1, $2, 'ShepherdAgentStart')", machine, session)
    backoff = "INSERT INTO work_backoff VALUES ($1, 'ShepherdAgentStart', $2, 'boom', 60)"
    await conn.execute(backoff, machine, now)

    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            "INSERT INTO work VALUES ($1, $2, 'ShepherdAgentStart')", machine, session
        )
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(backoff, machine, now)
    # PostgreSQL 18 reports a RESTRICT violation as restrict_violation, older ones as
    # foreign_key_violation.
    restricted = (asyncpg.ForeignKeyViolationError, asyncpg.RestrictViolationError)
    with pytest.raises(restricted, match="work_machine_id_fkey"):
        await conn.execute("DELETE FROM machines WHERE machine_id = $1", machine)

    await conn.execute("DELETE FROM sessions WHERE session_id = $1", session)
    assert await conn.fetchval("SELECT count(*) FROM work") == 0

    # History outlives machines: any machine_id is accepted.
    await conn.execute(
        "INSERT INTO work_history VALUES ($1, 'ShepherdAgentStart', 'Failed', $2, 'boom')",
        uuid.uuid4(),
        now,
    )
    # Without work, the machine can go, taking its backoff with it.
    await conn.execute("DELETE FROM machines WHERE machine_id = $1", machine)
    assert await conn.fetchval("SELECT count(*) FROM work_backoff") == 0
