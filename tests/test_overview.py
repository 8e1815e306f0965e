"""Fleet overview on a real PostgreSQL: every number, and every number's link, checked.

The real proof that a link is right: fetching it lists exactly that many machines.
"""

from __future__ import annotations

import html
import re
from datetime import datetime

import pytest

from tests.fleet import ALIVE, DEAD, MACHINES, load_small_fleet, mid
from tests.support import execute, run_sync, webug_client

ROW = re.compile(r'<tr id="m-([0-9a-f-]{36})"')
HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def overview(client) -> dict:
    response = client.get("/overview?format=json")
    assert response.status_code == 200, response.text
    return response.json()


def machine_stats(data: dict) -> list[dict]:
    """Every machine count of the overview JSON, each {label, count, url}."""
    stats = [data["machines"], *data["tags"], data["stale_work"]]
    stats += data["providers"] + data["statuses"] + data["work"] + data["active_backoffs"]
    stats += data["provider_statuses"]
    for section in ("agents", "installation"):
        stats += [v for v in data[section].values() if isinstance(v, dict)]
    return stats


def listed(client, url: str) -> list[str]:
    """The machine IDs the list at `url` shows (all on one page)."""
    assert url.startswith("/") and not url.startswith("/sessions")
    response = client.get(url + ("&" if "?" in url else "?") + "limit=5000")
    assert response.status_code == 200, (url, response.text)
    return ROW.findall(response.text)


SESSION_ROW = re.compile(r'<tr id="s-([0-9a-f-]{36})"')


def listed_sessions(client, url: str) -> list[str]:
    assert url.startswith("/sessions?")
    response = client.get(url + "&limit=1000")
    assert response.status_code == 200, (url, response.text)
    return SESSION_ROW.findall(response.text)


def counts(stats: list[dict]) -> dict[str, int]:
    return {s["label"]: s["count"] for s in stats}


def test_overview_numbers_are_the_small_fleets_known_answers(client):
    data = overview(client)
    assert data["exact"] is True
    assert datetime.fromisoformat(data["computed_at"])
    assert data["machines"] == {"label": "machines", "count": MACHINES, "url": "/"}
    assert counts(data["tags"]) == {
        "AgentHeartbeat": 0,
        "AgentStarted": 1,
        "HardwareReport": 0,
        "OSInstallationReport": 0,
        "OSInstallationRequest": 0,
        "Provided": 3,
    }
    assert counts(data["providers"]) == {"Equinix": 2, "Lumen": 1}
    assert counts(data["statuses"]) == {"Running": 1, "Missing": 1, "NULL": 1}
    assert {(p["provider"], p["status"], p["count"]) for p in data["provider_statuses"]} == {
        ("Equinix", "Running", 1),
        ("Equinix", "NULL", 1),
        ("Lumen", "Missing", 1),
    }
    agents = data["agents"]
    assert agents["started"]["count"] == 1
    assert (agents["heartbeat_recent"]["count"], agents["heartbeat_stale"]["count"]) == (0, 0)
    assert agents["never_heartbeated"]["count"] == 1 and agents["heartbeat_window_seconds"] == 600
    assert {k: v["count"] for k, v in data["installation"].items()} == {
        "pending": 0,
        "complete": 0,
        "failed": 0,
    }
    assert counts(data["work"]) == {"ShepherdAccess": 1, "ShepherdAgentStart": 1}
    assert data["stale_work"]["count"] == 1
    # The ShepherdRecovery backoff on mid3 has expired: not active, not counted.
    assert counts(data["active_backoffs"]) == {"ShepherdAccess": 1}
    sessions = {
        s["component"]: (s["alive"]["count"], s["expired"]["count"]) for s in data["sessions"]
    }
    assert sessions == {"shepherd-equinix": (1, 0), "shepherd-lumen": (0, 1)}
    assert data["queries"] and all({"sql", "ms", "rows"} <= q.keys() for q in data["queries"])


def test_every_number_links_to_a_list_of_exactly_that_many_machines(client):
    data = overview(client)
    stats = machine_stats(data)
    assert len(stats) >= 20
    for stat in stats:
        assert len(listed(client, stat["url"])) == stat["count"], stat
    # Spot checks that the right machines are behind the links, not just as many.
    providers = {s["label"]: s["url"] for s in data["providers"]}
    statuses = {s["label"]: s["url"] for s in data["statuses"]}
    assert listed(client, providers["Lumen"]) == [str(mid(2))]
    assert listed(client, statuses["NULL"]) == [str(mid(3))]
    assert listed(client, data["stale_work"]["url"]) == [str(mid(2))]
    assert listed(client, data["active_backoffs"][0]["url"]) == [str(mid(2))]
    assert listed(client, data["agents"]["never_heartbeated"]["url"]) == [str(mid(1))]


def test_session_numbers_link_to_the_sessions_list_of_exactly_those_sessions(client):
    sessions = {c["component"]: c for c in overview(client)["sessions"]}
    for component in sessions.values():
        for state in ("alive", "expired"):
            stat = component[state]
            assert len(listed_sessions(client, stat["url"])) == stat["count"], stat
    assert listed_sessions(client, sessions["shepherd-equinix"]["alive"]["url"]) == [str(ALIVE)]
    assert listed_sessions(client, sessions["shepherd-lumen"]["expired"]["url"]) == [str(DEAD)]


def test_page_shows_each_number_as_its_link_with_bars_and_status_colours(client):
    page = client.get("/overview")
    assert page.status_code == 200
    text = page.text
    for stat in machine_stats(overview(client)):
        link = f'href="{html.escape(stat["url"])}"'
        assert re.search(re.escape(link) + r"[^>]*>" + str(stat["count"]) + "<", text), stat
    assert 'id="machines-total">12</a>' in text
    # Status colours as in the list: Running green, Missing red, NULL neutral.
    assert re.search(
        r'<tr class="stat status status-running">\s*<th scope="row"><a href="/\?status=Running"',
        text,
    )
    assert re.search(r'<tr class="stat status status-missing">', text)
    assert re.search(
        r'<tr class="stat status status-none">\s*<th scope="row"><a href="/\?status=NULL"', text
    )
    # Bars are inline SVG: a quarter of the fleet is provided (3 of 12).
    assert '<rect width="25.0%"' in text
    assert 'style="' not in text.split("<main>")[1]  # no inline styles
    assert "<script>" not in text.split("<main>")[1]
    # Sessions: the component with no live session is marked, both counts link.
    assert 'href="/sessions?component=shepherd-lumen&amp;state=expired"' in text
    assert 'href="/sessions?component=shepherd-equinix&amp;state=alive"' in text
    assert "no live session" in text
    assert "exact counts" in text and 'id="computed-at"' in text
    assert '<a href="/overview">overview</a>' in text  # header nav


def test_overview_polls_every_10s_pauses_and_serves_its_fragment_to_htmx(client):
    page = client.get("/overview").text
    assert 'hx-get="/overview"' in page
    assert "every 10s [document.visibilityState === 'visible']" in page
    fragment = client.get("/overview", headers=HTMX)
    assert fragment.status_code == 200
    assert fragment.text.startswith('<div id="overview-live"')
    assert "<html" not in fragment.text and 'id="machines-total">12</a>' in fragment.text
    paused = client.get("/overview?live=0", headers=HTMX).text
    assert "hx-trigger" not in paused and "resume live updates" in paused
    bad = client.get("/overview?live=maybe")
    assert bad.status_code == 400 and "live: Input should be a valid boolean" in bad.text


def test_overview_json_shape(client):
    data = overview(client)
    assert set(data) == {
        "computed_at", "exact", "machines", "tags", "providers", "statuses",
        "provider_statuses", "agents", "installation", "work", "stale_work",
        "active_backoffs", "sessions", "queries", "workflows", "stuck", "stuck_by", "unmanaged",
        # the activity series, read once per interval (tests/test_activity.py)
        "activity", "activity_daily", "activity_computed_at", "activity_next_read_after",
        "activity_read_ms", "activity_error",
    }  # fmt: skip
    for stat in machine_stats(data):
        assert set(stat) in ({"label", "count", "url"}, {"provider", "status", "count", "url"})
        assert isinstance(stat["count"], int) and stat["url"].startswith("/")
    assert set(data["agents"]) == {
        "started", "heartbeat_recent", "heartbeat_stale", "never_heartbeated",
        "heartbeat_window_seconds",
    }  # fmt: skip
    assert set(data["installation"]) == {"pending", "complete", "failed"}
    for s in data["sessions"]:
        assert set(s) == {"component", "alive", "expired"}
        assert s["alive"]["url"] == f"/sessions?component={s['component']}&state=alive"
    schema = client.get("/openapi.json").json()
    assert "OverviewPage" in schema["components"]["schemas"]


# Heartbeats and OS installations (the small fleet has none): machines 1..8 plus known answers.
AGENTS_AND_INSTALLS = [
    """INSERT INTO machines SELECT ('0000000' || g || '-0000-4000-8000-000000000000')::uuid, now()
       FROM generate_series(1, 8) g""",
    f"""INSERT INTO machine_agent_started VALUES
        ('{mid(1)}', now(), '\\x01'), ('{mid(2)}', now(), '\\x02'), ('{mid(3)}', now(), '\\x03')""",
    f"""INSERT INTO machine_agent_heartbeat VALUES
        ('{mid(1)}', now() - interval '1 minute'), ('{mid(2)}', now() - interval '30 minutes'),
        ('{mid(4)}', now() - interval '9 minutes')""",
    f"""INSERT INTO machine_os_installation_request VALUES
        ('{mid(1)}', 2, '\\x00'), ('{mid(2)}', 2, '\\x00'), ('{mid(3)}', 2, '\\x00'),
        ('{mid(4)}', 2, '\\x00'), ('{mid(5)}', 1, '\\x00'), ('{mid(7)}', 5, '\\x00')""",
    f"""INSERT INTO machine_os_installation_report VALUES
        ('{mid(2)}', 1, 'Success', '\\x00'), ('{mid(3)}', 2, 'Success', '\\x00'),
        ('{mid(4)}', 3, 'Error', '\\x00'), ('{mid(5)}', 1, 'Error', '\\x00'),
        ('{mid(6)}', 1, 'Success', '\\x00'), ('{mid(7)}', 4, 'Error', '\\x00')""",
]


def test_heartbeat_and_installation_numbers_link_to_exactly_their_machines(migrated_db_dsn):
    run_sync(execute(migrated_db_dsn, *AGENTS_AND_INSTALLS))
    with webug_client(migrated_db_dsn) as client:
        data = overview(client)
        agents, install = data["agents"], data["installation"]
        expected = {
            "heartbeat_recent": [1, 4],
            "heartbeat_stale": [2],
            "never_heartbeated": [3],
            "started": [1, 2, 3],
        }
        for key, machines in expected.items():
            assert agents[key]["count"] == len(machines), key
            assert listed(client, agents[key]["url"]) == [str(mid(n)) for n in machines], key
        # A report answers a request of the same or older generation; mid6 has no request.
        expected = {"pending": [1, 2, 7], "complete": [3], "failed": [4, 5]}
        for key, machines in expected.items():
            assert install[key]["count"] == len(machines), key
            assert listed(client, install[key]["url"]) == [str(mid(n)) for n in machines], key
        for stat in machine_stats(data):
            assert len(listed(client, stat["url"])) == stat["count"], stat
        assert data["providers"] == [] and data["sessions"] == [] and data["work"] == []
        page = client.get("/overview").text
        assert "No work." in page and "No active backoffs." in page and "No sessions." in page


def test_overview_counts_are_taken_once_then_shared_by_every_poll(migrated_db_dsn):
    load_small_fleet(migrated_db_dsn)
    with webug_client(migrated_db_dsn) as client:
        first = client.get("/overview?format=json").json()
        assert first["queries"], "the first view counts"
        run_sync(execute(migrated_db_dsn, f"DELETE FROM work WHERE machine_id = '{mid(1)}'"))
        again = client.get("/overview?format=json").json()
        assert again["queries"] == [] and again["computed_at"] == first["computed_at"]
        assert counts(again["work"]) == counts(first["work"])  # the same counting, reused
        fragment = client.get("/overview", headers=HTMX).text
        assert "recounted at most every 10 s" in fragment


def test_overview_counts_move_with_the_fleet(migrated_db_dsn):
    load_small_fleet(migrated_db_dsn)
    with webug_client(migrated_db_dsn, count_cache_seconds=0) as client:
        assert overview(client)["stale_work"]["count"] == 1
        run_sync(
            execute(
                migrated_db_dsn,
                f"UPDATE sessions SET session_deadline = now() - interval '1 second'"
                f" WHERE session_id = '{ALIVE}'",
                f"DELETE FROM sessions WHERE session_id = '{DEAD}'",  # work goes with it
            )
        )
        fragment = client.get("/overview", headers=HTMX).text
        data = overview(client)
        assert listed(client, data["stale_work"]["url"]) == [str(mid(1))]
    assert data["stale_work"]["count"] == 1 and counts(data["work"]) == {"ShepherdAccess": 1}
    assert [(s["component"], s["alive"]["count"]) for s in data["sessions"]] == [
        ("shepherd-equinix", 0)
    ]
    assert 'href="/?work=ShepherdAccess"' in fragment and "ShepherdAgentStart" not in fragment


def test_overview_leaves_out_what_this_bmdbs_schema_lacks(migrated_db_dsn):
    run_sync(
        execute(
            migrated_db_dsn,
            *AGENTS_AND_INSTALLS[:2],
            "DROP TABLE machine_agent_heartbeat",
            "ALTER TABLE machine_os_installation_report DROP COLUMN os_installation_result",
            "DROP TABLE machine_provided",
        )
    )
    with webug_client(migrated_db_dsn) as client:
        data = overview(client)
        assert data["agents"] is None and data["providers"] is None
        assert data["installation"]["complete"] is None and data["installation"]["pending"]
        assert counts(data["tags"])["AgentStarted"] == 3
        page = client.get("/overview")
        assert page.status_code == 200
        assert "<h2>Agents</h2>" not in page.text and "<h2>Provided</h2>" not in page.text
        assert "<h2>OS installation</h2>" in page.text and "complete (Success)" not in page.text
