"""golang-migrate compatible migration runner for the BMDB schema on PostgreSQL.

It reads the same `<version>_<name>.up.sql` / `.down.sql` files and keeps the same
`schema_migrations` bookkeeping as golang-migrate's postgres driver, so a database migrated
here can be taken over by `migrate` (and the other way round). Only `up` is implemented: webug
uses it to build demo and test databases.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql" / "migrations"

# Fixed key for pg_advisory_lock. golang-migrate derives its key from the database and schema
# names, which differs between its versions; a constant is as good, since advisory locks are
# per database anyway. Consequence: do not run this and golang-migrate against one database at
# the same time.
ADVISORY_LOCK_KEY = 0x626D6462  # "bmdb"

_FILENAME = re.compile(r"^([0-9]+)_([A-Za-z0-9_]+)\.(up|down)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up_sql: str
    down_sql: str


class DirtyDatabaseError(Exception):
    def __init__(self, version: int):
        self.version = version
        super().__init__(
            f"database is dirty at version {version}: a migration failed half-way; fix it by "
            f"hand and reset schema_migrations.dirty (e.g. with `migrate force {version}`)"
        )


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migrations in `directory`, sorted by version; every file must belong to a pair."""
    found: dict[int, tuple[str, dict[str, str]]] = {}
    for path in directory.iterdir():
        match = _FILENAME.match(path.name)
        if not match:
            raise ValueError(
                f"{path}: not a migration file name (expected <version>_<name>.up.sql or .down.sql)"
            )
        version, name, direction = int(match[1]), match[2], match[3]
        known_name, sql = found.setdefault(version, (name, {}))
        if known_name != name:
            raise ValueError(f"{path}: version {version} is already used by {known_name!r}")
        sql[direction] = path.read_text()
    migrations = []
    for version, (name, sql) in sorted(found.items()):
        for direction in ("up", "down"):
            if direction not in sql:
                raise ValueError(f"{directory}: {version}_{name}.{direction}.sql is missing")
        migrations.append(Migration(version, name, sql["up"], sql["down"]))
    return migrations


async def current_version(conn: asyncpg.Connection) -> tuple[int | None, bool]:
    """(version, dirty) as recorded in schema_migrations; (None, False) if nothing was applied."""
    # to_regclass rather than catching UndefinedTable: that would abort a caller's transaction.
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return None, False
    row = await conn.fetchrow("SELECT version, dirty FROM schema_migrations LIMIT 1")
    return (None, False) if row is None else (row["version"], row["dirty"])


async def _set_version(conn: asyncpg.Connection, version: int, dirty: bool) -> None:
    # golang-migrate keeps exactly one row, replaced in a transaction of its own.
    async with conn.transaction():
        await conn.execute("TRUNCATE schema_migrations")
        await conn.execute(
            "INSERT INTO schema_migrations (version, dirty) VALUES ($1, $2)", version, dirty
        )


async def migrate(
    dsn: str, directory: Path = MIGRATIONS_DIR, *, target: int | None = None
) -> list[int]:
    """Apply pending up migrations (up to and including `target`); return the versions applied.

    Like golang-migrate, each migration is bracketed by marking the database dirty and clean
    again, so one that fails leaves it dirty, and a dirty database is refused.
    """
    migrations = load_migrations(directory)
    if target is not None and target not in {m.version for m in migrations}:
        raise ValueError(f"no migration with version {target} in {directory}")
    conn = await asyncpg.connect(dsn)
    try:
        # Session-level: released by closing the connection, even after an error.
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version bigint not null primary key, dirty boolean not null)"
        )
        version, dirty = await current_version(conn)
        if dirty:
            raise DirtyDatabaseError(version)
        applied = []
        for m in migrations:
            if (version is not None and m.version <= version) or (
                target is not None and m.version > target
            ):
                continue
            await _set_version(conn, m.version, dirty=True)
            try:
                # No arguments: asyncpg sends the file as one simple query, which PostgreSQL runs
                # as one implicit transaction, just like golang-migrate's Exec.
                await conn.execute(m.up_sql)
            except Exception as e:
                e.add_note(f"while applying migration {m.version}_{m.name}.up.sql")
                raise
            await _set_version(conn, m.version, dirty=False)
            applied.append(m.version)
        return applied
    finally:
        await conn.close()
