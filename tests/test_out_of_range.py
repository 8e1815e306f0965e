"""Stored values Python cannot hold ('infinity', '-infinity', years past 9999, seconds
beyond any timedelta) on every page and fragment that shows them, HTML and JSON alike.

A debug tool shows them as what they are: the stored text in HTML and JSON; `null` for a
derived number that would be infinite; "never" for a relative time that never comes.
"""

from __future__ import annotations

import re
from uuid import UUID

import pytest

from app.bmdb.dsn import database_name
from tests.fleet import mid
from tests.support import cloned_database, execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}
BIG = 2**63 - 1  # the largest BIGINT: seconds no timedelta holds

FOREVER = UUID("5e550001-0000-4000-8000-000000000000")  # deadline 'infinity'
NEVER_ALIVE = UUID("5e550002-0000-4000-8000-000000000000")  # deadline '-infinity'
FAR = UUID("5e550003-0000-4000-8000-000000000000")  # deadline in year 294276

M_NEG, M_10K, M_FAR, M_NOW = mid(1), mid(2), mid(3), mid(4)

ROWS = [
    f"""INSERT INTO machines VALUES ('{M_NEG}', '-infinity'), ('{M_10K}', '10000-01-01'),
        ('{M_FAR}', '294276-01-01'), ('{M_NOW}', now() - interval '1 day')""",
    f"""INSERT INTO sessions VALUES
        ('{FOREVER}', 'forever', 'pid 1', '-infinity', {BIG}, 'infinity'),
        ('{NEVER_ALIVE}', 'never', 'pid 2', now() - interval '1 hour', 60, '-infinity'),
        ('{FAR}', 'far', 'pid 3', '10000-01-01', 60, '294276-01-01')""",
    f"""INSERT INTO work VALUES ('{M_NEG}', '{FOREVER}', 'ShepherdAccess'),
        ('{M_10K}', '{NEVER_ALIVE}', 'ShepherdAgentStart'),
        ('{M_FAR}', '{FAR}', 'ShepherdAccess'),
        ('{M_NOW}', '{NEVER_ALIVE}', 'ShepherdRecovery')""",
    f"""INSERT INTO work_backoff VALUES
        ('{M_NEG}', 'ShepherdAccess', 'infinity', 'forever', {2**62}),
        ('{M_NOW}', 'ShepherdRecovery', now() + interval '10 minutes', 'huge interval', {2**62}),
        ('{M_NOW}', 'ShepherdAgentStart', '-infinity', 'long over', 60),
        ('{M_FAR}', 'ShepherdAgentStart', '294276-01-01', 'far away', 60)""",
    f"""INSERT INTO work_history VALUES
        ('{M_NEG}', 'ShepherdAccess', 'Started', '-infinity', NULL),
        ('{M_NEG}', 'ShepherdAccess', 'Failed', 'infinity', 'at the end of time'),
        ('{M_NEG}', 'ShepherdAccess', 'Started', now() - interval '1 hour', NULL),
        ('{M_10K}', 'ShepherdAgentStart', 'Started', now() - interval '1 hour', NULL),
        ('{M_10K}', 'ShepherdAgentStart', 'Finished', 'infinity', NULL),
        ('{M_NOW}', 'ShepherdRecovery', 'Started', '10000-01-01', NULL),
        ('{M_NOW}', 'ShepherdRecovery', 'Failed', '294276-01-01', 'far'),
        ('{M_NOW}', 'ShepherdRecovery', 'Started', now() - interval '2 hours', NULL),
        ('{M_NOW}', 'ShepherdRecovery', 'Finished', '-infinity', NULL),
        ('{M_FAR}', 'ShepherdAccess', 'Started', '9999-12-31 23:59:59.999999+00', NULL)""",
    f"""INSERT INTO machine_agent_started VALUES ('{M_NEG}', 'infinity', '\\x01'),
        ('{M_10K}', '10000-01-01', '\\x02')""",
    f"""INSERT INTO machine_agent_heartbeat VALUES ('{M_NEG}', '-infinity'),
        ('{M_10K}', '294276-01-01')""",
]


@pytest.fixture(scope="module")
def odd_dsn(pg_server_dsn: str, migrated_template: str):
    with cloned_database(pg_server_dsn, migrated_template, *ROWS) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def client(odd_dsn: str):
    with webug_client(odd_dsn) as c:
        yield c


def ok(client, url: str, **kwargs) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, (url, response.status_code, response.text[:2000])
    return response.text


def ok_json(client, url: str) -> dict:
    separator = "&" if "?" in url else "?"
    response = client.get(f"{url}{separator}format=json")
    assert response.status_code == 200, (url, response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


ALL_PAGES = [
    "/",
    "/?limit=5000",
    *(f"/machine/{m}" for m in (M_NEG, M_10K, M_FAR, M_NOW)),
    *(f"/machine/{m}/live" for m in (M_NEG, M_10K, M_FAR, M_NOW)),
    *(f"/machine/{m}/history" for m in (M_NEG, M_10K, M_FAR, M_NOW)),
    *(f"/machine/{m}/history?process=ShepherdRecovery" for m in (M_NEG, M_NOW)),
    "/sessions",
    "/sessions?state=alive",
    "/sessions?state=expired",
    *(f"/session/{s}" for s in (FOREVER, NEVER_ALIVE, FAR)),
    *(f"/session/{s}/live" for s in (FOREVER, NEVER_ALIVE, FAR)),
    "/overview",
    "/activity",
    "/failures",
    f"/watch?ids={M_NEG},{M_10K},{M_FAR},{M_NOW}",
    *(f"/?sort={s}" for s in ("created", "-created", "backoff", "-backoff", "heartbeat",
                             "-heartbeat")),  # fmt: skip
]


@pytest.mark.parametrize("url", ALL_PAGES)
def test_every_page_and_fragment_answers(client, url):
    ok(client, url)
    ok(client, url, headers=HTMX)
    ok_json(client, url)


@pytest.mark.parametrize("sort", ["created", "-created", "backoff", "heartbeat", "-heartbeat"])
def test_keyset_pages_past_such_keys(client, sort):
    """One machine a page, in each order of a timestamp: every page follows from the one
    before, also past a key of '-infinity', 'infinity' or year 294276."""
    seen, url = [], f"/?sort={sort}&limit=1&format=json"
    while url and len(seen) < 10:
        page = ok_json(client, url)
        seen += [m["machine_id"] for m in page["machines"]]
        after = page["next_after"]
        url = f"/?sort={sort}&limit=1&format=json&after={after}" if after else None
    assert sorted(seen) == sorted(map(str, (M_NEG, M_10K, M_FAR, M_NOW)))


def test_search_lists_machines_and_sessions_with_such_values(client):
    machines = ok(client, "/search?q=0000000")
    assert all(str(m) in machines for m in (M_NEG, M_10K, M_FAR, M_NOW))
    sessions = ok(client, "/search?q=5e55")
    assert all(str(s) in sessions for s in (FOREVER, NEVER_ALIVE, FAR))
    found = ok_json(client, "/search?q=5e55")["matches"]
    assert {m["id"] for m in found} == {str(s) for s in (FOREVER, NEVER_ALIVE, FAR)}


def _machine(client, machine_id: UUID) -> dict:
    return ok_json(client, f"/machine/{machine_id}")["machine"]


def test_machine_json_carries_the_stored_text(client):
    neg = _machine(client, M_NEG)
    assert neg["created_at"] == "-infinity"
    assert neg["tags"]["AgentStarted"]["agent_started_at"] == "infinity"
    assert neg["tags"]["AgentHeartbeat"]["agent_heartbeat_at"] == "-infinity"
    [work] = neg["work"]
    assert work["session_deadline"] == "infinity" and work["session_created_at"] == "-infinity"
    assert work["session_interval_seconds"] == BIG and not work["stale"]
    [backoff] = neg["backoffs"]
    assert backoff["until"] == "infinity" and backoff["active"]
    assert backoff["last_interval_seconds"] == 2**62
    assert _machine(client, M_10K)["created_at"] == "10000-01-01T00:00:00+00:00"
    assert _machine(client, M_FAR)["created_at"] == "294276-01-01T00:00:00+00:00"
    listed = {m["machine_id"]: m for m in ok_json(client, "/")["machines"]}
    assert listed[str(M_NEG)]["created_at"] == "-infinity"
    assert listed[str(M_FAR)]["work"][0]["session_deadline"] == "294276-01-01T00:00:00+00:00"


def test_machine_page_shows_the_stored_text(client):
    page = ok(client, f"/machine/{M_NEG}")
    assert "-infinity" in page
    work = page[page.index('id="work"') : page.index('id="backoffs"')]
    assert ">-infinity<" in work and ">infinity<" in work  # the session's created, deadline
    backoffs = page[page.index('id="backoffs"') :]
    assert 'class="mono">infinity<' in backoffs  # until
    far = ok(client, f"/machine/{M_FAR}")
    assert "294276-01-01" in far


def test_list_shows_the_stored_text(client):
    page = ok(client, "/")
    row = page[page.index(f'id="m-{M_NEG}"') :]
    row = row[: row.index("</tr>")]
    assert "-infinity" in row
    row = page[page.index(f'id="m-{M_10K}"') :]
    assert "10000-01-01" in row[: row.index("</tr>")]


def test_history_shows_events_at_any_time_and_draws_the_rest(client):
    page = ok(client, f"/machine/{M_NEG}/history")
    assert "<svg" in page  # the finite events still make a timeline
    rows = page[page.index('class="grid history"') :]
    assert "-infinity" in rows and ">infinity<" in rows
    events = ok_json(client, f"/machine/{M_NEG}/history")["events"]
    # Newest first, as PostgreSQL orders them: 'infinity' first, '-infinity' last.
    assert events[0]["timestamp"] == "infinity" and events[-1]["timestamp"] == "-infinity"
    events = ok_json(client, f"/machine/{M_NOW}/history")["events"]
    assert [e["timestamp"][:6] for e in events][:2] == ["294276", "10000-"]
    assert events[-1]["timestamp"] == "-infinity"
    # The last moment Python holds, in the future: the whole history's axis ends there.
    assert "<svg" in ok(client, f"/machine/{M_FAR}/history?window=all")
    assert "No work in this window" in ok(client, f"/machine/{M_FAR}/history")  # 24 hours


def test_timeline_draws_work_of_an_expired_session_as_stale(client):
    """Work held by a session whose deadline is '-infinity' is stale, not running."""
    for machine_id in (M_10K, M_NOW):
        svg = ok(client, f"/machine/{machine_id}/history")
        svg = svg[svg.index("<svg") : svg.index("</svg>")]
        assert 'class="bar stale"' in svg and 'class="bar running"' not in svg
        assert "session expired -infinity" in svg


def test_sessions_json(client):
    data = ok_json(client, "/sessions")
    by_id = {s["session_id"]: s for s in data["sessions"]}
    forever = by_id[str(FOREVER)]
    assert forever["deadline"] == "infinity" and forever["created_at"] == "-infinity"
    assert forever["alive"] and forever["interval_seconds"] == BIG
    assert forever["deadline_in_seconds"] is None
    assert forever["last_heartbeat_estimate"] == "infinity"
    never = by_id[str(NEVER_ALIVE)]
    assert never["deadline"] == "-infinity" and not never["alive"]
    assert never["deadline_in_seconds"] is None and never["last_heartbeat_estimate"] == "-infinity"
    far = by_id[str(FAR)]
    assert far["deadline"] == "294276-01-01T00:00:00+00:00" and far["alive"]
    assert far["deadline_in_seconds"] is None
    # 60 s before a deadline Python cannot hold is a time Python cannot compute either.
    assert far["last_heartbeat_estimate"] is None
    stale = data["stale_work"]
    assert stale["total"] == 2
    assert {w["session_deadline"] for w in stale["items"]} == {"-infinity"}
    assert all(w["expired_seconds_ago"] is None for w in stale["items"])


def test_sessions_page_says_never_and_the_stored_text(client):
    page = ok(client, "/sessions")
    forever = page[page.index(f'id="s-{FOREVER}"') :]
    forever = forever[: forever.index("</tr>")]
    assert ">-infinity<" in forever  # created
    assert 'title="infinity (as stored)">never<' in forever  # the deadline
    stale = page[page.index('id="stale-work"') : page.index('class="grid stack flow sessions"')]
    assert "-infinity" in stale


def test_session_pages(client):
    page = ok(client, f"/session/{FOREVER}")
    state = page[page.index('id="session-state"') :]
    state = state[: state.index("</div>")]
    assert "alive" in state and "infinity" in state
    assert "-infinity" in page  # created
    data = ok_json(client, f"/session/{FOREVER}")
    assert data["session"]["deadline"] == "infinity"
    # Its machine's history since '-infinity': every event, at any time.
    assert {e["timestamp"] for e in data["history"]} >= {"infinity", "-infinity"}
    never = ok_json(client, f"/session/{NEVER_ALIVE}")
    assert never["session"]["deadline"] == "-infinity"
    # Every event of a session expired at '-infinity' happened after its expiry.
    assert never["history"] and all(e["after_expiry"] for e in never["history"])
    ok(client, f"/session/{NEVER_ALIVE}")


def test_an_infinite_deadline_is_never_reached(client):
    """Where a deadline's relative time is shown, 'infinity' reads "never"; every other
    value Python cannot hold reads as stored."""
    live = ok(client, f"/session/{FOREVER}/live")
    assert re.search(r"alive</span> deadline <span[^>]*>never</span>", live)
    assert re.search(r'deadline <span class="mono">infinity</span>', live)
    never = ok(client, f"/session/{NEVER_ALIVE}/live")
    assert re.search(r"expired</span> <span[^>]*>-infinity</span>", never)
    machine = ok(client, f"/machine/{M_NEG}/live")
    assert re.search(r'"mono">infinity</span> \(<span[^>]*>never</span>\)', machine)
    assert re.search(r"active</span> ends <span[^>]*>never</span>", machine)
    far = ok(client, f"/session/{FAR}/live")
    assert re.search(r"deadline <span[^>]*>294276-01-01T00:00:00\+00:00</span>", far)


def test_times_past_year_9999_in_utc_written_in_another_time_zone(migrated_db_dsn):
    """A BMDB whose TimeZone is not UTC writes 10000-01-01 03:00 UTC as 9999-12-31 22:00
    -05:00: Python parses that but cannot hold it in UTC. Shown as PostgreSQL wrote it."""
    db = database_name(migrated_db_dsn)
    run_sync(execute(
        migrated_db_dsn,
        f"ALTER DATABASE \"{db}\" SET timezone TO 'America/New_York'",
        f"INSERT INTO machines VALUES ('{M_10K}', '10000-01-01 03:00:00+00')",
        f"INSERT INTO sessions VALUES ('{FAR}', 'far', 'pid 3', '0001-01-01 00:00:00+00', 60,"
        " '10000-01-01 03:00:00+00')",
        f"INSERT INTO work VALUES ('{M_10K}', '{FAR}', 'ShepherdAccess')",
        f"INSERT INTO work_history VALUES ('{M_10K}', 'ShepherdAccess', 'Started',"
        f" '10000-01-01 03:00:00+00', NULL), ('{M_10K}', 'ShepherdAccess', 'Failed',"
        " now() - interval '1 hour', 'x')",
        f"INSERT INTO machine_agent_heartbeat VALUES ('{M_10K}', '10000-01-01 03:00:00+00')",
    ))  # fmt: skip
    stored = "9999-12-31T22:00:00-05:00"
    with webug_client(migrated_db_dsn) as client:
        for url in ("/", f"/machine/{M_10K}", f"/machine/{M_10K}/history", "/sessions",
                    f"/session/{FAR}"):  # fmt: skip
            assert stored in ok(client, url)
        machine = ok_json(client, f"/machine/{M_10K}")["machine"]
        assert machine["created_at"] == stored
        assert machine["tags"]["AgentHeartbeat"]["agent_heartbeat_at"] == stored
        assert machine["work"][0]["session_deadline"] == stored
        session = ok_json(client, f"/session/{FAR}")["session"]
        assert session["deadline"] == stored and session["deadline_in_seconds"] is None
        # Year 1 began in 1 BC in New York (local mean time, -04:56:02).
        assert session["created_at"] == "0001-12-31T19:03:58-04:56:02 BC"
        events = ok_json(client, f"/machine/{M_10K}/history")["events"]
        assert events[0]["timestamp"] == stored


def test_failures_and_activity_with_such_times(client):
    """/failures groups backoffs whose failure time cannot be computed (until 'infinity',
    an interval of 2^62 s: null) and failures at 'infinity'; /activity and the overview
    draw the hours there are, without the events no hour holds."""
    groups = {g["signature"]: g for g in ok_json(client, "/failures")["groups"]}
    assert groups["forever"]["first_seen"] is None and groups["huge interval"]["last_seen"] is None
    assert groups["at the end of time"]["last_seen"] == "infinity"
    assert groups["far"]["last_seen"] == "294276-01-01T00:00:00+00:00"
    for group in groups.values():  # each group's machines, listed
        assert ok_json(client, group["url"])["machines"]
    hours = ok_json(client, "/overview")["activity"]
    assert sum(h["n"] for h in hours) == 3  # the three finite events of the last day, no other
