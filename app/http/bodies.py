"""Request bodies are read whole, bounded in size and time, before a request may take a
BMDB connection (app/http/resilience.py's page slots).

A handler that reads its body while holding a page slot lets a client that sends the
headers and then stalls hold that slot for as long as it likes: nine such requests made
every page wait, then 503. Read here first, a body that takes longer than BODY_TIMEOUT_S
is a 408 and one larger than MAX_BODY_BYTES a 413; the handler then reads it from memory.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import error_response

log = logging.getLogger(__name__)

BODY_TIMEOUT_S = 10.0
# POST /search's form: 16 KiB of text, each byte percent-encoded (three), and its name.
MAX_BODY_BYTES = 64 * 1024


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class _Refused(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status, self.title, self.detail = status, title, detail


class BoundedBody:
    def __init__(
        self, app: ASGIApp, *, timeout: float = BODY_TIMEOUT_S, max_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.app = app
        self.timeout, self.max_bytes = timeout, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _declares_body(scope):
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._read(receive)
        except TimeoutError:
            log.warning("%s %s: no whole request body within %g s", scope["method"],
                        scope["path"], self.timeout)  # fmt: skip
            refused = _Refused(
                408, "Request timeout",
                f"The request body did not arrive within {self.timeout:g} s.",
            )  # fmt: skip
            await self._refuse(scope, receive, send, refused)
            return
        except _Refused as refused:
            await self._refuse(scope, receive, send, refused)
            return
        if body is None:
            return  # the client went away: nobody to answer

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # after the body: wait for the disconnect, as the server would
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _Refused(
                    413, "Request too large", f"A request body has at most {self.max_bytes} bytes."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, refused: _Refused) -> None:
        response = error_response(Request(scope), refused.status, refused.title, refused.detail)
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)
