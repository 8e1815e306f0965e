"""The machine list's orders (sort=) on a real PostgreSQL: every order's keyset pages,
walked in both directions, against the order computed here from known data.

The fleet has ties in every key, machines without the key (no heartbeat, no active
backoff: only an expired one, or none), a machine whose soonest active backoff is not its
latest, and keys PostgreSQL writes as 'infinity'. Its times are fixed (backoffs end in
2100 or ended in 2000), so the expected orders are computed without the database.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from app.bmdb.ordering import Cursor, Order
from app.bmdb.reflection import Field, Schema, TagType
from tests.fleet import mid
from tests.support import cloned_database, execute, run_sync, webug_client

N = 23
PAGE = 4
BASE = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
INFINITY = datetime.max.replace(tzinfo=UTC)  # stands in for 'infinity' when ordering here


def created(n: int) -> datetime:
    return INFINITY if n == 23 else BASE + timedelta(days=n % 5)  # ties: 5 values


def heartbeat(n: int) -> datetime | None:
    if n == 22:
        return INFINITY
    return None if n % 3 == 0 else BASE + timedelta(hours=n % 4, microseconds=7)


def backoffs(n: int) -> list[tuple[str, datetime]]:
    """(process, until) of machine n: active ones end in 2100, expired ones in 2000."""
    active = BASE.replace(year=2100) + timedelta(minutes=n % 3)
    if n % 4 == 0:
        return [("ShepherdAccess", active), ("ShepherdRecovery", active + timedelta(days=1))]
    if n % 4 == 1:
        return [("ShepherdAccess", BASE.replace(year=2000))]  # expired: no key
    if n == 2:
        return [("UnitTest1", active + timedelta(minutes=5))]
    return []


def active_backoff_end(n: int) -> datetime | None:
    ends = [until for _, until in backoffs(n) if until.year == 2100]
    return min(ends) if ends else None


KEYS = {
    "created": created,
    "heartbeat": heartbeat,
    "backoff": active_backoff_end,
}


def pg(ts: datetime) -> str:
    return "infinity" if ts == INFINITY else ts.isoformat()


def fleet_sql() -> list[str]:
    machines = ", ".join(f"('{mid(n)}', '{pg(created(n))}')" for n in range(1, N + 1))
    beats = ", ".join(
        f"('{mid(n)}', '{pg(heartbeat(n))}')" for n in range(1, N + 1) if heartbeat(n)
    )
    offs = ", ".join(
        f"('{mid(n)}', '{process}', '{pg(until)}', 'cause {n}', 60)"
        for n in range(1, N + 1)
        for process, until in backoffs(n)
    )
    provided = ", ".join(
        f"('{mid(n)}', '{'Equinix' if n % 2 else 'Lumen'}', 'p-{n}')" for n in range(1, N + 1)
    )
    return [
        f"INSERT INTO machines (machine_id, machine_created_at) VALUES {machines}",
        f"INSERT INTO machine_agent_heartbeat VALUES {beats}",
        "INSERT INTO work_backoff (machine_id, process, until, cause, last_interval_seconds)"
        f" VALUES {offs}",
        f"INSERT INTO machine_provided (machine_id, provider, provider_id) VALUES {provided}",
    ]


def expected(sort: str, among: range | list[int] = range(1, N + 1)) -> list[str]:
    """The machine IDs in the order `sort` names: keyed machines by (key, ID), then the
    machines without a key by ID; all reversed within each group for `-`."""
    name, descending = sort.removeprefix("-"), sort.startswith("-")
    if name == "id":
        ordered = sorted(among, reverse=descending)
        return [str(mid(n)) for n in ordered]
    key = KEYS[name]
    keyed = sorted((n for n in among if key(n) is not None), key=lambda n: (key(n), n))
    without = sorted(n for n in among if key(n) is None)
    if descending:
        keyed.reverse()
        without.reverse()
    return [str(mid(n)) for n in keyed + without]


SCHEMA_WITH_HEARTBEAT = Schema(
    "test", None, (TagType("machine_agent_heartbeat",
                           (Field("agent_heartbeat_at", "timestamp with time zone",
                                  "timestamptz", False),)),),
)  # fmt: skip
SORTS = [s for name in ("id", "created", "backoff", "heartbeat") for s in (name, "-" + name)]


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template):
    with (
        cloned_database(pg_server_dsn, migrated_template, *fleet_sql()) as dsn,
        webug_client(dsn) as c,
    ):
        yield c


def walk_json(client, query: str) -> list[str]:
    """Every machine ID of the view, following the JSON twin's next_after."""
    seen: list[str] = []
    after = None
    for _ in range(N + 2):
        url = f"/?{query}&limit={PAGE}&format=json" + (f"&after={after}" if after else "")
        page = client.get(url)
        assert page.status_code == 200, page.text
        doc = page.json()
        assert len(doc["machines"]) <= PAGE
        seen += [m["machine_id"] for m in doc["machines"]]
        after = doc["next_after"]
        if after is None:
            return seen
    raise AssertionError("the pages never end")


ROW = re.compile(r'<tr id="m-([0-9a-f-]{36})"')
NEXT = re.compile(r'<a rel="next" href="([^"]+)"')


def walk_html(client, url: str) -> list[str]:
    """Every machine ID of the view, following the HTML's next links (and checking that
    the htmx fragment of each page shows the same rows)."""
    seen: list[str] = []
    for _ in range(N + 2):
        page = client.get(url)
        assert page.status_code == 200, page.text
        rows = ROW.findall(page.text)
        assert ROW.findall(client.get(url, headers={"HX-Request": "true"}).text) == rows
        seen += rows
        link = NEXT.search(page.text)
        if link is None:
            return seen
        url = unescape(link.group(1))
    raise AssertionError("the pages never end")


def test_expected_orders_have_ties_and_machines_without_the_key():
    for name, key in KEYS.items():
        values = [key(n) for n in range(1, N + 1)]
        present = [v for v in values if v is not None]
        assert len(set(present)) < len(present), f"{name}: no ties"
        assert INFINITY in present or name == "backoff", name
        if name != "created":
            assert None in values, f"{name}: every machine has the key"
    assert active_backoff_end(4) < max(until for _, until in backoffs(4))


@pytest.mark.parametrize("sort", SORTS)
def test_every_order_pages_through_every_machine_once_in_order(client, sort):
    assert walk_json(client, f"sort={sort}") == expected(sort)


@pytest.mark.parametrize("sort", ["created", "-heartbeat", "backoff", "-backoff"])
def test_html_next_links_keep_the_order_and_the_filter(client, sort):
    odd = [n for n in range(1, N + 1) if n % 2]  # provider=Equinix
    assert walk_html(client, f"/?provider=Equinix&sort={sort}&limit={PAGE}") == expected(
        sort, odd
    )


@pytest.mark.parametrize("sort", ["heartbeat", "-created", "backoff"])
def test_orders_combine_with_every_kind_of_filter(client, sort):
    """Filter conditions name only m.machine_id: the keyed orders put the key's table in
    machines' place, so each filter is checked in each order."""
    lacks = [n for n in range(1, N + 1) if heartbeat(n) is None]
    assert walk_json(client, f"sort={sort}&lacks=AgentHeartbeat") == expected(sort, lacks)
    assert walk_json(client, f"sort={sort}&q=0000001") == expected(sort, range(16, 24))
    assert walk_json(client, f"sort={sort}&text=CAUSE%201") == expected(
        sort, [n for n in range(1, N + 1) if backoffs(n) and str(n).startswith("1")]
    )
    active = [n for n in range(1, N + 1) if active_backoff_end(n)]
    assert walk_json(client, f"sort={sort}&backoff=ShepherdAccess") == expected(
        sort, [n for n in active if n % 4 == 0]
    )


def cursors(client, sort: str) -> list[Cursor]:
    """The cursors of the view's pages after the first, as webug reads them back."""
    found, after = [], None
    while True:
        url = f"/?sort={sort}&limit={PAGE}&format=json" + (f"&after={after}" if after else "")
        after = client.get(url).json()["next_after"]
        if after is None:
            return found
        found.append(Order.parse(sort, SCHEMA_WITH_HEARTBEAT).cursor(after))


def test_pages_start_after_infinity_and_after_machines_without_the_key(client):
    """The walks above cross every kind of page boundary: after an 'infinity' key, after
    a machine without the key, and from the keyed machines to those without."""
    for sort in ("heartbeat", "-heartbeat", "backoff", "created"):
        keys = [c.key for c in cursors(client, sort)]
        if sort != "created":
            assert None in keys, sort  # a page after a machine without the key
    page_size = 3  # 16 machines have a heartbeat: a page of 3 straddles them and the rest
    walk = client.get(f"/?sort=heartbeat&limit={page_size}&format=json").json()
    boundary = []
    while walk["next_after"]:
        walk = client.get(
            f"/?sort=heartbeat&limit={page_size}&format=json&after={walk['next_after']}"
        ).json()
        boundary.append([m["machine_id"] for m in walk["machines"]])
    straddling = expected("heartbeat")[15:18]
    assert straddling in boundary
    for sort in ("-heartbeat", "-created"):  # the newest is 'infinity'
        first = client.get(f"/?sort={sort}&limit=1&format=json").json()
        assert Order.parse(sort, SCHEMA_WITH_HEARTBEAT).cursor(first["next_after"]).key == (
            "infinity"
        )
        second = client.get(f"/?sort={sort}&limit=1&format=json&after={first['next_after']}")
        assert [m["machine_id"] for m in second.json()["machines"]] == expected(sort)[1:2]


def header_links(page: str) -> dict[str, str]:
    """Column header sort links: label -> URL."""
    return {
        re.sub(r"\s*[▲▼]$", "", label): unescape(href)
        for href, label in re.findall(r'<a class="sort[^"]*" href="([^"]+)"[^>]*>([^<]+)</a>', page)
    }


def test_column_headers_link_their_order_keeping_filters_and_page_size(client):
    page = client.get(f"/?provider=Lumen&sort=created&limit={PAGE}").text
    links = header_links(page)
    assert set(links) == {"Machine", "Backoff", "Heartbeat", "Created"}
    for label, sort in [("Machine", None), ("Backoff", "backoff"), ("Created", "-created"),
                        ("Heartbeat", "heartbeat")]:  # fmt: skip
        query = parse_qs(urlsplit(links[label]).query)
        assert query.get("sort") == ([sort] if sort else None), label
        assert query["provider"] == ["Lumen"] and query["limit"] == [str(PAGE)], label
        assert "after" not in query, label  # a new order starts at its first page
    assert 'aria-sort="ascending"' in page and "Created ▲" in page
    reversed_page = client.get(links["Created"]).text
    assert 'aria-sort="descending"' in reversed_page and "Created ▼" in reversed_page
    again = header_links(reversed_page)
    assert parse_qs(urlsplit(again["Created"]).query)["sort"] == ["created"]  # back again


def test_filter_links_keep_the_order(client):
    page = client.get("/?sort=-heartbeat").text
    facet = re.search(r'href="([^"]*provider=Lumen[^"]*)"', page)
    assert facet and "sort=-heartbeat" in unescape(facet.group(1))
    assert '<input type="hidden" name="sort" value="-heartbeat">' in page  # the filter form
    assert "Sorted by last heartbeat, newest first" in page
    assert "Sorted by" not in client.get("/").text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sort=size", "sort"),
        ("sort=--created", "sort"),
        ("sort=created&after=not-a-token", "is not a page of sort=created"),
        (f"sort=created&after={mid(3)}", "is not a page of sort=created"),
        ("after=not-a-uuid", "is not a machine ID"),
    ],
)
def test_bad_orders_and_cursors_are_a_400_that_says_why(client, query, message):
    response = client.get("/?" + query)
    assert response.status_code == 400, response.text[:300]
    assert message in response.text


def test_a_cursor_of_one_order_is_refused_by_another(client):
    token = client.get("/?sort=created&limit=2&format=json").json()["next_after"]
    assert client.get(f"/?sort=-created&after={token}").status_code == 200  # same key
    response = client.get(f"/?sort=heartbeat&after={token}")
    assert response.status_code == 400 and "is not a page of sort=heartbeat" in response.text


def test_the_json_twin_says_its_order_and_cursors(client):
    doc = client.get(f"/?sort=-backoff&limit={PAGE}&format=json").json()
    assert doc["sort"] == "-backoff" and doc["after"] is None
    assert isinstance(doc["next_after"], str)
    by_id = client.get(f"/?limit={PAGE}&format=json").json()
    assert by_id["sort"] == "id" and by_id["next_after"] == str(mid(PAGE))


def test_heartbeat_order_without_the_heartbeat_table_is_a_400(migrated_db_dsn):
    run_sync(execute(migrated_db_dsn, *fleet_sql()[:1], "DROP TABLE machine_agent_heartbeat"))
    with webug_client(migrated_db_dsn) as client:
        response = client.get("/?sort=heartbeat")
        assert response.status_code == 400
        assert "machine_agent_heartbeat" in response.text
        page = client.get("/?sort=-created")
        assert page.status_code == 200 and "sort=heartbeat" not in page.text
        assert walk_json(client, "sort=-created") == expected("-created")
