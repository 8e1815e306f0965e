"""The FastAPI application: lifespan (pool, schema refresh, demo), routes, error pages.

Run with `uvicorn app.main:app`. With no WEBUG_DSN it serves the embedded demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from app.bmdb import dsn as dsn_tools
from app.bmdb import workflows
from app.bmdb.connection import DB_UNAVAILABLE, Database
from app.bmdb.counts import CountCache
from app.bmdb.history_reads import HistoryReads
from app.bmdb.schema_cache import SchemaCache
from app.config import Settings, load_settings
from app.fleet.collector import FleetMetrics, start_fleet_stats
from app.http.bodies import BoundedBody
from app.http.errors import InternalErrorPage, install_error_pages
from app.http.head import HeadAsGet
from app.http.observability import install_observability
from app.http.parameters import checked_parameters
from app.http.resilience import install_resilience
from app.http.security import install_security
from app.pages import (
    activity,
    api_page,
    backoffs,
    failures,
    favicon,
    forecast,
    health,
    machine,
    machines,
    overview,
    schema_page,
    search,
    session,
    sessions,
    tags,
    watch,
    work,
)
from app.render import protobuf_names, urls
from app.render.environment import APP_DIR, build_environment

log = logging.getLogger("webug")

# A page allocates thousands of short-lived containers (records, dicts, tuples), which
# reference counting frees. At the default generation-0 threshold (700) the cycle
# collector still ran several times per page: about 1 ms of a 6 ms list page (A/B on
# Server-Timing, 100k machines). Collect cycles less often; what they hold is small.
GC_THRESHOLDS = (50_000, 20, 100)


async def _stop(task: asyncio.Task | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    gc.set_threshold(*GC_THRESHOLDS)
    simulator: asyncio.Task | None = None
    if settings.demo:
        from app.demo.embedded import prepare_demo
        from app.demo.simulate import run_simulator

        bmdb_dsn = await prepare_demo(settings.demo_data_dir, settings.demo_machines)
        if settings.demo_simulate:
            simulator = asyncio.create_task(run_simulator(bmdb_dsn), name="fleet-simulator")
    else:
        bmdb_dsn = settings.dsn
    app.state.bmdb_label = dsn_tools.describe(bmdb_dsn)

    db = Database(bmdb_dsn, settings)
    await db.open()
    cache = SchemaCache(db, settings.schema_refresh_seconds)
    try:
        # One quick try so the first page is ready; if the BMDB is down the task keeps trying.
        await asyncio.wait_for(cache.refresh(), timeout=10)
    except (*DB_UNAVAILABLE, asyncpg.PostgresError) as exc:
        log.warning("BMDB not reachable at start (%s); pages answer 503 until it is", exc)
    app.state.db, app.state.schema_cache = db, cache
    refresher = asyncio.create_task(cache.run(), name="schema-refresh")
    fleet_stats = start_fleet_stats(app, bmdb_dsn, cache)
    try:
        yield
    finally:
        await _stop(fleet_stats)
        await _stop(refresher)
        await _stop(simulator)
        await db.close()
        if settings.demo:  # uvicorn re-raises its signal after this: no atexit runs
            from app.demo.embedded import stop_server

            await asyncio.to_thread(stop_server, settings.demo_data_dir)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="webug",
        description="Web debug interface for the BMDB",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc run a CDN's script on this origin: /api instead.
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(checked_parameters)],  # before every route's own
    )
    app.state.settings = settings or load_settings()
    app.state.bmdb_label = "(connecting)"
    app.state.query_parameters = {}  # app/http/parameters.py: each route's, once
    app.state.count_cache = CountCache(ttl=app.state.settings.count_cache_seconds)
    app.state.history_reads = HistoryReads(
        ttl=app.state.settings.history_cache_seconds,
        budget_ms=app.state.settings.history_timeout_ms,
    )
    try:  # read once, now: a bad file stops webug at start with one line
        app.state.workflows = workflows.with_file(app.state.settings.workflows)
    except ValueError as exc:
        raise SystemExit(f"webug: invalid configuration: WEBUG_WORKFLOWS: {exc}") from None
    app.state.proto_names = protobuf_names.from_settings(
        app.state.settings.proto_descriptors, app.state.settings.proto_columns
    )
    app.state.templates = build_environment(app.state.proto_names)
    app.mount(urls.STATIC, StaticFiles(directory=APP_DIR / "static"), name="static")
    app.include_router(health.router)
    app.include_router(favicon.router)
    app.include_router(machines.router)
    app.include_router(machine.router)
    app.include_router(sessions.router)
    app.include_router(session.router)
    app.include_router(work.router)
    app.include_router(backoffs.router)
    app.include_router(tags.router)
    app.include_router(search.router)
    app.include_router(watch.router)
    app.include_router(schema_page.router)
    app.include_router(overview.router)
    app.include_router(failures.router)
    app.include_router(activity.router)
    app.include_router(forecast.router)
    app.include_router(api_page.router)
    install_error_pages(app)
    app.add_middleware(HeadAsGet)  # innermost: the router sees a HEAD as its GET
    install_resilience(app, app.state.settings)
    app.add_middleware(BoundedBody)  # outside resilience: a body is read before a page slot
    app.add_middleware(InternalErrorPage)
    install_security(app, app.state.settings)
    install_observability(app, app.state.settings)
    app.state.observability.scrape_time.register(FleetMetrics(app))
    return app


app = create_app()
