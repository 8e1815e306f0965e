"""The physical limit's HTTP side: uvicorn + Starlette answering bytes from memory.

The bench starts this app exactly as it starts webug (bench/webug_process.py: the same
uvicorn options) and, after each webug response, asks it for a response like it: a
body of the same number of bytes, or a 304 with no body. Nothing else runs in it (no
middleware, no database, no templates), so its time is what any page costs on this
stack before webug does any work of its own.

    GET /bytes/{size}   a text/html body of `size` bytes (made once per size, then reused)
    GET /not-modified   304, no body
    GET /healthz        200 (the bench waits for it)
"""

from __future__ import annotations

from functools import lru_cache

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@lru_cache(maxsize=256)
def body(size: int) -> bytes:
    return b"x" * size


async def sized(request: Request) -> Response:
    return Response(body(request.path_params["size"]), media_type="text/html")


async def not_modified(request: Request) -> Response:
    return Response(status_code=304)


async def healthz(request: Request) -> Response:
    return Response(b"ok", media_type="text/plain")


app = Starlette(
    routes=[
        Route("/bytes/{size:int}", sized),
        Route("/not-modified", not_modified),
        Route("/healthz", healthz),
    ]
)
