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
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.bmdb import dsn as dsn_tools
from app.bmdb.connection import DB_UNAVAILABLE, Database
from app.bmdb.counts import CountCache
from app.bmdb.schema_cache import SchemaCache, SchemaNotLoaded
from app.config import Settings, load_settings
from app.http.observability import install_observability
from app.http.resilience import install_resilience
from app.http.security import install_security
from app.pages import (
    api_page,
    health,
    machine_detail,
    machines,
    overview,
    schema_page,
    search,
    sessions,
)
from app.render.templating import APP_DIR, render

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
    try:
        yield
    finally:
        await _stop(refresher)
        await _stop(simulator)
        await db.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="webug",
        description="Web debug interface for the BMDB",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc run a CDN's script on this origin: /api instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings or load_settings()
    app.state.bmdb_label = "(connecting)"
    app.state.count_cache = CountCache(ttl=app.state.settings.count_cache_seconds)
    app.mount("/static", StaticFiles(directory=APP_DIR / "static"), name="static")
    app.include_router(health.router)
    app.include_router(machines.router)
    app.include_router(machine_detail.router)
    app.include_router(sessions.router)
    app.include_router(search.router)
    app.include_router(schema_page.router)
    app.include_router(overview.router)
    app.include_router(api_page.router)
    _install_error_pages(app)
    install_resilience(app, app.state.settings)
    app.add_middleware(InternalErrorPage)
    install_security(app, app.state.settings)
    install_observability(app, app.state.settings)
    return app


class InternalErrorPage:
    """Any other exception of a page is a 500 error page, never a stack trace.

    A middleware, not `exception_handler(Exception)`: Starlette answers that one from
    its outermost layer, outside every middleware, so the page would miss the security
    headers and the request ID. This one is inside SecurityMiddleware and outside
    ResilienceMiddleware, which must see schema-drift errors to retry.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # too late for a page: the server closes the connection
                raise
            log.exception("unhandled error on %s", scope["path"])
            response = _error_page(
                Request(scope),
                500,
                "Internal error",
                "webug failed to render this page; the error is in its log.",
            )
            await response(scope, receive, send)


def _error_page(request: Request, status: int, title: str, detail: str):
    context = {"status": status, "title": title, "detail": detail}
    return render(
        request,
        "templates/error.html",
        context,
        status_code=status,
        data=lambda: {"status": status, "error": title, "detail": detail},
    )


def _install_error_pages(app: FastAPI) -> None:
    """Every failure is a page with the right status, never a stack trace."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not found", 400: "Bad request", 405: "Method not allowed"}
        return _error_page(
            request, exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail)
        )

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}"
            for err in exc.errors()
        )
        return _error_page(request, 400, "Bad request", detail)

    @app.exception_handler(SchemaNotLoaded)
    async def not_ready(request: Request, exc: SchemaNotLoaded):
        return _error_page(
            request,
            503,
            "BMDB unreachable, retrying",
            "webug has not been able to read the BMDB schema yet.",
        )

    @app.exception_handler(asyncpg.QueryCanceledError)
    async def timed_out(request: Request, exc: asyncpg.QueryCanceledError):
        return _error_page(
            request,
            504,
            "Query timed out",
            f"The BMDB did not answer within the statement timeout: {exc}",
        )

    for unavailable in DB_UNAVAILABLE:

        @app.exception_handler(unavailable)
        async def db_down(request: Request, exc: Exception):
            return _error_page(
                request, 503, "BMDB unreachable, retrying", f"{type(exc).__name__}: {exc}"
            )


app = create_app()
