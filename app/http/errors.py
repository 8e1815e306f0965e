"""Error pages: every failure is a page (or, when asked for, JSON) with the right status,
never a stack trace. The one place that renders them."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.bmdb.connection import CONFLICTS, DB_UNAVAILABLE
from app.bmdb.schema_cache import SchemaNotLoaded
from app.model.entities import ErrorPage
from app.render.templating import respond

log = logging.getLogger("webug")

TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}


def error_response(request: Request, status: int, title: str, detail: str) -> Response:
    return respond(
        request,
        "templates/error.html",
        ErrorPage(status=status, error=title, detail=detail),
        status_code=status,
    )


async def bmdb_unavailable(request: Request, exc: BaseException) -> Response:
    """The 503 page of a BMDB that is down or broke the connection: webug retries. (An
    exception handler: async, so that Starlette runs it on the event loop.)"""
    return error_response(
        request, 503, "BMDB unreachable, retrying", f"{type(exc).__name__}: {exc}"
    )


def install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        title = TITLES.get(exc.status_code, "Error")
        return error_response(request, exc.status_code, title, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}"
            for err in exc.errors()
        )
        return error_response(request, 400, "Bad request", detail)

    @app.exception_handler(SchemaNotLoaded)
    async def not_ready(request: Request, exc: SchemaNotLoaded):
        return error_response(
            request,
            503,
            "BMDB unreachable, retrying",
            "webug has not been able to read the BMDB schema yet.",
        )

    @app.exception_handler(asyncpg.QueryCanceledError)
    async def timed_out(request: Request, exc: asyncpg.QueryCanceledError):
        return error_response(
            request,
            504,
            "Query timed out",
            f"The BMDB did not answer within the statement timeout: {exc}",
        )

    async def conflicted(request: Request, exc: Exception):
        response = error_response(
            request,
            503,
            "BMDB busy: a conflicting transaction",
            "The page's statement lost a conflict with a transaction writing to the BMDB"
            f" twice ({type(exc).__name__}: {exc}). Try again in a moment.",
        )
        response.headers["Retry-After"] = "1"
        return response

    for conflict in CONFLICTS:
        app.add_exception_handler(conflict, conflicted)
    for unavailable in DB_UNAVAILABLE:
        app.add_exception_handler(unavailable, bmdb_unavailable)


class InternalErrorPage:
    """Any other exception of a page is a 500 error page, never a stack trace.

    A middleware, not `exception_handler(Exception)`: Starlette answers that one from
    its outermost layer, outside every middleware, so the page would miss the security
    headers and the request ID. app/main.py puts this one inside SecurityMiddleware and
    outside ResilienceMiddleware, which must see schema-drift errors to retry.
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
            detail = "webug failed to render this page; the error is in its log."
            response = error_response(Request(scope), 500, "Internal error", detail)
            await response(scope, receive, send)
