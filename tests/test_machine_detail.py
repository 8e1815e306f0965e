"""Machine detail, its live and history fragments, and provider hot links (real PostgreSQL)."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.fleet import ALIVE, DEAD, load_small_fleet, mid
from tests.support import execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def test_detail_page_shows_work_sessions_backoffs_and_tags(client):
    page = client.get(f"/machine/{mid(2)}")
    assert page.status_code == 200
    text = page.text
    assert f'data-copy="{mid(2)}"' in text
    assert "1 active work" in text and "1 active backoff<" in text
    assert f'href="/session/{DEAD}"' in text and "shepherd-lumen" in text
    assert "STALE — session expired" in text
    assert "ssh: connection refused &lt;script&gt;" in text and "<script>alert" not in text
    assert "lumen-0002" in text and "Missing" in text
    assert "Without:" in text and "lacks=AgentStarted" in text
    assert 'hx-get="/machine/' in text and 'hx-trigger="revealed"' in text  # lazy history
    assert "console.equinix.com" not in text  # no console template for Lumen


def test_live_work_is_alive_and_console_link_is_templated(client):
    text = client.get(f"/machine/{mid(1)}").text
    assert f'href="/session/{ALIVE}"' in text and "alive" in text and "STALE" not in text
    assert 'href="https://console.equinix.com/devices/eq-aaa/overview"' in text


def test_live_fragment_polls_and_answers_304_when_unchanged(client):
    fragment = client.get(f"/machine/{mid(2)}/live", headers=HTMX)
    assert fragment.status_code == 200
    assert fragment.text.startswith('<div id="machine-live"')
    assert "every 2s [document.visibilityState === 'visible']" in fragment.text
    ptag = fragment.headers["HX-PTag"]
    assert f'hx-ptag="{ptag}"' in fragment.text
    unchanged = client.get(f"/machine/{mid(2)}/live", headers={**HTMX, "HX-PTag": ptag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    stale_tag = client.get(f"/machine/{mid(2)}/live", headers={**HTMX, "HX-PTag": "old"})
    assert stale_tag.status_code == 200


def test_paused_fragment_has_no_trigger(client):
    fragment = client.get(f"/machine/{mid(2)}/live?live=0", headers=HTMX).text
    assert "hx-trigger" not in fragment and "resume live updates" in fragment


def test_history_newest_first_filterable_paginated_with_timeline(client):
    text = client.get(f"/machine/{mid(2)}/history", headers=HTMX).text
    assert text.startswith('<section id="history"')
    events = re.findall(r'<span class="event">(\w+)</span>', text)
    assert events == ["Started", "Failed", "Started"]  # newest first
    assert "ssh: refused" in text
    assert "<svg" in text and 'class="failure"' in text and 'class="bar backoff"' in text
    only = client.get(f"/machine/{mid(2)}/history?process=ShepherdAgentStart", headers=HTMX).text
    assert re.findall(r'<span class="event">(\w+)</span>', only) == ["Started"]
    first = client.get(f"/machine/{mid(2)}/history?limit=2", headers=HTMX).text
    assert len(re.findall(r'class="event"', first)) == 2 and "older »" in first
    second = client.get(f"/machine/{mid(2)}/history?limit=2&offset=2", headers=HTMX).text
    assert re.findall(r'<span class="event">(\w+)</span>', second) == ["Started"]
    assert "« newer" in second and "older »" not in second


def test_deleted_machine_is_404_but_links_its_history(client):
    gone = client.get(f"/machine/{mid(99)}")
    assert gone.status_code == 404
    assert f'href="/machine/{mid(99)}/history">2 work history events' in gone.text
    history = client.get(f"/machine/{mid(99)}/history")
    assert history.status_code == 200 and "no longer exists" in history.text
    assert re.findall(r'<span class="event">(\w+)</span>', history.text) == ["Finished", "Started"]
    never = client.get(f"/machine/{mid(98)}")
    assert never.status_code == 404 and "no work history for it either" in never.text


@pytest.mark.parametrize("bad", ["not-a-uuid", "12", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_invalid_machine_id_is_a_400_that_explains_the_format(client, bad):
    page = client.get(f"/machine/{bad}")
    assert page.status_code == 400
    assert "is neither a machine ID nor a machine ID prefix" in page.text
    for suffix in ("/live", "/history"):
        response = client.get(f"/machine/{bad}{suffix}")
        assert response.status_code == 400
        assert "is not a machine ID: a machine ID is a UUID" in response.text


def test_machine_id_prefix_redirects_to_the_canonical_url(client):
    unique = client.get("/machine/0000000C-0000", follow_redirects=False)  # dashes, any case
    assert unique.status_code == 303 and unique.headers["location"] == f"/machine/{mid(12)}"
    several = client.get("/machine/0000")
    assert (
        several.status_code == 200 and str(mid(1)) in several.text and str(mid(12)) in several.text
    )
    assert client.get("/machine/ffff").status_code == 404


def test_provider_hot_link_redirects_to_the_machine(client):
    found = client.get("/provider/Lumen/lumen-0002", follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/machine/{mid(2)}"
    missing = client.get("/provider/Lumen/nope")
    assert missing.status_code == 404 and "nope" in missing.text


@pytest.mark.parametrize("provider", ["equinix", "EQUINIX", "eQuInIx"])
def test_provider_hot_link_takes_the_provider_in_any_letter_case(client, provider):
    found = client.get(f"/provider/{provider}/eq-aaa", follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/machine/{mid(1)}"


def test_provider_hot_link_not_found_offers_the_search(client):
    """IDs are matched exactly: one in another letter case is not found, and the 404
    links the search, which finds it in any letter case (and under any provider)."""
    missing = client.get("/provider/Lumen/LUMEN-0002")
    assert missing.status_code == 404
    assert 'href="/search?q=LUMEN-0002"' in missing.text
    assert client.get("/provider/Lumen/LUMEN-0002", headers=JSON).json()["search"] == "LUMEN-0002"
    search = client.get("/search?q=LUMEN-0002", follow_redirects=False)
    assert search.status_code == 303 and search.headers["location"] == f"/machine/{mid(2)}"


def test_machine_deleted_while_watched_stops_the_poll_and_says_so(migrated_db_dsn):
    load_small_fleet(migrated_db_dsn)
    with webug_client(migrated_db_dsn) as client:
        assert client.get(f"/machine/{mid(3)}/live", headers=HTMX).status_code == 200
        run_sync(
            execute(
                migrated_db_dsn,
                f"DELETE FROM work_backoff WHERE machine_id = '{mid(3)}'",
                f"DELETE FROM machine_provided WHERE machine_id = '{mid(3)}'",
                f"DELETE FROM machines WHERE machine_id = '{mid(3)}'",
            )
        )
        gone = client.get(f"/machine/{mid(3)}/live", headers=HTMX)
    assert gone.status_code == 404
    assert "was deleted" in gone.text and "hx-trigger" not in gone.text


# One process run three times, ending three ways; rows inserted out of time order.
RUNS = [  # (minutes ago, event, failed_cause as SQL)
    (30, "Canceled", "NULL"),
    (50, "Started", "NULL"),
    (10, "Finished", "NULL"),
    (45, "Failed", "'disk on fire'"),
    (20, "Started", "NULL"),
    (40, "Started", "NULL"),
]
NEWEST_FIRST = ["Finished", "Started", "Canceled", "Started", "Failed", "Started"]


def test_history_is_newest_first_and_the_timeline_runs_left_to_right(migrated_db_dsn):
    run_sync(
        execute(
            migrated_db_dsn,
            f"INSERT INTO machines VALUES ('{mid(1)}', now() - interval '1 day')",
            *(
                f"INSERT INTO work_history VALUES ('{mid(1)}', 'ShepherdAccess', '{event}',"
                f" now() - interval '{ago} minutes', {cause})"
                for ago, event, cause in RUNS
            ),
        )
    )
    url = f"/machine/{mid(1)}/history"
    with webug_client(migrated_db_dsn) as client:
        page = client.get(url + "?window=1h").text  # the hour they happened in
        fragment = client.get(url, headers=HTMX).text
        body = client.get(url + "?format=json").json()
        older = client.get(url + "?limit=4&offset=4", headers=HTMX).text
    for text in (page, fragment):
        assert re.findall(r'<span class="event">(\w+)</span>', text) == NEWEST_FIRST
        times = re.findall(r'<td class="mono ts"><time [^>]+>([^<]+)</time></td>', text)
        assert len(times) == 6 and times == sorted(set(times), reverse=True)
    assert [e["event"] for e in body["events"]] == NEWEST_FIRST
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in body["events"]]
    assert stamps == sorted(set(stamps), reverse=True)
    assert body["events"][4]["failed_cause"] == "disk on fire"
    assert re.findall(r'<span class="event">(\w+)</span>', older) == NEWEST_FIRST[4:]
    # The timeline draws each run from its start to its end, oldest on the left.
    bars = re.findall(r'<rect class="bar (\w+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', page)
    assert [kind for kind, _, _ in bars] == ["failed", "canceled", "finished"]
    edges = [float(v) for _, x, width in bars for v in (x, float(x) + float(width))]
    assert edges == sorted(set(edges))
    assert all(float(width) > 20 for _, _, width in bars)  # minutes long, not 2px stubs
    (tick,) = re.findall(r'<line class="failure" x1="([\d.]+)"', page)
    assert abs(float(tick) - edges[1]) < 0.2  # the failure tick ends the failed run
