"""Requests as clients send them, odd ones included: HEAD, stalled bodies, NUL bytes."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from tests.fleet import ALIVE, mid
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
