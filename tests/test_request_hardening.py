"""Requests as clients send them, odd ones included: HEAD, stalled bodies, NUL bytes."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute

from tests.fleet import ALIVE, mid
from tests.outage import serve_webug
from tests.support import webug_client

# A value for each path parameter, so HEAD and GET reach a page that exists.
PATH_VALUES = {
    "machine_id": str(mid(1)),
    "session_id": str(ALIVE),
    "tag": "AgentStarted",
    "field": "agent_public_key",
    "provider": "Equinix",
    "provider_id": "eq-aaa",
}


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def get_paths(app) -> list[str]:
    """Every route that answers GET, its path parameters filled in."""
    from fastapi.routing import iter_route_contexts

    return sorted(
        context.path_format.format(**PATH_VALUES)
        for context in iter_route_contexts(app.router.routes)
        if isinstance(context.route, APIRoute) and "GET" in context.methods
    )


def test_head_is_answered_wherever_get_is(client):
    paths = get_paths(client.app)
    assert {"/healthz", "/metrics", "/", f"/machine/{mid(1)}"} <= set(paths)
    for path in [*paths, "/static/webug.css", "/openapi.json"]:
        get = client.get(path, follow_redirects=False)
        head = client.head(path, follow_redirects=False)
        assert get.status_code in (200, 303), (path, get.status_code)
        assert head.status_code == get.status_code, path
        assert head.content == b""
        assert head.headers.get("content-type") == get.headers.get("content-type"), path


# --------------------------------------------------------------------- request bodies

STALLED = 12  # more than the page slots (WEBUG_POOL_MAX_SIZE 10, less one)


def stalled_post(base_url: str) -> socket.socket:
    """A POST /search that sends its headers and two bytes of a 1000-byte body, then stalls."""
    address = urlsplit(base_url)
    conn = socket.create_connection((address.hostname, address.port))
    conn.sendall(
        f"POST /search HTTP/1.1\r\nHost: {address.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
        "q=".encode()
    )
    return conn


def test_stalled_request_bodies_take_no_database_slot(small_fleet_dsn, tmp_path):
    """Twelve clients that stall in their bodies: the list still answers at once."""
    with (
        serve_webug(small_fleet_dsn, tmp_path / "webug.log") as base_url,
        contextlib.ExitStack() as stalled,
    ):
        for _ in range(STALLED):
            stalled.enter_context(stalled_post(base_url))
        time.sleep(0.5)  # they all reached webug
        start = time.monotonic()
        with urllib.request.urlopen(base_url + "/", timeout=30) as page:
            assert page.status == 200
        assert time.monotonic() - start < 3  # not the pool wait (10 s), then a 503


def run_asgi(app, body_parts: list[bytes], *, stall: bool, **options) -> tuple[int, bytes]:
    """(status, body) of `app` wrapped in BoundedBody for a POST whose body arrives in
    `body_parts`, then, with `stall`, nothing more."""
    import asyncio

    from app.http.bodies import BoundedBody

    async def call() -> tuple[int, bytes]:
        parts = list(body_parts)
        sent: list[dict] = []

        async def receive():
            if parts:
                chunk = parts.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": stall or bool(parts)}
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/search", "raw_path": b"/search",
            "root_path": "", "query_string": b"", "app": app,
            "headers": [(b"host", b"localhost"), (b"content-length", b"1000"),
                        (b"content-type", b"text/plain")],
            "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        await BoundedBody(app, **options)(scope, receive, send)
        status = sent[0]["status"]
        return status, b"".join(m.get("body", b"") for m in sent[1:])

    return asyncio.run(call())


def test_a_stalled_body_is_a_408_and_a_huge_one_a_413(client):
    status, body = run_asgi(client.app, [b"q=1"], stall=True, timeout=0.2)
    assert status == 408 and b"did not arrive within 0.2 s" in body
    status, body = run_asgi(client.app, [b"x" * 600, b"x" * 600], stall=True, max_bytes=1000)
    assert status == 413 and b"at most 1000 bytes" in body


def test_a_body_read_up_front_reaches_the_handler_whole(client):
    found = client.post("/search", content="eq-aaa", headers={"Content-Type": "text/plain"},
                        follow_redirects=False)  # fmt: skip
    assert found.status_code == 303 and found.headers["location"] == f"/machine/{mid(1)}"
    form = client.post("/search", data={"q": f"lost {mid(2)}"}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"] == f"/machine/{mid(2)}"
