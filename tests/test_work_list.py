"""/work on a real PostgreSQL: every work row exactly, stale ones marked and first, the
start time from history, each order across keyset pages, filters with their counts, the
CSV equal to the pages, a 400 that lists what is valid."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.fleet import machines_sql, mid
from tests.support import csv_rows, fleet_client, keyset_pages

ALIVE, DEAD = "00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000d1"

# (machine, process, session, minutes since the last Started event of that process or None)
WORK = [
    (1, "ShepherdAccess", ALIVE, 30),
    (2, "ShepherdAgentStart", DEAD, 9),
    (3, "ShepherdRecovery", ALIVE, None),
    (4, "ShepherdAccess", DEAD, 60),
    (5, "UnitTest1", ALIVE, 180),
]
FLEET = [
    machines_sql(1, 6),
    f"""INSERT INTO sessions VALUES
        ('{ALIVE}', 'shepherd-equinix', 'pid 42', now() - interval '1 day', 60,
         now() + interval '1 hour'),
        ('{DEAD}', 'shepherd-lumen', 'pid 7 <b>', now() - interval '1 day', 60,
         now() - interval '5 minutes')""",
    "INSERT INTO work VALUES "
    + ", ".join(f"('{mid(m)}', '{s}', '{p}')" for m, p, s, _ in WORK),
    "INSERT INTO work_history VALUES "
    + ", ".join(
        f"('{mid(m)}', '{p}', 'Started', now() - interval '{minutes} minutes', NULL)"
        for m, p, _, minutes in WORK if minutes is not None
    )
    # Not the last Started of machine 4's ShepherdAccess; other processes, other machines
    # and other events do not count.
    + f""", ('{mid(4)}', 'ShepherdAccess', 'Started', now() - interval '2 hours', NULL),
        ('{mid(4)}', 'ShepherdAccess', 'Failed', now() - interval '50 minutes', 'x'),
        ('{mid(3)}', 'ShepherdAccess', 'Started', now() - interval '5 minutes', NULL),
        ('{mid(6)}', 'ShepherdRecovery', 'Started', now() - interval '1 minute', NULL)""",
]


def key(m: int, process: str) -> tuple[str, str]:
    return str(mid(m)), process


STALE = {key(m, p) for m, p, s, _ in WORK if s == DEAD}
# Orders, stale work first when no state is given; work without a Started event last.
DEFAULT = [key(4, "ShepherdAccess"), key(2, "ShepherdAgentStart"),
           key(5, "UnitTest1"), key(1, "ShepherdAccess"), key(3, "ShepherdRecovery")]
NEWEST_FIRST = [key(2, "ShepherdAgentStart"), key(4, "ShepherdAccess"),
                key(1, "ShepherdAccess"), key(5, "UnitTest1"), key(3, "ShepherdRecovery")]
BY_ID = [key(2, "ShepherdAgentStart"), key(4, "ShepherdAccess"),
         key(1, "ShepherdAccess"), key(3, "ShepherdRecovery"), key(5, "UnitTest1")]
BY_ID_DESC = [key(4, "ShepherdAccess"), key(2, "ShepherdAgentStart"),
              key(5, "UnitTest1"), key(3, "ShepherdRecovery"), key(1, "ShepherdAccess")]


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template) -> Iterator:
    with fleet_client(pg_server_dsn, migrated_template, *FLEET) as c:
        yield c


def keys(items: list[dict]) -> list[tuple[str, str]]:
    return [(w["machine_id"], w["process"]) for w in items]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", DEFAULT),
        ("sort=-started", NEWEST_FIRST),
        ("sort=machine_id", BY_ID),
        ("sort=-machine_id", BY_ID_DESC),
        ("state=alive", [k for k in DEFAULT if k not in STALE]),
        ("state=stale", [k for k in DEFAULT if k in STALE]),
        ("state=alive&sort=-started", [k for k in NEWEST_FIRST if k not in STALE]),
        ("process=ShepherdAccess", [key(4, "ShepherdAccess"), key(1, "ShepherdAccess")]),
        ("component=shepherd-lumen&sort=machine_id", [k for k in BY_ID if k in STALE]),
        ("process=UnitTest2", []),
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 100])
def test_work_lists_exactly_its_rows_in_each_order_across_keyset_pages(
    client, query, expected, limit
):
    items = keyset_pages(client, "/work?" + query, "items", limit)
    assert keys(items) == expected
    assert {(w["machine_id"], w["process"]) for w in items if w["stale"]} == STALE & set(expected)


def test_each_item_has_its_session_and_the_start_time_from_history(client):
    found = keyset_pages(client, "/work", "items", 100)
    items = {(w["machine_id"], w["process"]): w for w in found}
    now = datetime.fromisoformat(client.get("/work?format=json").json()["counted_at"])
    for m, process, session, minutes in WORK:
        w = items[key(m, process)]
        assert w["session_id"] == session
        assert w["alive"] is (session == ALIVE) and w["stale"] is (session == DEAD)
        assert w["component"] == ("shepherd-equinix" if session == ALIVE else "shepherd-lumen")
        if minutes is None:  # no Started event of this process on this machine
            assert w["started"] is None and w["age_seconds"] is None
            continue
        started = datetime.fromisoformat(w["started"])
        assert abs((now - started).total_seconds() - 60 * minutes) < 30, (m, process)
        assert abs(w["age_seconds"] - 60 * minutes) < 30
        assert w["machine_url"] == f"/machine/{mid(m)}"
        assert w["session_url"] == f"/session/{session}"


def test_tabs_and_facets_count_under_the_other_filters(client):
    page = client.get("/work?process=ShepherdAccess&format=json").json()
    assert page["total"] == 2
    assert page["states"] == {"alive": 1, "stale": 1, "all": 2}
    assert page["processes"] == {
        "ShepherdAccess": 2, "ShepherdAgentStart": 1, "ShepherdRecovery": 1, "UnitTest1": 1,
    }  # fmt: skip
    assert page["components"] == {"shepherd-equinix": 1, "shepherd-lumen": 1}
    assert page["filters"] == {"process": "ShepherdAccess"}
    stale = client.get("/work?state=stale&format=json").json()
    assert stale["states"] == {"alive": 3, "stale": 2, "all": 5}
    assert stale["processes"] == {"ShepherdAccess": 1, "ShepherdAgentStart": 1}


def test_the_page_marks_stale_work_links_machines_sessions_and_filters(client):
    page = client.get("/work").text
    rows = re.findall(r'<tr id="w-([0-9a-f-]{36})-(\w+)"[^>]*class="(stale|alive)"', page)
    assert [(m, p) for m, p, _ in rows] == DEFAULT
    assert {(m, p) for m, p, state in rows if state == "stale"} == STALE
    assert f'href="/machine/{mid(2)}"' in page and f'href="/session/{DEAD}"' in page
    assert "pid 7 &lt;b&gt;" in page and "pid 7 <b>" not in page
    assert 'href="/work?state=stale"' in page  # the tab
    assert 'href="/work?process=UnitTest1"' in page  # the facet
    assert 'href="/work?sort=-started"' in page  # the header reverses the order
    assert html.escape("/work?format=csv") in page


def test_the_csv_equals_the_pages(client):
    for query in ("", "sort=machine_id&state=alive", "process=ShepherdAccess"):
        items = keyset_pages(client, "/work?" + query, "items", 2)
        rows = csv_rows(client, "/work?format=csv&" + query)
        assert [(r["machine_id"], r["process"]) for r in rows] == keys(items)
        for r, w in zip(rows, items, strict=True):
            assert r["session_id"] == w["session_id"] and r["alive"] == str(w["alive"]).lower()
            assert r["started"] == (w["started"] or "").replace("+00:00", "Z")
            assert r["component"] == w["component"] and r["runtime_info"] == w["runtime_info"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("process=Nope", "UnitTest1, UnitTest2, ShepherdAccess"),
        ("state=gone", "'alive' or 'stale'"),
        ("sort=age", "'started', '-started', 'machine_id' or '-machine_id'"),
        ("after=bm90IGEgY3Vyc29y", "is not a page of sort=started"),
    ],
)
def test_bad_input_is_a_400_that_lists_what_is_valid(client, query, says):
    response = client.get("/work?" + query)
    assert response.status_code == 400
    assert says in html.unescape(response.text)


def test_a_cursor_of_another_order_or_edited_is_a_400(client):
    after = client.get("/work?limit=1&format=json").json()["next_after"]
    assert client.get(f"/work?limit=1&after={after}").status_code == 200
    assert client.get(f"/work?limit=1&sort=machine_id&after={after}").status_code == 400
    import base64
    import json

    raw = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    raw[2] = "not a time"
    edited = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    assert client.get(f"/work?limit=1&after={edited}").status_code == 400


def test_a_process_added_under_a_running_webug_is_found_by_the_first_url_naming_it(
    migrated_db_dsn,
):
    """An enum grows (ALTER TYPE ... ADD VALUE) between reflections: the unknown label
    makes webug reflect again before it answers 400."""
    from tests.support import execute, run_sync, webug_client

    with webug_client(migrated_db_dsn) as client:
        run_sync(execute(migrated_db_dsn, "ALTER TYPE process ADD VALUE 'ShepherdNew'"))
        assert client.get("/work?process=ShepherdNew").status_code == 200
        assert client.get("/backoffs?process=ShepherdNew").status_code == 200
