"""Resilience: webug keeps answering, with the right status, when the BMDB misbehaves.

What this module adds to every route (a pure ASGI middleware plus error handlers):

- **Outage**: a BMDB that is down, restarting or refusing connections (including a
  query cut by a shutdown, asyncpg's AdminShutdownError) is a 503 "BMDB unreachable,
  retrying" page, never a 500. The pool reconnects on the next request, so pages come
  back as soon as the database does.
- **Unreachable at start**: while no schema has been loaded, a request first tries to
  load it (at most one attempt per second, one at a time), so webug comes back within
  a second of the BMDB instead of when the refresh task's backoff (up to 60 s) ends.
- **Schema drift**: a query that fails because the schema changed under webug (a tag
  table dropped or renamed, a column altered: UndefinedTableError, UndefinedColumnError,
  InvalidCachedStatementError...) re-reflects the schema at once and runs the request
  ONE more time. If it still fails, a 503 page says the schema does not match.
- **Names the schema does not know**: a request naming a tag (`has=`, `lacks=`,
  `/machine/{id}/tag/X/...`) or enum label the reflected schema lacks (NotInSchema) may
  name one created since: it re-reflects, at most as often as "refresh now", and runs
  the request once more; then the page's 400 (or 404) says what there is.
- **Cut answers**: a BMDB error after an answer started (a streamed CSV between two of
  its statements) can only cut it: the log says so in one line, without a traceback, and
  the server closes the connection (the client sees the answer incomplete).
- **Busy pool**: pages share all BMDB connections but one, which stays free for /healthz
  (and the schema refresh). A page that has waited WEBUG_POOL_WAIT_SECONDS for a
  connection answers 503 instead of hanging; a locked table or a slow query holds a
  connection for at most the statement timeout (then 504, app/main.py). /healthz and
  /metrics do not wait for a page's turn.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.bmdb.reflection import NotInSchema
from app.bmdb.schema_cache import SchemaCache
from app.config import Settings
from app.http.errors import TITLES, bmdb_unavailable, error_response
from app.render import urls

log = logging.getLogger(__name__)

# The schema under webug changed: re-reflect and try once more.
SCHEMA_DRIFT: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedColumnError,
    asyncpg.UndefinedObjectError,  # e.g. an enum type dropped
    asyncpg.UndefinedFunctionError,  # e.g. `=` between a column whose type changed and $1
    asyncpg.DatatypeMismatchError,
    asyncpg.InvalidCachedStatementError,  # prepared statement of the old schema
    asyncpg.exceptions.OutdatedSchemaCacheError,  # asyncpg's type cache of the old schema
)
# The BMDB is going away or cannot take us (beyond app.bmdb.connection.DB_UNAVAILABLE): 503 as well.
# QueryCanceledError is an OperatorInterventionError too, but keeps its own 504 handler.
ALSO_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
)

KICK_INTERVAL_S = 1.0  # at most one "is the BMDB back?" schema load per second
KICK_TIMEOUT_S = 5.0  # ... and a request waits this long for it at most
REFRESH_TIMEOUT_S = 10.0  # re-reflection after drift

# Paths that never touch the BMDB: no admission, no schema load.
NO_DB_PREFIXES = (urls.STATIC + "/", urls.OPENAPI, urls.FAVICON)
NO_DB_GETS = frozenset({urls.SCHEMA, urls.API})
PROBES = frozenset({urls.HEALTH, urls.METRICS})  # may use the connection pages leave free


class ResponseCut(Exception):
    """An answer cut off by a BMDB error after it started, already logged: raised so the
    server closes the connection (the client must not take the answer as complete)."""


class _AlreadyLogged(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" traceback of a ResponseCut."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ResponseCut))


_ALREADY_LOGGED = _AlreadyLogged()


class _LoopState:
    """Locks and counters of one event loop (a TestClient runs each app in a new one)."""

    def __init__(self, page_slots: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.pages = asyncio.Semaphore(page_slots)
        self.last_kick = float("-inf")


class ResilienceMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.page_slots = max(1, settings.pool_max_size - 1)
        self.pool_wait = settings.pool_wait_seconds
        self._state: _LoopState | None = None

    def _loop_state(self) -> _LoopState:
        if self._state is None or self._state.loop is not asyncio.get_running_loop():
            self._state = _LoopState(self.page_slots)
        return self._state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(NO_DB_PREFIXES) or (scope["method"] == "GET" and path in NO_DB_GETS):
            await self.app(scope, receive, send)
            return
        state = self._loop_state()
        cache: SchemaCache | None = getattr(scope["app"].state, "schema_cache", None)
        if cache is not None and not cache.loaded:
            await self._kick(state, cache)
        if path in PROBES:
            await self._call_with_drift_retry(state, cache, scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.pool_wait):  # cancels the wait cleanly, no lost slot
                await state.pages.acquire()
        except TimeoutError:
            log.warning("no BMDB connection for %s within %.1f s", path, self.pool_wait)
            response = error_response(
                Request(scope),
                503,
                "webug is busy",
                f"Every BMDB connection webug may use has been busy for {self.pool_wait:g} s "
                "(slow queries or locked tables). Try again in a moment.",
            )
            await response(scope, receive, send)
            return
        try:
            await self._call_with_drift_retry(state, cache, scope, receive, send)
        finally:
            state.pages.release()

    async def _kick(self, state: _LoopState, cache: SchemaCache) -> None:
        """No schema yet: try to load it now, at most once per KICK_INTERVAL_S, one at a time."""
        now = time.monotonic()
        if cache.refreshing or now - state.last_kick < KICK_INTERVAL_S:
            return
        state.last_kick = now
        try:
            await asyncio.wait_for(cache.refresh(), timeout=KICK_TIMEOUT_S)
            log.info("BMDB reachable again: schema loaded")
        except Exception as exc:  # whatever it is, the request itself answers
            log.debug("BMDB still unreachable: %s: %s", type(exc).__name__, exc)

    async def _refresh_after_drift(self, cache: SchemaCache, since: float) -> None:
        """Re-reflect, unless a reflection that started after `since` already did (or is
        doing) it: one that started earlier may predate the change, so it never answers,
        however recent (the "refresh now" minimum interval does not apply here)."""
        try:
            # Every pooled connection caches prepared statements and type codecs of the old
            # schema (InvalidCachedStatementError next): let the pool replace them all.
            await asyncio.wait_for(
                cache.refresh(since=since, fresh_connections=True), timeout=REFRESH_TIMEOUT_S
            )
        except Exception as exc:  # the retry below answers with whatever it finds
            log.warning("re-reflection after schema drift failed: %s", exc)

    async def _refresh_for_unknown(self, cache: SchemaCache | None, exc: NotInSchema) -> bool:
        """Re-reflect for a name the schema lacks, at most as often as "refresh now" (a
        crowd of unknown names reflects once): whether a newer schema came of it."""
        if cache is None:
            return False
        seen = cache.schema
        try:
            await asyncio.wait_for(cache.refresh_now(), timeout=REFRESH_TIMEOUT_S)
        except Exception as reflect_error:  # the request then answers with what it knew
            log.warning("re-reflection after %r failed: %s", str(exc), reflect_error)
            return False
        return cache.schema is not seen

    async def _call_with_drift_retry(
        self,
        state: _LoopState,
        cache: SchemaCache | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        progress = {"started": False, "finished": False}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                progress["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                progress["finished"] = True
            await send(message)

        try:
            await self._call_retrying_drift(state, cache, scope, receive, tracking_send, progress)
        except asyncpg.exceptions.InternalClientError as exc:
            # asyncpg's protocol state on a connection the BMDB just dropped ("cannot switch
            # to state 15; another operation is in progress"), seen during shutdowns.
            if progress["started"]:
                raise
            log.warning("BMDB connection broken on %s: %s", scope["path"], exc)
            response = await bmdb_unavailable(Request(scope), exc)
            await response(scope, receive, send)
        except Exception as exc:
            # The BMDB went away after the page was sent (when pages held a transaction,
            # while it was ended; today a page's connection is back in the pool before it
            # answers): the client has its whole answer, the pool drops the connection.
            if progress["finished"] and _bmdb_error(exc):
                log.warning("BMDB error after %s was answered: %s", scope["path"], _bmdb_error(exc))
                return
            if progress["started"] and (cause := _bmdb_error(exc)):
                log.warning(
                    "%s %s cut: the BMDB failed while it was being sent: %s: %s",
                    scope["method"], _target(scope), type(cause).__name__, cause,
                )  # fmt: skip
                raise ResponseCut() from None
            raise

    async def _call_retrying_drift(
        self,
        state: _LoopState,
        cache: SchemaCache | None,
        scope: Scope,
        receive: Receive,
        send: Send,
        progress: dict[str, bool],
    ) -> None:
        begun = time.monotonic()
        retryable = scope["method"] in ("GET", "HEAD") and cache is not None
        try:
            await self.app(dict(scope), receive, send)
            return
        except SCHEMA_DRIFT as exc:
            if progress["started"] or not retryable:
                raise
            log.warning(
                "schema drift on %s (%s: %s): re-reflecting and retrying once",
                scope["path"],
                type(exc).__name__,
                exc,
            )
            assert cache is not None
            await self._refresh_after_drift(cache, begun)
        except NotInSchema as exc:
            if progress["started"]:
                raise
            if not retryable or not await self._refresh_for_unknown(cache, exc):
                await _not_in_schema(scope, receive, send, exc)
                return
            log.info("%s: re-reflected after %s; retrying once", scope["path"], exc)
        try:
            await self.app(dict(scope), receive, send)
        except NotInSchema as exc:
            if progress["started"]:
                raise
            await _not_in_schema(scope, receive, send, exc)
        except SCHEMA_DRIFT as exc:
            if progress["started"]:
                raise
            log.error("schema drift on %s persists after re-reflection: %s", scope["path"], exc)
            response = error_response(
                Request(scope),
                503,
                "BMDB schema does not match",
                "The BMDB's schema changed and this page's query still fails after "
                f"re-reading it: {type(exc).__name__}: {exc}",
            )
            await response(scope, receive, send)


async def _not_in_schema(scope: Scope, receive: Receive, send: Send, exc: NotInSchema) -> None:
    response = error_response(Request(scope), exc.status, TITLES.get(exc.status, "Error"), str(exc))
    await response(scope, receive, send)


def _bmdb_error(exc: BaseException | None) -> BaseException | None:
    """The asyncpg or connection error in `exc` or what caused it (Starlette wraps it in a
    RuntimeError when a handler exists but the response has already started)."""
    while exc is not None:
        if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
            return exc
        exc = exc.__cause__
    return None


def _target(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return scope["path"] + (f"?{query}" if query else "")


def install_resilience(app: FastAPI, settings: Settings) -> None:
    """Schema-drift retry, outage handling and pool admission for every route."""
    app.add_middleware(ResilienceMiddleware, settings=settings)
    logging.getLogger("uvicorn.error").addFilter(_ALREADY_LOGGED)  # once: the same filter

    for exc_class in ALSO_UNAVAILABLE:
        app.add_exception_handler(exc_class, bmdb_unavailable)
