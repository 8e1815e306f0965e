"""A machine's page and its live history, on a real PostgreSQL: the summary line, the
history section that polls (304 while nothing changed), the timeline's window and zoom,
red only for what blocks, and the JSON twins."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.model.entities import Backoff
from app.model.machine_history import choose_window, default_span
from app.render.timeline import nice_step
from tests.fleet import ALIVE, load_small_fleet, mid
from tests.support import execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}


@pytest.fixture
def fleet(migrated_db_dsn):
    load_small_fleet(migrated_db_dsn)
    with webug_client(migrated_db_dsn) as client:
        yield migrated_db_dsn, client


def events(html: str) -> list[str]:
    return re.findall(r'<span class="event">(\w+)</span>', html)


def write(dsn: str, *sql: str) -> None:
    run_sync(execute(dsn, *sql))


# ---- the live history ---------------------------------------------------------------------


def test_the_history_polls_answers_304_until_an_event_is_written_then_shows_it_first(fleet):
    dsn, client = fleet
    url = f"/machine/{mid(2)}/history?every=2"
    first = client.get(url, headers=HTMX)
    assert first.status_code == 200 and first.text.startswith('<section id="history"')
    ptag = first.headers["HX-PTag"]
    assert f'hx-ptag="{ptag}"' in first.text and 'hx-trigger="every 2s' in first.text
    assert "!document.querySelector(&#39;.live-bar .paused&#39;)" not in first.text
    assert "document.querySelector('.live-bar .paused')" in first.text  # rests when paused
    assert "data-updated hidden>· as of <time" in first.text  # the browser says when
    assert events(first.text) == ["Started", "Failed", "Started"]  # newest first

    unchanged = client.get(url, headers={**HTMX, "HX-PTag": ptag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["HX-PTag"] == ptag

    write(dsn, f"INSERT INTO work_history VALUES ('{mid(2)}', 'ShepherdAgentStart', 'Failed',"
               " now() - interval '1 minute', 'agent: image not found')")  # fmt: skip
    changed = client.get(url, headers={**HTMX, "HX-PTag": ptag})
    assert changed.status_code == 200 and changed.headers["HX-PTag"] != ptag
    assert events(changed.text) == ["Failed", "Started", "Failed", "Started"]
    assert "agent: image not found" in changed.text
    assert '<span class="count">4 events</span>' in changed.text


def test_work_and_backoffs_change_the_history_too(fleet):
    """The timeline draws work and backoffs: a change of either is a change of the
    history section, though no event was written."""
    dsn, client = fleet
    url = f"/machine/{mid(3)}/history"
    ptag = client.get(url, headers=HTMX).headers["HX-PTag"]
    write(dsn, f"INSERT INTO work VALUES ('{mid(3)}', '{ALIVE}', 'ShepherdRecovery')",
          f"INSERT INTO work_history VALUES ('{mid(3)}', 'ShepherdRecovery', 'Started',"
          " now() - interval '5 minutes', NULL)")  # fmt: skip
    changed = client.get(url, headers={**HTMX, "HX-PTag": ptag})
    assert changed.status_code == 200
    # Running work is drawn to the window's end; the browser cuts it at "now".
    assert re.search(r'<rect class="bar running" [^>]*data-until-now>', changed.text)
    again = client.get(url, headers={**HTMX, "HX-PTag": changed.headers["HX-PTag"]})
    assert again.status_code == 304
    write(dsn, f"DELETE FROM work WHERE machine_id = '{mid(3)}'")
    assert client.get(url, headers={**HTMX, "HX-PTag": ptag}).status_code == 200


def test_older_pages_do_not_poll_and_the_full_page_links_plainly(fleet):
    _, client = fleet
    older = client.get(f"/machine/{mid(2)}/history?limit=2&offset=2", headers=HTMX).text
    assert "hx-trigger" not in older and events(older) == ["Started"]
    page = client.get(f"/machine/{mid(2)}/history").text
    filters = re.search(r'<div class="history-filter">.*?</div>', page, re.S)[0]
    assert "href=" in filters and "hx-get" not in filters  # the history page: plain links
    embedded = client.get(f"/machine/{mid(2)}/history", headers=HTMX).text
    zoom = re.search(r'<nav class="zoom.*?</nav>', embedded, re.S)[0]
    # On the machine page a zoom swaps the section and goes into the page's URL.
    assert f'hx-push-url="/machine/{mid(2)}?window=6h"' in zoom
    asked_by_history = client.get(
        f"/machine/{mid(2)}/history", headers={**HTMX,
        "HX-Current-URL": f"http://localhost/machine/{mid(2)}/history"},
    ).text  # fmt: skip
    assert "hx-push-url" not in asked_by_history


# ---- the timeline's window ------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last_success", "span"),
    [
        (None, timedelta(hours=24)),  # never succeeded: the last 24 hours
        (NOW - timedelta(hours=3), timedelta(hours=24)),  # a recent success: 24 hours
        (NOW - timedelta(days=3), timedelta(days=3) * 1.05),  # since the last success
        (NOW - timedelta(days=30), timedelta(days=7)),  # ... up to 7 days
    ],
)
def test_the_default_window_reaches_back_to_the_last_success_up_to_7_days(last_success, span):
    assert default_span(NOW, last_success) == span
    start, end, step = choose_window(None, NOW, last_success, [], [])
    assert end - step <= NOW < end  # "now" rounded up to a tick
    assert span <= end - start < span + 2 * step
    assert (start - end) % step == timedelta(0)  # it starts at a tick too


@pytest.mark.parametrize(
    ("zoom", "span", "step", "end"),
    [("1h", timedelta(hours=1), timedelta(minutes=10), "2024-05-01T12:40Z"),
     ("6h", timedelta(hours=6), timedelta(hours=1), "2024-05-01T13:00Z"),
     ("24h", timedelta(hours=24), timedelta(hours=3), "2024-05-01T15:00Z"),
     ("7d", timedelta(days=7), timedelta(days=1), "2024-05-02T00:00Z")],
)  # fmt: skip
def test_a_zoom_spans_its_time_with_ticks_at_round_times(zoom, span, step, end):
    """NOW is 12:34:56: the window ends at the next tick."""
    start, ends, tick = choose_window(zoom, NOW, None, [], [])
    assert (ends - start, tick) == (span, step) and nice_step(span) == step
    assert ends == datetime.fromisoformat(end)
    later = choose_window(zoom, NOW + timedelta(seconds=3), None, [], [])
    assert later == (start, ends, tick)  # a few seconds later: the same window


def test_a_backoff_that_ends_later_is_drawn_to_its_end_up_to_a_quarter_span_ahead():
    def backoff(minutes: int) -> Backoff:
        return Backoff(process="ShepherdAccess", until=NOW + timedelta(minutes=minutes),
                       cause="", last_interval_seconds=600, active=True)  # fmt: skip

    _, end, _ = choose_window(None, NOW, None, [], [backoff(200)])
    assert end == datetime.fromisoformat("2024-05-01T18:00Z")  # 15:54 rounded up to 3 h
    _, end, _ = choose_window(None, NOW, None, [], [backoff(60 * 20)])
    assert end == datetime.fromisoformat("2024-05-01T21:00Z")  # 6 hours ahead at most
    _, end, _ = choose_window("1h", NOW, None, [], [backoff(60 * 20)])
    assert end == datetime.fromisoformat("2024-05-01T13:00Z")  # 20 minutes ahead, rounded


def test_zoom_is_kept_in_the_url_drawn_with_round_ticks_and_said_in_json(fleet):
    _, client = fleet
    body = client.get(f"/machine/{mid(2)}/history?window=6h&format=json").json()
    window = body["window"]
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    assert window["zoom"] == "6h" and end - start == timedelta(hours=6)
    assert start.minute == start.second == 0 and end > datetime.now(UTC)
    assert window["events"] == 3 and window["truncated"] is False

    html = client.get(f"/machine/{mid(2)}/history?window=6h").text
    assert "<b>6h</b>" in html and f'href="/machine/{mid(2)}/history?limit=50&amp;window=1h' in html
    ticks = re.findall(r'<tspan data-datetime="([^"]+)" data-absolute="minutes">', html)
    assert len(ticks) >= 6
    for tick in map(datetime.fromisoformat, ticks):
        assert tick.minute == tick.second == 0  # every hour on the hour
    svg = re.search(r"<svg [^>]*data-timeline[^>]*>", html)[0]
    assert f'data-start="{start.isoformat()}"' in svg and f'data-end="{end.isoformat()}"' in svg
    assert '<line class="now"' in html  # placed by timeline.js

    auto = client.get(f"/machine/{mid(2)}/history?format=json").json()["window"]
    span = datetime.fromisoformat(auto["end"]) - datetime.fromisoformat(auto["start"])
    assert auto["zoom"] is None and span == timedelta(hours=24)  # no success yet: 24 hours
    assert client.get(f"/machine/{mid(99)}/history?window=all&format=json").json()["window"][
        "start"
    ] <= (datetime.now(UTC) - timedelta(days=9)).isoformat()  # all of a deleted machine's


def test_a_window_with_nothing_in_it_says_so_and_a_bad_one_is_a_400(fleet):
    _, client = fleet
    html = client.get(f"/machine/{mid(99)}/history?window=1h").text  # 8 days old events
    assert "No work in this window" in html and "see all of it" in html and "<svg" not in html
    assert "<svg" in client.get(f"/machine/{mid(99)}/history?window=all").text
    bad = client.get(f"/machine/{mid(2)}/history?window=2h")
    assert bad.status_code == 400 and "1h" in bad.text and "all" in bad.text
    assert client.get(f"/machine/{mid(2)}?window=month").status_code == 400


def test_the_machine_page_hands_its_window_and_poll_to_the_history(fleet):
    _, client = fleet
    html = client.get(f"/machine/{mid(2)}?window=7d&every=5").text
    assert f'hx-get="/machine/{mid(2)}/history?window=7d&amp;every=5"' in html
    assert 'hx-trigger="revealed"' in html


# ---- the machine page ------------------------------------------------------------------------


def test_the_summary_line_comes_first_with_provider_heartbeat_and_workflows(fleet):
    dsn, client = fleet
    write(dsn, f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(2)}', now() - interval '3 m')")
    html = client.get(f"/machine/{mid(2)}").text
    summary = re.search(r'<p class="machine-summary" id="machine-summary">.*?</p>', html, re.S)[0]
    assert html.index("machine-summary") < html.index('class="live-bar"') < html.index("<h2>")
    facts = [" ".join(re.sub(r"<[^>]+>", " ", '<span class="fact' + f).split())
             for f in summary.split('<span class="fact')[1:]]  # fmt: skip
    assert facts[:4] == ["Lumen lumen-0002", "ny7", "10.0.0.2", "Missing"]
    assert re.search(r"heartbeat <time datetime=\"[^\"]+\" data-relative>", summary)
    assert ">silent<" not in summary  # 3 minutes: fresh
    assert 'AgentStart</a> <span class="badge wf-state bad" data-state="blocked">' in summary
    assert client.get(f"/machine/{mid(2)}?format=json").json()["heartbeat_recent"] is True
    # The live fragment carries it: it changes with the machine, and with the BMDB's clock.
    write(dsn, "UPDATE machine_agent_heartbeat SET agent_heartbeat_at = now() - interval '11 m'")
    live = client.get(f"/machine/{mid(2)}/live", headers=HTMX).text
    assert "machine-summary" in live and ">silent</span>" in live


def test_red_marks_only_what_blocks(migrated_db_dsn):
    """A healthy machine (provided, agent started, heartbeating, no work): every workflow
    has nothing to do, and none of the conditions that say why is a red ✗."""
    healthy, blocked = mid(1), mid(2)
    write(
        migrated_db_dsn,
        f"INSERT INTO machines VALUES ('{healthy}', now()), ('{blocked}', now())",
        f"INSERT INTO sessions VALUES ('{ALIVE}', 'shepherd', '', now(), 60,"
        " now() - interval '1 minute')",
        f"INSERT INTO machine_provided (machine_id, provider, provider_id, provider_status)"
        f" VALUES ('{healthy}', 'Equinix', 'eq-1', 'Running'),"
        f" ('{blocked}', 'Equinix', 'eq-2', 'Running')",
        f"INSERT INTO machine_agent_heartbeat VALUES ('{healthy}', now())",
        f"INSERT INTO machine_agent_started VALUES ('{healthy}', now(), '\\x01')",
        f"INSERT INTO work VALUES ('{blocked}', '{ALIVE}', 'ShepherdAccess')",  # stale
    )
    with webug_client(migrated_db_dsn) as client:
        fine = client.get(f"/machine/{healthy}").text
        stuck = client.get(f"/machine/{blocked}").text
    workflows = re.search(r'<table class="grid workflows".*?</table>', fine, re.S)[0]
    assert workflows.count("not needed") == 3 and "✗" in workflows  # why: said, not red
    assert "bad-text" not in workflows and "badge bad" not in workflows
    stuck_workflows = re.search(r'<table class="grid workflows".*?</table>', stuck, re.S)[0]
    assert re.search(r'<span class="fails bad-text">✗ no work of', stuck_workflows)


# ---- JSON twins --------------------------------------------------------------------------------


def test_json_twins_of_the_history_and_the_page(fleet):
    _, client = fleet
    body = client.get(f"/machine/{mid(2)}/history?format=json").json()
    assert [e["event"] for e in body["events"]] == ["Started", "Failed", "Started"]
    assert set(body["window"]) == {"zoom", "start", "end", "events", "truncated"}
    assert len(body["queries"]) == 1
    older = client.get(f"/machine/{mid(2)}/history?offset=1&format=json").json()
    assert older["window"] is None  # the timeline comes with the first page
    page = client.get(f"/machine/{mid(2)}?format=json").json()
    assert {w["workflow"]: w["state"] for w in page["workflows"]}["AgentStart"] == "blocked"
    spec = client.get("/openapi.json").json()
    history = spec["paths"]["/machine/{machine_id}/history"]["get"]
    assert {p["name"] for p in history["parameters"]} >= {"window", "every", "live"}
