"""One statement per page, counted on the wire: bench/latency_proxy.py sits between webug
and the test PostgreSQL and counts what asyncpg sends (Query and Execute messages), so
nothing webug does (a BEGIN, a SET, a ROLLBACK after the response) goes uncounted."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from app.render import urls
from tests.fleet import ALIVE, mid
from tests.support import proxied_webug, route_of, sent, url_module_paths

HTMX = {"HX-Request": "true"}
PASTED = f"ALERT {mid(3)} {mid(4)}\nsession {ALIVE} ip 10.0.0.1:22 provider_id=LUMEN-0002"

# Every page and fragment that reads the BMDB, as a browser or a poll asks for it.
PAGES = [
    ("/", {}),
    ("/?provider=Lumen&has=AgentStarted", {}),
    ("/", HTMX),
    ("/?sort=-heartbeat", {}),
    ("/?sort=backoff&provider=Lumen", {}),
    ("/?sort=created", HTMX),
    ("/?text=pid&sort=-created", {}),
    (f"/machine/{mid(2)}", {}),
    (f"/machine/{mid(2)}/live", HTMX),
    (f"/machine/{mid(2)}/history", HTMX),
    (f"/machine/{mid(2)}/history", {}),
    (f"/machine/{mid(2)}/history?window=all&process=ShepherdAccess", HTMX),
    ("/sessions", {}),
    ("/sessions", HTMX),
    (f"/session/{ALIVE}", {}),
    (f"/session/{ALIVE}/live", HTMX),
    ("/search?q=0000", {}),
    ("/search?q=lumen-0002", {}),
    ("/search?q=" + quote(PASTED), {}),  # every ID, IP and word of a text, at once
    (f"/watch?ids={mid(1)},0000000b,0000,ffff", {}),  # resolved and read together
    (f"/watch?ids={mid(1)},0000000b,0000,ffff", HTMX),
    (f"/watch?ids={mid(1)},0000000b&format=json", {}),
    (f"/machine/{mid(2)}?format=json", {}),
    ("/?format=json", {}),
    ("/?workflow=AgentRecovery&workflow_state=eligible", {}),
    ("/?workflow=AgentStart", {}),
    ("/?stuck=1", {}),
    ("/?stuck=1", HTMX),
    ("/work", {}),
    ("/work?state=stale&sort=machine_id", HTMX),
    ("/work?format=json", {}),
    ("/backoffs", {}),
    ("/backoffs?state=all&sort=-interval&text=ssh", HTMX),
    ("/backoffs?state=expired&format=json", {}),
    ("/tags/Provided", {}),
    ("/tags/Provided?provider=Equinix&sort=-provider_status", HTMX),
    ("/tags/AgentStarted?agent_started_at__gt=2000-01-01&format=json", {}),
    ("/provider/Lumen/lumen-0002", {}),  # a hot link: a redirect to the machine
    ("/watch/filtered?provider=Equinix", {}),  # a redirect to the watch of those machines
    (f"/machine/{mid(1)}/tag/AgentStarted/agent_public_key", {}),  # a value's download
]

# The routes not in PAGES, and why.
NOT_IN_PAGES = {
    urls.OVERVIEW: "its counts are shared by every view: counted in a test of its own below",
    urls.FAILURES: "fleet-wide history reads, shared: tests/test_activity.py counts them",
    urls.ACTIVITY: "fleet-wide history reads, shared: tests/test_activity.py counts them",
    urls.SCHEMA: "shows the reflection webug holds: no statement",
    urls.TAGS: "its counts are shared by every view: counted in a test of its own below",
    urls.FORECAST: "shared like the counts, one statement when due: tests/test_forecast.py",
    urls.SCHEMA_REFRESH: "a POST that reflects the schema anew (tests/test_schema_refresh.py)",
    urls.HEALTH: "a probe's own SELECT 1",
    urls.METRICS: "reads no BMDB",
    urls.API: "reads no BMDB",
    urls.OPENAPI: "reads no BMDB",
    urls.STATIC: "reads no BMDB",
    urls.FAVICON: "reads no BMDB",
}


def test_every_route_is_in_pages_or_says_why_not():
    routes = url_module_paths()
    in_pages = {route_of(path, routes) for path, _ in PAGES}
    assert routes - in_pages - NOT_IN_PAGES.keys() == set()
    assert in_pages & NOT_IN_PAGES.keys() == set()


@pytest.fixture(scope="module")
def proxied(small_fleet_dsn: str) -> Iterator[tuple]:
    with proxied_webug(small_fleet_dsn) as proxy_and_client:
        yield proxy_and_client


@pytest.mark.parametrize(
    ("path", "headers"), PAGES, ids=[p + (" htmx" if h else "") for p, h in PAGES]
)
def test_each_page_is_one_statement_in_one_round_trip(proxied, path, headers):
    proxy, client = proxied
    def get():
        return client.get(path, headers=headers, follow_redirects=False)

    get()  # prepares the statement, counts what is due
    statements, round_trips, response = sent(proxy, get)
    assert response.status_code in (200, 303), response.text[:300]
    assert (statements, round_trips) == (1, 1)


def test_an_unchanged_poll_is_one_statement_and_a_304_without_a_body(proxied):
    proxy, client = proxied
    for path in (
        f"/machine/{mid(2)}/live", f"/session/{ALIVE}/live", "/", f"/watch?ids={mid(2)},0000000",
        f"/machine/{mid(2)}/history", f"/machine/{mid(2)}/history?window=1h&every=5",
        "/?stuck=1", "/work", "/backoffs?state=all", "/tags/Provided?sort=provider_location",
        "/sessions?state=expired",
    ):
        first = client.get(path, headers=HTMX)
        ptag = first.headers["HX-PTag"]
        statements, round_trips, again = sent(
            proxy, lambda p=path, t=ptag: client.get(p, headers={**HTMX, "HX-PTag": t})
        )
        assert again.status_code == 304 and again.content == b"", path
        assert again.headers["HX-PTag"] == ptag
        assert (statements, round_trips) == (1, 1), path


def test_a_first_view_of_a_list_counts_in_one_more_statement(proxied):
    proxy, client = proxied
    fresh = "/?lacks=AgentHeartbeat&limit=7"  # a view whose counts nobody took yet
    statements, _, response = sent(proxy, lambda: client.get(fresh))
    assert response.status_code == 200 and "Exact counts as of" in response.text
    assert statements == 2  # the facets (with the total), then the page
    statements, _, _ = sent(proxy, lambda: client.get(fresh))
    assert statements == 1  # the counts are shared for WEBUG_COUNT_CACHE_SECONDS


def test_a_first_view_of_work_backoffs_or_a_tag_table_counts_in_its_own_statement(proxied):
    proxy, client = proxied
    for path in ("/work?process=ShepherdAccess", "/backoffs?text=refused",
                 "/tags/Provided?provider=Lumen"):  # fmt: skip
        statements, _, response = sent(proxy, lambda p=path: client.get(p))
        assert response.status_code == 200 and "Exact counts as of" in response.text
        assert statements == 1, path  # the page with its counts
        statements, _, poll = sent(proxy, lambda p=path: client.get(p, headers=HTMX))
        assert poll.status_code == 200 and statements == 1, path  # the counts are shared


def test_the_tag_types_count_in_one_statement_then_share_it(proxied):
    proxy, client = proxied
    client.get("/tags")
    client.app.state.count_cache.clear()
    statements, round_trips, response = sent(proxy, lambda: client.get("/tags"))
    assert response.status_code == 200 and (statements, round_trips) == (1, 1)
    statements, _, poll = sent(proxy, lambda: client.get("/tags", headers=HTMX))
    assert statements == 0  # shared for WEBUG_COUNT_CACHE_SECONDS
    again = client.get("/tags", headers={**HTMX, "HX-PTag": poll.headers["HX-PTag"]})
    assert again.status_code == 304 and again.content == b""


def test_the_overview_counts_in_one_statement_then_shares_them(proxied):
    proxy, client = proxied
    client.get("/overview")
    client.app.state.count_cache.clear()  # its counts are due again
    statements, round_trips, response = sent(proxy, lambda: client.get("/overview"))
    assert response.status_code == 200 and (statements, round_trips) == (1, 1)
    statements, _, _ = sent(proxy, lambda: client.get("/overview", headers=HTMX))
    assert statements == 0  # every poll and tab shares them for WEBUG_COUNT_CACHE_SECONDS


def test_a_csv_download_is_one_statement_per_keyset_page(proxied, monkeypatch):
    from app.model import csv_export

    proxy, client = proxied
    for path, page_rows, rows, statements in [
        ("/?format=csv", 5, 12, 3),  # 5 + 5 + 2
        ("/?sort=-heartbeat&format=csv", 5, 12, 3),
        ("/?lacks=Provided&format=csv", 5, 9, 2),  # 5 + 4
        ("/sessions?format=csv", 1, 2, 3),  # 1 + 1 + an empty page that says it is the end
        ("/work?format=csv", 1, 2, 3),
        ("/backoffs?state=all&sort=-interval&format=csv", 1, 2, 3),
        ("/tags/Provided?sort=-provider_status&format=csv", 2, 3, 2),  # 2 + 1
    ]:
        monkeypatch.setattr(csv_export, "PAGE_ROWS", page_rows)
        spent, _, response = sent(proxy, lambda p=path: client.get(p))
        assert response.status_code == 200
        assert response.text.count("\r\n") == 1 + rows, path
        assert spent == statements, path
