"""Schema reflection: tag types are discovered from information_schema, never hard-coded.

A tag type is a table `machine_*` in the current schema with a `machine_id` column;
its other columns are the tag's fields. A migration may add one to a running BMDB.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TypeVar

import asyncpg

log = logging.getLogger(__name__)
T = TypeVar("T")

PROCESS_ENUM = "process"  # the enum type of work.process and work_backoff.process

# Types a page's document carries in a form of their own (app/bmdb/columns.py; element
# types for arrays too). Anything else travels as its text form, so an unknown type added
# by a migration still shows.
NATIVE_UDTS = frozenset({
    "text", "varchar", "bpchar", "name", "char", "bytea", "int2", "int4", "int8", "numeric",
    "float4", "float8", "bool", "uuid", "timestamp", "timestamptz", "date", "time", "timetz",
    "interval", "json", "jsonb", "inet", "cidr", "macaddr", "oid",
})  # fmt: skip

_TAG_COLUMNS_SQL = r"""
SELECT c.table_name, c.column_name, c.data_type, c.udt_name, c.is_nullable = 'YES' AS nullable
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_schema = current_schema()
  AND t.table_type = 'BASE TABLE'
  AND c.table_name LIKE 'machine\_%'
ORDER BY c.table_name, c.ordinal_position
"""

# The other tables of the current schema (work, work_backoff, sessions, ...): workflows
# (app/bmdb/workflows.py) need to know whether a schema version has them.
_TABLES_SQL = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
"""

# Which user-defined/array types are enums, and their labels in order.
_ENUMS_SQL = """
SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_enum e ON e.enumtypid = t.oid
WHERE t.typname = ANY($1::text[])
GROUP BY t.typname
"""


@dataclass(frozen=True)
class Field:
    name: str
    data_type: str  # as information_schema reports it: text, bigint, USER-DEFINED, ARRAY, ...
    udt_name: str  # the underlying type: int8, provider_status, _text, ...
    nullable: bool
    enum_values: tuple[str, ...] = ()

    @property
    def is_array(self) -> bool:
        return self.data_type == "ARRAY" or self.udt_name.startswith("_")

    @property
    def element_udt(self) -> str:
        return self.udt_name[1:] if self.is_array else self.udt_name

    @property
    def is_enum(self) -> bool:
        return bool(self.enum_values)

    @property
    def read_as_text(self) -> bool:
        """True when the value travels as its text (`::text`): no form of its own."""
        if self.is_enum:
            return self.is_array  # enum arrays need the codec of an anonymous type
        return self.element_udt not in NATIVE_UDTS

    @property
    def human_type(self) -> str:
        if self.is_enum:
            base = f"enum {self.element_udt}"
        elif self.data_type in ("USER-DEFINED", "ARRAY"):
            base = self.element_udt
        else:
            base = self.data_type
        if self.is_array:
            base += "[]"
        return base + ("" if self.nullable else " not null")


@dataclass(frozen=True)
class TagType:
    table: str
    fields: tuple[Field, ...]

    @cached_property  # read for every row of every page
    def name(self) -> str:
        return display_name(self.table)

    @cached_property  # looked up for every value of a JSON twin
    def _by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)


@dataclass(frozen=True)
class Schema:
    version: str  # schema_migrations.version, or "unknown"
    dirty: bool | None
    tag_types: tuple[TagType, ...]
    skipped_tables: tuple[str, ...] = ()
    tables: frozenset[str] = frozenset()  # every base table of the current schema
    processes: tuple[str, ...] = ()  # the labels of the `process` enum (work, backoffs)
    reflected_at: datetime = field(default_factory=lambda: datetime.now(UTC), compare=False)
    # What pages compute from the schema once (app/bmdb/machines.py's layouts), dropped
    # with it when a refresh swaps in a new one.
    _derived: dict = field(default_factory=dict, compare=False, repr=False)

    def derived(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, once per schema and `key`."""
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = compute()
            return value

    @cached_property
    def layout_key(self) -> str:
        """Changes when the reflected tag types do: a key for HTML rendered from them, and
        part of poll tags. A digest of their names and types, the same in every process
        (`hash()` of strings is salted per process: workers and replicas would disagree)."""
        return hashlib.blake2b(repr(self.tag_types).encode(), digest_size=8).hexdigest()

    def tag(self, name_or_table: str) -> TagType | None:
        return next(
            (t for t in self.tag_types if name_or_table in (t.name, t.table)),
            None,
        )

    def has_field(self, name_or_table: str, column: str | None = None) -> bool:
        """Whether this BMDB has that tag table, and its `column` when one is named: what a
        feature needs to know before it reads them."""
        tag = self.tag(name_or_table)
        return tag is not None and (column is None or tag.field(column) is not None)


def display_name(table: str) -> str:
    """`machine_os_installation_request` -> `OSInstallationRequest`."""
    words = table.removeprefix("machine_").split("_")
    return "".join("OS" if w == "os" else w[:1].upper() + w[1:] for w in words if w)


def quote_ident(name: str) -> str:
    """Quote an identifier that came from the database (reflection)."""
    return '"' + name.replace('"', '""') + '"'


class NotInSchema(LookupError):
    """A name the reflected schema does not know (a tag type, a field, an enum label). It
    may be new since the last reflection: app/http/resilience.py re-reflects (at most as
    often as "refresh now") and tries the request once more before answering `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def reflect(conn: asyncpg.Connection) -> Schema:
    version, dirty = await schema_version(conn)
    columns: dict[str, list[asyncpg.Record]] = {}
    for row in await conn.fetch(_TAG_COLUMNS_SQL):
        columns.setdefault(row["table_name"], []).append(row)

    udts = sorted({r["udt_name"].lstrip("_") for rows in columns.values() for r in rows})
    udts.append(PROCESS_ENUM)
    enums = {r["typname"]: tuple(r["labels"]) for r in await conn.fetch(_ENUMS_SQL, udts)}

    tag_types, skipped = [], []
    for table, rows in columns.items():
        if not any(r["column_name"] == "machine_id" for r in rows):
            log.info("skipping table %s: it has no machine_id column, so it is not a tag", table)
            skipped.append(table)
            continue
        fields = tuple(
            Field(
                name=r["column_name"],
                data_type=r["data_type"],
                udt_name=r["udt_name"],
                nullable=r["nullable"],
                enum_values=enums.get(r["udt_name"].lstrip("_"), ()),
            )
            for r in rows
            if r["column_name"] != "machine_id"
        )
        tag_types.append(TagType(table, fields))
    tag_types.sort(key=lambda t: t.name)
    tables = frozenset(r["table_name"] for r in await conn.fetch(_TABLES_SQL))
    return Schema(
        version,
        dirty,
        tuple(tag_types),
        tuple(skipped),
        tables=tables,
        processes=enums.get(PROCESS_ENUM, ()),
    )


async def schema_version(conn: asyncpg.Connection) -> tuple[str, bool | None]:
    """golang-migrate's bookkeeping row; a BMDB without it has version "unknown". One
    tiny statement: the schema cache checks it often (a changed one means a migration)."""
    try:
        row = await conn.fetchrow("SELECT version, dirty FROM schema_migrations LIMIT 1")
    except asyncpg.UndefinedTableError:
        return "unknown", None
    if row is None:
        return "unknown", None
    return str(row["version"]), bool(row["dirty"])
