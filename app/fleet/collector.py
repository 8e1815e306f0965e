"""The fleet gauges' background collection, and their place on /metrics.

Every WEBUG_FLEET_STATS_SECONDS (default 60, like upstream's exporter) the process that
holds the host's lock (app/fleet/host_share.py) runs the statements of
app/bmdb/fleet_stats.py on a connection of its own (one, under WEBUG_HISTORY_TIMEOUT_MS,
as the other fleet-wide reads): the counts, then the hardware reports page by page, each
page decoded a slice at a time. Then it keeps the gauges. A scrape never queries: it
answers with the last values at once (the holder's own, or the holder's file in the other
processes), and when the BMDB is down those stay,
`webug_fleet_stats_collected_timestamp_seconds` saying how old they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
from fastapi import FastAPI
from prometheus_client.core import GaugeMetricFamily

from app.bmdb import fleet_stats
from app.bmdb.connection import DB_UNAVAILABLE, Database, Dialect
from app.bmdb.fleet_stats import decode, fleet_stats_statement, hardware_statement
from app.bmdb.reflection import Schema
from app.bmdb.schema_cache import SchemaCache, SchemaNotLoaded
from app.bmdb.workflows import WorkflowSpec
from app.config import Settings
from app.fleet.gauges import Family, families
from app.fleet.hardware import HardwareStats, add_reports
from app.fleet.host_share import HostShare, share_directory, share_key

log = logging.getLogger("webug.fleet")


class FleetStats:
    """The collection task of one application, and what it last collected."""

    def __init__(self, settings: Settings, specs: tuple[WorkflowSpec, ...], dsn: str) -> None:
        self.settings, self.specs, self.dsn = settings, specs, dsn
        specs_json = json.dumps([s.model_dump(mode="json") for s in specs])
        self.share = HostShare(share_directory(), share_key(dsn, specs_json))
        self.latest: dict[str, Any] | None = None  # the snapshot this process collected
        self.collections = 0  # collections that read the BMDB (tests watch it)

    @property
    def interval(self) -> float:
        return self.settings.fleet_stats_seconds

    def snapshot(self) -> dict[str, Any] | None:
        """The last values: this process's own when it collects, else the collector's."""
        return self.latest if self.share.holding else self.share.read()

    async def run(self, schema_cache: SchemaCache) -> None:
        # One connection, budgeted like the other fleet-wide reads.
        database = Database(self.dsn, self.settings.model_copy(update={
            "pool_max_size": 1, "statement_timeout_ms": self.settings.history_timeout_ms,
        }))  # fmt: skip
        await database.open()
        try:
            while True:
                if self.share.try_hold():
                    await self.collect_or_say_why_not(database, schema_cache)
                await asyncio.sleep(self.interval)
        finally:
            self.share.release()
            await database.close()

    async def collect_or_say_why_not(self, database: Database, schema_cache: SchemaCache) -> None:
        """A collection; when it fails, the last values stay and the failure is counted."""
        try:
            await self.collect(database, schema_cache.schema)
            return
        except (*DB_UNAVAILABLE, asyncpg.PostgresError, SchemaNotLoaded) as exc:
            log.warning("fleet statistics not collected: %s: %s", type(exc).__name__, exc)
        except Exception:  # a bug must not end the task: the next interval tries again
            log.exception("fleet statistics not collected")
        failed = dict(self.latest or {"families": []})
        failed["failures"] = failed.get("failures", 0) + 1
        self._keep(failed)

    async def collect(self, database: Database, schema: Schema) -> None:
        started = time.perf_counter()
        steps = dict.fromkeys(("counts_statement", "hardware_statements", "hardware_decode"), 0.0)
        statement = fleet_stats_statement(schema, self.specs)
        async with database.connection() as conn:
            dialect = database.dialect
            assert dialect is not None  # known once a connection is open
            doc = await conn.fetchval(dialect.statement(statement.sql), *statement.params)
            steps["counts_statement"] = time.perf_counter() - started
            hardware = await read_hardware(conn, dialect, schema, steps)
        self.collections += 1
        stats = decode(statement, schema, json.loads(doc))
        self._keep({
            "families": [f.to_json() for f in families(stats, hardware)],
            "collected_at": time.time(),
            "duration": time.perf_counter() - started,
            "steps": steps,
            "failures": 0,
        })  # fmt: skip

    def _keep(self, snapshot: dict[str, Any]) -> None:
        snapshot["interval"] = self.interval
        self.latest = snapshot
        try:
            self.share.publish(snapshot)
        except OSError as exc:  # the other processes keep the last file they read
            log.warning("fleet statistics not shared with this host's other workers: %s", exc)


async def read_hardware(
    conn: asyncpg.Connection, dialect: Dialect, schema: Schema, steps: dict[str, float]
) -> HardwareStats | None:
    """The reports summed, a page of them at a time (None: this BMDB has none); the time
    spent reading and decoding added to `steps`."""
    first, after = hardware_statement(schema, first=True), ()
    if first is None:
        return None
    hardware = HardwareStats()
    while True:
        read = time.perf_counter()
        sql = first if not after else hardware_statement(schema, first=False)
        rows = await conn.fetch(dialect.statement(sql), *after)
        decoded = time.perf_counter()
        await add_reports(hardware, rows)
        steps["hardware_statements"] += decoded - read
        steps["hardware_decode"] += time.perf_counter() - decoded
        if len(rows) < fleet_stats.HARDWARE_PAGE:
            return hardware
        after = (rows[-1]["machine_id"],)


def meta_families(snapshot: dict[str, Any]) -> Iterator[Family]:
    """How old, how long, how often the values are, and whether the last tries failed."""
    yield Family(
        "webug_fleet_stats_interval_seconds", "WEBUG_FLEET_STATS_SECONDS of the collector"
    ).add(snapshot["interval"])
    yield Family(
        "webug_fleet_stats_consecutive_failures",
        "collections that failed since the last that worked (the values stay)",
    ).add(snapshot["failures"])
    if "collected_at" not in snapshot:
        return
    yield Family(
        "webug_fleet_stats_collected_timestamp_seconds",
        "when the fleet gauges were collected (Unix time): time() minus it is their age",
    ).add(snapshot["collected_at"])
    yield Family(
        "webug_fleet_stats_duration_seconds", "how long the last collection took"
    ).add(snapshot["duration"])
    steps = Family(
        "webug_fleet_stats_step_duration_seconds",
        "the last collection's steps: its statements (the counts, the pages of hardware"
        " reports) and the hardware decode",
        ("step",),
    )
    for step, seconds in snapshot["steps"].items():
        steps.add(seconds, step)
    yield steps


class FleetMetrics:
    """A prometheus_client collector: the fleet gauges as last collected, never a query."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        settings: Settings = self.app.state.settings
        if settings.external_url is not None:
            info = GaugeMetricFamily(
                "webug_external_url_info", "WEBUG_EXTERNAL_URL: where alerts and dashboards"
                " link to", labels=["url"],
            )  # fmt: skip
            info.add_metric([settings.external_url], 1)
            yield info
        fleet: FleetStats | None = getattr(self.app.state, "fleet_stats", None)
        snapshot = fleet.snapshot() if fleet is not None else None
        if snapshot is None:
            return
        for family in [*map(Family.from_json, snapshot["families"]), *meta_families(snapshot)]:
            gauge = GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
            for label_values, value in family.samples:
                gauge.add_metric(list(label_values), value)
            yield gauge


def start_fleet_stats(app: FastAPI, dsn: str, schema_cache: SchemaCache) -> asyncio.Task | None:
    """The collection task (None when WEBUG_FLEET_STATS_SECONDS is 0)."""
    settings: Settings = app.state.settings
    if settings.fleet_stats_seconds == 0:
        return None
    fleet = app.state.fleet_stats = FleetStats(settings, app.state.workflows, dsn)
    return asyncio.create_task(fleet.run(schema_cache), name="fleet-stats")
