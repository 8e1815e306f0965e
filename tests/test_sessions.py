"""Sessions list (/sessions) and session detail (/session/{id}) on a real PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime
from uuid import UUID

import pytest

from tests.fleet import ALIVE, DEAD, mid
from tests.support import execute, run_sync, seconds_from_now, webug_client

HTMX = {"HX-Request": "true"}


def sid(n: int) -> UUID:
    return UUID(f"5e55{n:04x}-0000-4000-8000-000000000000")


def listed_sessions(html: str) -> list[str]:
    """Session IDs in the order the sessions table shows them."""
    return re.findall(r'<tr id="s-([0-9a-f-]{36})"', html)


def section(html: str, element_id: str) -> str:
    """The element with this id, up to the end of the page (enough for `in` checks)."""
    start = html.index(f'id="{element_id}"')
    return html[start:]


def state_box(html: str) -> str:
    start = html.index('id="session-state"')
    return html[start : html.index("</div>", start)]


def write(dsn: str, *sql: str) -> None:
    run_sync(execute(dsn, *sql))


def insert_session(
    n: int,
    *,
    component: str = "shepherd-equinix",
    runtime: str = "pid 1",
    created: str = "1 hour",
    deadline: str = "+ interval '1 minute'",
) -> str:
    return (
        "INSERT INTO sessions VALUES ("
        f"'{sid(n)}', '{component}', '{runtime}', now() - interval '{created}', 60,"
        f" now() {deadline})"
    )


def insert_machines(*ns: int) -> str:
    values = ", ".join(f"('{mid(n)}', now() - interval '1 day')" for n in ns)
    return f"INSERT INTO machines VALUES {values}"


@pytest.fixture(scope="module")
def client(module_fleet_dsn):
    # The fleet is loaded when this module runs: its expired session is about five minutes
    # past its deadline here, however long the tests before took.
    with webug_client(module_fleet_dsn) as c:
        yield c


# /session/{id} ---------------------------------------------------------------------------


def test_alive_session_shows_its_state_work_and_history(client):
    page = client.get(f"/session/{ALIVE}")
    assert page.status_code == 200
    text = page.text
    assert f'data-copy="{ALIVE}"' in text
    assert "shepherd-equinix" in text and "pid 42" in text
    state = state_box(text)
    assert "alive" in state and "expired" not in state
    assert 60 <= seconds_from_now(state, "deadline ") < 3600  # "in 4m"
    work = section(text, "held-work")
    assert f'<a href="/machine/{mid(1)}">{mid(1)}</a>' in work and "ShepherdAccess" in work
    assert "STALE" not in text
    events = section(text, "session-events")
    assert re.findall(r'<span class="event">(\w+)</span>', events) == ["Started"]
    assert f'href="/machine/{mid(1)}"' in events


def test_expired_session_marks_its_work_stale(client):
    text = client.get(f"/session/{DEAD}").text
    state = state_box(text)
    assert "expired" in state and "alive" not in state
    assert -3600 < seconds_from_now(state, "expired</span> ") <= -60  # "5m ago"
    work = section(text, "held-work")
    assert f'<a href="/machine/{mid(2)}">{mid(2)}</a>' in work
    assert "ShepherdAgentStart" in work and "STALE — session expired" in work
    assert 'class="stale"' in work and "1 STALE" in text
    # mid(2)'s history since the session was created, newest first; mid(99) is not held.
    events = section(text, "session-events")
    assert re.findall(r'<span class="event">(\w+)</span>', events) == [
        "Started",
        "Failed",
        "Started",
    ]
    assert "ssh: refused" in events and str(mid(99)) not in events


def test_history_is_limited_to_the_session_lifetime_and_bounded(migrated_db_dsn):
    write(
        migrated_db_dsn,
        insert_machines(1, 2, 3),
        insert_session(1, created="1 hour", deadline="- interval '10 minutes'"),
        f"INSERT INTO work VALUES ('{mid(1)}', '{sid(1)}', 'ShepherdAccess'),"
        f" ('{mid(2)}', '{sid(1)}', 'ShepherdRecovery')",
        # Before the session existed: not its lifetime.
        f"INSERT INTO work_history VALUES ('{mid(1)}', 'ShepherdAccess', 'Canceled',"
        " now() - interval '2 hours', NULL)",
        f"INSERT INTO work_history VALUES ('{mid(1)}', 'ShepherdAccess', 'Started',"
        " now() - interval '50 minutes', NULL)",
        # After it expired: still shown, but marked.
        f"INSERT INTO work_history VALUES ('{mid(2)}', 'ShepherdRecovery', 'Failed',"
        " now() - interval '1 minute', 'boom')",
        # A machine it does not hold.
        f"INSERT INTO work_history VALUES ('{mid(3)}', 'ShepherdAccess', 'Started',"
        " now() - interval '5 minutes', NULL)",
    )
    with webug_client(migrated_db_dsn) as c:
        text = c.get(f"/session/{sid(1)}").text
        events = section(text, "session-events")
        assert re.findall(r'<span class="event">(\w+)</span>', events) == ["Failed", "Started"]
        assert "Canceled" not in events and str(mid(3)) not in events
        assert events.count("after expiry") == 1 and "boom" in events
        body = c.get(f"/session/{sid(1)}?format=json").json()
        assert [e["event"] for e in body["history"]] == ["Failed", "Started"]
        assert [e["after_expiry"] for e in body["history"]] == [True, False]
        assert body["history_truncated"] is False

        write(
            migrated_db_dsn,
            f"INSERT INTO work_history SELECT '{mid(1)}', 'ShepherdAccess', 'Finished',"
            " now() - g * interval '1 second', NULL FROM generate_series(1, 150) g",
        )
        body = c.get(f"/session/{sid(1)}?format=json").json()
        assert len(body["history"]) == 100 and body["history_truncated"] is True
        stamps = [e["timestamp"] for e in body["history"]]
        assert stamps == sorted(stamps, reverse=True)
        assert "100+ (newest 100) events" in c.get(f"/session/{sid(1)}").text


def test_session_without_work(migrated_db_dsn):
    write(migrated_db_dsn, insert_session(1))
    with webug_client(migrated_db_dsn) as c:
        text = c.get(f"/session/{sid(1)}").text
    assert "This session holds no work." in text and "No held machines" in text


def test_session_live_fragment_polls_answers_304_and_pauses(client):
    fragment = client.get(f"/session/{DEAD}/live", headers=HTMX)
    assert fragment.status_code == 200
    assert fragment.text.startswith('<div id="session-live"') and "<html" not in fragment.text
    assert "every 2s [document.visibilityState === 'visible']" in fragment.text
    assert "STALE — session expired" in fragment.text
    ptag = fragment.headers["HX-PTag"]
    assert f'hx-ptag="{ptag}"' in fragment.text
    unchanged = client.get(f"/session/{DEAD}/live", headers={**HTMX, "HX-PTag": ptag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    paused = client.get(f"/session/{DEAD}/live?live=0", headers=HTMX).text
    assert "hx-trigger" not in paused and "resume live updates" in paused
    assert "STALE — session expired" in paused
    full_paused = client.get(f"/session/{DEAD}?live=0").text
    assert "hx-trigger" not in full_paused and "paused" in full_paused


def test_session_expiring_between_polls_turns_its_work_stale(migrated_db_dsn):
    write(
        migrated_db_dsn,
        insert_machines(1),
        insert_session(1, deadline="+ interval '10 minutes'"),
        f"INSERT INTO work VALUES ('{mid(1)}', '{sid(1)}', 'ShepherdAgentStart')",
    )
    with webug_client(migrated_db_dsn) as c:
        before = c.get(f"/session/{sid(1)}/live", headers=HTMX)
        assert "alive" in state_box(before.text) and "STALE" not in before.text
        table_before = c.get("/sessions", headers=HTMX).text
        assert "No work is held by expired sessions" in table_before

        write(
            migrated_db_dsn,
            f"UPDATE sessions SET session_deadline = now() - interval '1 second'"
            f" WHERE session_id = '{sid(1)}'",
        )
        after = c.get(
            f"/session/{sid(1)}/live", headers={**HTMX, "HX-PTag": before.headers["HX-PTag"]}
        )
        assert after.status_code == 200  # changed: not a 304
        state = state_box(after.text)
        assert "expired" in state and -10 < seconds_from_now(state) <= 0  # "1s ago"
        assert "STALE — session expired" in section(after.text, "held-work")
        assert "hx-trigger" in after.text  # keeps polling: the session may come back

        table_after = c.get("/sessions", headers=HTMX).text
        stale = section(table_after, "stale-work")
        assert "1</span> work item held by expired sessions" in stale
        assert f'href="/machine/{mid(1)}"' in stale and f'href="/session/{sid(1)}"' in stale


def test_session_deleted_while_watched_stops_the_poll(migrated_db_dsn):
    write(migrated_db_dsn, insert_session(1))
    with webug_client(migrated_db_dsn) as c:
        assert c.get(f"/session/{sid(1)}/live", headers=HTMX).status_code == 200
        write(migrated_db_dsn, f"DELETE FROM sessions WHERE session_id = '{sid(1)}'")
        gone = c.get(f"/session/{sid(1)}/live", headers=HTMX)
    assert gone.status_code == 404
    assert "This session was deleted" in gone.text and "hx-trigger" not in gone.text


@pytest.mark.parametrize("bad", ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_invalid_session_id_is_a_400_that_explains_the_format(client, bad):
    for suffix in ("", "/live"):
        response = client.get(f"/session/{bad}{suffix}")
        assert response.status_code == 400
        assert "is not a session ID: a session ID is a UUID such as" in response.text
    body = client.get(f"/session/{bad}?format=json").json()
    assert body["status"] == 400 and "is not a session ID" in body["detail"]


def test_unknown_session_is_a_404_page(client):
    response = client.get(f"/session/{mid(7)}")
    assert response.status_code == 404
    assert f"No session {mid(7)} in the BMDB" in response.text and "<html" in response.text
    body = client.get(f"/session/{mid(7)}?format=json").json()
    assert body["status"] == 404 and "garbage-collected" in body["detail"]


def test_session_json_twin_shape(client):
    response = client.get(f"/session/{DEAD}", headers={"Accept": "application/json"})
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {
        "session",
        "work",
        "history",
        "history_limit",
        "history_truncated",
        "queries",
    }
    s = body["session"]
    assert s["session_id"] == str(DEAD) and s["url"] == f"/session/{DEAD}"
    assert s["component"] == "shepherd-lumen" and s["runtime_info"] == "pid 7"
    assert s["alive"] is False and s["interval_seconds"] == 60 and s["held_work"] == 1
    assert -400 < s["deadline_in_seconds"] < -290  # expired about five minutes ago
    for key in ("created_at", "deadline", "last_heartbeat_estimate"):
        datetime.fromisoformat(s[key])
    assert body["work"] == [
        {
            "machine_id": str(mid(2)),
            "machine_url": f"/machine/{mid(2)}",
            "process": "ShepherdAgentStart",
            "stale": True,
        }
    ]
    event = body["history"][0]
    assert set(event) == {
        "machine_id",
        "process",
        "event",
        "timestamp",
        "failed_cause",
        "after_expiry",
    }
    assert body["history_limit"] == 100 and body["history_truncated"] is False
    assert body["queries"] and all(isinstance(q["sql"], str) for q in body["queries"])
    alive = client.get(f"/session/{ALIVE}?format=json").json()
    assert alive["session"]["alive"] is True and alive["work"][0]["stale"] is False
    assert 0 < alive["session"]["deadline_in_seconds"] <= 3600


# /sessions -------------------------------------------------------------------------------


DEADLINE_CELL = (  # after the interval's
    r'<td class="num" data-label="interval">[^<]+</td>\s*<td class="ts" data-label="deadline">'
)


def test_list_shows_live_and_expired_sessions_with_held_work(client):
    text = client.get("/sessions").text
    assert text.startswith("<!doctype html>")
    assert listed_sessions(text) == [str(ALIVE), str(DEAD)]
    alive_row = section(text, f"s-{ALIVE}")
    alive_row = alive_row[: alive_row.index("</tr>")]
    assert '<span class="badge ok">alive</span>' in alive_row and "pid 42" in alive_row
    assert f'data-copy="{ALIVE}"' in alive_row and f'href="/session/{ALIVE}"' in alive_row
    assert 60 <= seconds_from_now(alive_row, DEADLINE_CELL) < 3600
    dead_row = section(text, f"s-{DEAD}")
    dead_row = dead_row[: dead_row.index("</tr>")]
    assert ">expired</span>" in dead_row and "1 stale" in dead_row
    assert -3600 < seconds_from_now(dead_row, DEADLINE_CELL) <= -60
    assert "2 shown of 2" in text


def test_stale_work_is_listed_prominently(client):
    text = client.get("/sessions").text
    stale = section(text, "stale-work")
    stale = stale[: stale.index("</section>")]
    assert "1</span> work item held by expired sessions" in stale
    assert f'<a href="/machine/{mid(2)}">' in stale and "ShepherdAgentStart" in stale
    assert f'<a href="/session/{DEAD}">' in stale and "shepherd-lumen" in stale
    assert -3600 < seconds_from_now(stale, "expired ") <= -60
    assert str(mid(1)) not in stale  # held by the alive session
    # Stale work is shown whatever the state filter: it is what operators look for.
    assert "work item held by expired sessions" in client.get("/sessions?state=alive").text
    equinix = client.get("/sessions?component=shepherd-equinix").text
    assert "No work is held by expired sessions of shepherd-equinix" in equinix


def test_long_stale_work_lists_the_longest_expired_and_links_them_all(migrated_db_dsn):
    machines = range(1, 26)
    write(
        migrated_db_dsn,
        insert_machines(*machines),
        *(insert_session(n, deadline=f"- interval '{n} minutes'") for n in machines),
        *(f"INSERT INTO work VALUES ('{mid(n)}', '{sid(n)}', 'ShepherdAccess')" for n in machines),
    )
    with webug_client(migrated_db_dsn) as c:
        stale = section(c.get("/sessions").text, "stale-work")
    stale = stale[: stale.index("</section>")]
    assert "25</span> work items held by expired sessions" in stale
    listed = re.findall(r'<tr class="stale" data-key="sw-([0-9a-f-]+)-', stale)
    assert listed == [str(mid(n)) for n in range(25, 5, -1)]  # the 20 longest-expired
    assert "Showing the 20 longest-expired of 25" in stale
    assert '<a href="/work?state=stale">all 25 stale work items</a>' in stale


def test_list_filters_by_component_and_state(client):
    equinix = client.get("/sessions?component=shepherd-equinix").text
    assert listed_sessions(equinix) == [str(ALIVE)]
    assert "component: shepherd-equinix ×" in equinix
    facets = section(equinix, "session-table")  # facets come before the table
    assert 'href="/sessions?component=shepherd-lumen"' in equinix[: equinix.index(facets)]
    assert listed_sessions(client.get("/sessions?state=alive").text) == [str(ALIVE)]
    assert listed_sessions(client.get("/sessions?state=expired").text) == [str(DEAD)]
    assert listed_sessions(client.get("/sessions?state=all").text) == [str(ALIVE), str(DEAD)]
    none = client.get("/sessions?component=shepherd-lumen&state=alive").text
    assert listed_sessions(none) == [] and "No sessions match these filters." in none
    assert listed_sessions(client.get("/sessions?component=nobody").text) == []
    bad = client.get("/sessions?state=dead")
    assert bad.status_code == 400 and "state" in bad.text
    too_long = client.get("/sessions?component=" + "x" * 201)
    assert too_long.status_code == 400
    assert "component: String should have at most 200 characters" in too_long.text


def test_component_facet_and_state_counts(client):
    text = client.get("/sessions?component=shepherd-lumen").text
    start = text.index('class="state-tabs"')
    tabs = text[start : text.index("</nav>", start)]
    counts = dict(re.findall(r'(alive|expired|all) <span class="n">(\d+)</span>', tabs))
    assert counts == {"alive": "0", "expired": "1", "all": "1"}
    assert 'href="/sessions?component=shepherd-lumen&amp;state=expired"' in tabs
    body = client.get("/sessions?format=json").json()
    assert body["components"] == [
        {
            "component": "shepherd-equinix",
            "alive": 1,
            "expired": 0,
            "held_work": 1,
            "stale_work": 0,
        },
        {"component": "shepherd-lumen", "alive": 0, "expired": 1, "held_work": 1, "stale_work": 1},
    ]
    assert body["states"] == {"alive": 1, "expired": 1, "all": 2}


def test_list_fragment_vs_full_page_and_pause(client):
    full = client.get("/sessions?component=shepherd-lumen").text
    assert "<html" in full and 'class="facets facets-fold"' in full
    fragment = client.get("/sessions?component=shepherd-lumen", headers=HTMX).text
    assert fragment.startswith('<div id="session-table"') and "<html" not in fragment
    assert 'class="facets facets-fold"' not in fragment and "state-tabs" not in fragment
    assert 'hx-get="/sessions?component=shepherd-lumen"' in fragment
    assert "every 5s [document.visibilityState === 'visible']" in fragment
    assert listed_sessions(fragment) == [str(DEAD)]
    assert "work item held by expired sessions" in fragment
    paused = client.get("/sessions?component=shepherd-lumen&live=0", headers=HTMX).text
    assert "hx-trigger" not in paused and "resume live updates" in paused
    assert 'href="/sessions?component=shepherd-lumen"' in paused  # resume keeps the filter
    slower = client.get("/sessions?every=30", headers=HTMX).text
    assert 'hx-get="/sessions?every=30"' in slower and "every 30s [" in slower


def test_list_json_twin_shape(client):
    response = client.get("/sessions?state=expired", headers={"Accept": "application/json"})
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {
        "sessions",
        "total",
        "limit",
        "after",
        "next_after",
        "filters",
        "states",
        "components",
        "stale_work",
        "queries",
    }
    assert body["total"] == 1 and body["limit"] == 100
    assert body["after"] is None and body["next_after"] is None
    assert body["filters"] == {"state": "expired"}
    (s,) = body["sessions"]
    assert set(s) == {
        "session_id",
        "url",
        "component",
        "runtime_info",
        "created_at",
        "interval_seconds",
        "deadline",
        "alive",
        "deadline_in_seconds",
        "last_heartbeat_estimate",
        "held_work",
    }
    assert s["session_id"] == str(DEAD) and s["alive"] is False and s["held_work"] == 1
    assert isinstance(s["interval_seconds"], int) and isinstance(s["deadline_in_seconds"], float)
    stale = body["stale_work"]
    assert stale["total"] == 1 and stale["truncated"] is False
    (item,) = stale["items"]
    assert item["machine_id"] == str(mid(2)) and item["machine_url"] == f"/machine/{mid(2)}"
    assert item["session_id"] == str(DEAD) and item["session_url"] == f"/session/{DEAD}"
    assert item["process"] == "ShepherdAgentStart" and item["component"] == "shepherd-lumen"
    assert 290 < item["expired_seconds_ago"] < 3600
    datetime.fromisoformat(item["session_deadline"])


def test_keyset_pages_walk_every_session_once(migrated_db_dsn):
    write(
        migrated_db_dsn,
        *(
            insert_session(
                n,
                component="a" if n % 2 else "b",
                deadline="+ interval '1 minute'" if n < 5 else "- interval '1 minute'",
            )
            for n in (7, 3, 5, 1, 6, 2, 4)
        ),
    )
    ids = [str(sid(n)) for n in range(1, 8)]
    with webug_client(migrated_db_dsn) as c:
        pages, after = [], None
        while True:
            url = "/sessions?limit=3" + (f"&after={after}" if after else "")
            text = c.get(url).text
            assert "shown of 7" in text
            pages.append(listed_sessions(text))
            found = re.search(
                r'rel="next" href="/sessions\?after=([0-9a-f-]{36})&amp;limit=3"', text
            )
            if not found:
                break
            after = found.group(1)
        assert pages == [ids[0:3], ids[3:6], ids[6:7]]
        assert "« first page" in text

        body = c.get("/sessions?limit=3&format=json").json()
        assert body["total"] == 7 and body["next_after"] == ids[2]
        last = c.get(f"/sessions?limit=3&after={ids[5]}&format=json").json()
        assert [s["session_id"] for s in last["sessions"]] == [ids[6]]
        assert last["next_after"] is None
        exact = c.get(f"/sessions?limit=3&after={ids[3]}&format=json").json()
        assert len(exact["sessions"]) == 3 and exact["next_after"] is None  # no empty page
        beyond = c.get(f"/sessions?limit=3&after={ids[6]}").text
        assert listed_sessions(beyond) == [] and "0 shown of 7" in beyond
        # Filters combine with pages: expired sessions 5, 6, 7 are one page of 3.
        expired = c.get("/sessions?state=expired&limit=2&format=json").json()
        assert [s["session_id"] for s in expired["sessions"]] == ids[4:6]
        assert expired["total"] == 3 and expired["next_after"] == ids[5]
        odd = c.get("/sessions?component=a&limit=1000&format=json").json()
        assert [s["session_id"] for s in odd["sessions"]] == [ids[0], ids[2], ids[4], ids[6]]
        for bad, says in (
            ("limit=0", "limit: Input should be greater than or equal to 1"),
            ("limit=1001", "limit: Input should be less than or equal to 1000"),
            ("after=nope", "after: Input should be a valid UUID"),
        ):
            response = c.get(f"/sessions?{bad}")
            assert response.status_code == 400 and says in response.text, bad


def test_database_text_is_escaped(migrated_db_dsn):
    write(
        migrated_db_dsn,
        insert_machines(1),
        insert_session(
            1,
            component="<b>evil</b>",
            runtime="<script>alert(1)</script>",
            deadline="- interval '1 minute'",
        ),
        f"INSERT INTO work VALUES ('{mid(1)}', '{sid(1)}', 'ShepherdAccess')",
    )
    with webug_client(migrated_db_dsn) as c:
        for url in ("/sessions", f"/session/{sid(1)}"):
            text = c.get(url).text
            assert "<script>alert" not in text and "<b>evil" not in text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
            assert "&lt;b&gt;evil&lt;/b&gt;" in text
        facet = c.get("/sessions").text
        assert 'href="/sessions?component=%3Cb%3Eevil%3C%2Fb%3E"' in facet
        body = c.get(f"/session/{sid(1)}?format=json").json()
        assert body["session"]["runtime_info"] == "<script>alert(1)</script>"
