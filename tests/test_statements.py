"""One statement per page, counted on the wire: bench/latency_proxy.py sits between webug
and the test PostgreSQL and counts what asyncpg sends (Query and Execute messages), so
nothing webug does (a BEGIN, a SET, a ROLLBACK after the response) goes uncounted."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.fleet import ALIVE, mid
from tests.support import proxied_webug, sent

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
]


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
        "/?stuck=1", "/sessions?state=expired",
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


def test_the_overview_counts_in_one_statement_then_shares_them(proxied):
    proxy, client = proxied
    client.get("/overview")
    client.app.state.count_cache.clear()  # its counts are due again
    statements, round_trips, response = sent(proxy, lambda: client.get("/overview"))
    assert response.status_code == 200 and (statements, round_trips) == (1, 1)
    statements, _, _ = sent(proxy, lambda: client.get("/overview", headers=HTMX))
    assert statements == 0  # every poll and tab shares them for WEBUG_COUNT_CACHE_SECONDS


def test_a_csv_download_is_one_statement_per_keyset_page(proxied, monkeypatch):
    from app.pages import csv_export

    proxy, client = proxied
    for path, page_rows, rows, statements in [
        ("/?format=csv", 5, 12, 3),  # 5 + 5 + 2
        ("/?sort=-heartbeat&format=csv", 5, 12, 3),
        ("/?lacks=Provided&format=csv", 5, 9, 2),  # 5 + 4
        ("/sessions?format=csv", 1, 2, 3),  # 1 + 1 + an empty page that says it is the end
    ]:
        monkeypatch.setattr(csv_export, "PAGE_ROWS", page_rows)
        spent, _, response = sent(proxy, lambda p=path: client.get(p))
        assert response.status_code == 200
        assert response.text.count("\r\n") == 1 + rows, path
        assert spent == statements, path
