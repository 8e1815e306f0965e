"""Reflection on a real PostgreSQL: tag discovery, every column type, schema version."""

from __future__ import annotations

import re
from uuid import UUID

import asyncpg

from app.bmdb import machines
from app.bmdb.connection import Database, Reader
from app.bmdb.machines import MachineLayout
from app.bmdb.reflection import display_name, reflect
from app.config import Settings
from app.model.entities import machine_from
from tests.support import execute, webug_client

UPSTREAM_TAGS = {
    "AgentHeartbeat",
    "AgentStarted",
    "HardwareReport",
    "OSInstallationReport",
    "OSInstallationRequest",
    "Provided",
}


async def _reflect(dsn: str):
    conn = await asyncpg.connect(dsn)
    try:
        return await reflect(conn)
    finally:
        await conn.close()


def test_display_names_follow_bmdb_convention():
    assert display_name("machine_agent_started") == "AgentStarted"
    assert display_name("machine_os_installation_request") == "OSInstallationRequest"
    assert display_name("machine_provided") == "Provided"


async def test_upstream_schema_reflects_tags_fields_and_version(migrated_db_dsn):
    schema = await _reflect(migrated_db_dsn)
    assert {t.name for t in schema.tag_types} == UPSTREAM_TAGS
    assert (schema.version, schema.dirty) == ("1698288577", False)
    provided = schema.tag("Provided")
    status = provided.field("provider_status")
    assert status.is_enum and status.nullable
    assert status.enum_values == (
        "Missing",
        "Provisioning",
        "ProvisioningFailedPermanent",
        "Running",
        "Stopped",
        "Unknown",
    )
    assert provided.field("machine_id") is None  # the key is not a field
    assert schema.tag("OSInstallationRequest").field("generation").human_type == "bigint not null"


async def test_table_without_machine_id_is_skipped(migrated_db_dsn):
    await execute(migrated_db_dsn, "CREATE TABLE machine_notes (note text)")
    schema = await _reflect(migrated_db_dsn)
    assert "machine_notes" in schema.skipped_tables
    assert schema.tag("Notes") is None


async def test_missing_schema_migrations_means_unknown_version(migrated_db_dsn):
    await execute(migrated_db_dsn, "DROP TABLE schema_migrations")
    schema = await _reflect(migrated_db_dsn)
    assert (schema.version, schema.dirty) == ("unknown", None)
    assert {t.name for t in schema.tag_types} == UPSTREAM_TAGS


# A tag table of the kind a later migration could add: every type webug must show.
EVERY_TYPE_TABLE = r'''
CREATE TYPE mood AS ENUM ('calm', 'angry');
CREATE TYPE pair AS (a int, b text);
CREATE TABLE "machine_odd ""tag""" (
    machine_id uuid PRIMARY KEY REFERENCES machines (machine_id),
    t text, v varchar(10), b bytea, i2 int2, i4 int4, i8 int8, n numeric(10, 3), ok bool,
    u uuid, tz timestamptz, ts timestamp, e mood, j jsonb, js json, ip inet, net cidr,
    ints int[], moods mood[], composite pair, range int4range, money_col money, vec tsvector,
    "select" text, iv interval, d date
);
INSERT INTO machines (machine_id, machine_created_at)
VALUES ('11111111-1111-1111-1111-111111111111', now());
INSERT INTO "machine_odd ""tag""" VALUES (
    '11111111-1111-1111-1111-111111111111',
    'multi' || chr(10) || 'line', 'short', '\xdeadbeef', 2, 4, 8, 3.142, true,
    '22222222-2222-2222-2222-222222222222', '2026-01-02 03:04:05+00', '2026-01-02 03:04:05',
    'angry', '{"k": [1, 2]}', '{"j": true}', '10.1.2.3', '10.0.0.0/8', '{1,2,3}',
    '{calm,angry}', ROW(1, 'x'), '[1,5)', 12.5, 'quick brown fox', 'reserved word',
    '1 day 2 hours', '2026-02-03'
);
'''


async def test_every_postgresql_type_comes_through(migrated_db_dsn):
    await execute(migrated_db_dsn, EVERY_TYPE_TABLE)
    schema = await _reflect(migrated_db_dsn)
    tag = schema.tag('Odd "tag"')
    assert tag is not None, [t.name for t in schema.tag_types]
    assert tag.field("e").is_enum and tag.field("moods").is_array
    assert tag.field("composite").read_as_text and tag.field("range").read_as_text

    db = Database(migrated_db_dsn, Settings(dsn=migrated_db_dsn))
    await db.open()
    try:
        layout = MachineLayout.full(schema)
        machine_id = UUID("11111111-1111-1111-1111-111111111111")
        doc = await machines.machine(Reader(db), layout, machine_id)
        machine = machine_from(doc.machine, layout)
    finally:
        await db.close()
    values = machine.tags['Odd "tag"']
    assert values["t"] == "multi\nline"
    assert values["b"].data == b"\xde\xad\xbe\xef"
    assert values["e"] == "angry"
    assert values["moods"] == ["calm", "angry"]
    assert values["ints"] == [1, 2, 3]
    assert values["composite"] == "(1,x)"
    assert values["range"] == "[1,5)"
    assert values["vec"] == "'brown' 'fox' 'quick'"
    assert values["select"] == "reserved word"
    assert str(values["ip"]) == "10.1.2.3"


def test_machine_page_shows_a_tag_table_of_unseen_types(migrated_db_dsn):
    from tests.support import run_sync

    run_sync(execute(migrated_db_dsn, EVERY_TYPE_TABLE))
    with webug_client(migrated_db_dsn) as client:
        listing = client.get("/")
        assert listing.status_code == 200
        assert "Odd &#34;tag&#34;" in listing.text or "Odd &quot;tag&quot;" in listing.text
        page = client.get("/machine/11111111-1111-1111-1111-111111111111")
    assert page.status_code == 200
    assert re.search(r"reserved word", page.text)
