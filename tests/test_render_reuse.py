"""Rendered HTML reused across responses (list rows, facets, protobuf values) on a real
PostgreSQL: it follows every change of its data, and its relative times stay current."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from markupsafe import escape

from app.render.relative_times import fill, later
from tests.fleet import ALIVE, load_small_fleet, mid
from tests.support import execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def row(client, machine: int) -> str:
    """The list row of one machine, as the poll fragment sends it."""
    fragment = client.get("/?limit=500", headers=HTMX)
    assert fragment.status_code == 200
    match = re.search(rf'<tr id="m-{mid(machine)}".*?</tr>', fragment.text, re.S)
    assert match, f"machine {machine} not listed"
    return match[0]


@pytest.fixture
def fleet(migrated_db_dsn):
    load_small_fleet(migrated_db_dsn)
    return migrated_db_dsn


def test_a_reused_row_changes_with_its_machine_and_back(fleet):
    with webug_client(fleet) as client:
        bare = row(client, 4)
        assert row(client, 4) == bare  # unchanged: the same row
        assert "AgentHeartbeat" not in bare and 'class="badge work"' not in bare

        run_sync(execute(fleet, f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(4)}', now())"))
        beating = row(client, 4)
        assert "AgentHeartbeat" in beating
        assert _key(beating) != _key(bare)  # a new data-key: the browser flashes the row

        run_sync(
            execute(fleet, f"INSERT INTO work VALUES ('{mid(4)}', '{ALIVE}', 'ShepherdAccess')")
        )
        working = row(client, 4)
        assert '<span class="badge work"' in working and "ShepherdAccess" in working

        run_sync(
            execute(
                fleet,
                f"DELETE FROM work WHERE machine_id = '{mid(4)}'",
                f"DELETE FROM machine_agent_heartbeat WHERE machine_id = '{mid(4)}'",
            )
        )
        assert _without_times(row(client, 4)) == _without_times(bare)


def test_reused_rows_tell_time_relative_to_each_response(fleet):
    run_sync(
        execute(
            fleet,
            f"UPDATE machines SET machine_created_at = now() - interval '50 seconds'"
            f" WHERE machine_id = '{mid(5)}'",
            f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(5)}', now() - interval '40 s')",
        )
    )
    with webug_client(fleet) as client:
        first = row(client, 5)
        time.sleep(2.1)
        second = row(client, 5)
    # In row order: the heartbeat (tags column), then the machine's creation.
    (beat_1, created_1), (beat_2, created_2) = _seconds_ago(first), _seconds_ago(second)
    assert 49 <= created_1 < 60 and 39 <= beat_1 < 50
    assert created_2 >= created_1 + 2 and beat_2 >= beat_1 + 2
    assert _without_times(first) == _without_times(second)  # the same row otherwise
    # Both tick in the browser too (webug.js): <time datetime=... data-relative>.
    assert second.count("data-relative>") == 2


def test_a_machines_reused_tag_blocks_follow_their_tags_and_tell_time_per_response(fleet):
    """A machine page's poll renders no tag anew while only its work changed: the tag's
    HTML is the same but for its relative times, which are current; a changed tag shows."""
    run_sync(execute(
        fleet, f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(4)}', now() - interval '40 s')"
    ))  # fmt: skip
    with webug_client(fleet) as client:
        first = tag_block(client, 4, "AgentHeartbeat")
        run_sync(
            execute(fleet, f"INSERT INTO work VALUES ('{mid(4)}', '{ALIVE}', 'ShepherdAccess')")
        )
        time.sleep(2.1)
        assert "ShepherdAccess" in live(client, 4)
        second = tag_block(client, 4, "AgentHeartbeat")
        assert _without_times(second) == _without_times(first)
        (ago_1,), (ago_2,) = _seconds_ago(first), _seconds_ago(second)
        assert 39 <= ago_1 < 50 and ago_2 >= ago_1 + 2

        run_sync(execute(
            fleet,
            "UPDATE machine_agent_heartbeat SET agent_heartbeat_at = '2024-05-01 12:00:00+00'"
            f" WHERE machine_id = '{mid(4)}'",
        ))  # fmt: skip
        changed = tag_block(client, 4, "AgentHeartbeat")
        assert "2024-05-01T12:00:00+00:00" in changed and _key(changed) != _key(first)


def live(client, machine: int) -> str:
    fragment = client.get(f"/machine/{mid(machine)}/live", headers=HTMX)
    assert fragment.status_code == 200
    return fragment.text


def tag_block(client, machine: int, tag: str) -> str:
    """One tag's block of a machine, as its page's poll sends it."""
    block = rf'<div class="tag-block" id="tag-{tag}".*?</div>'
    match = re.search(block, live(client, machine), re.S)
    assert match, f"machine {machine} has no {tag} block"
    return match[0]


def test_list_fetches_only_the_fields_its_rows_show_and_json_gets_them_all(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as client:
        page = client.get("/").text
        data = client.get("/?format=json").json()
    footer_sql = re.findall(r"<pre>(SELECT[^<]*)</pre>", page)
    assert footer_sql and any("machine_agent_started" in sql for sql in footer_sql)
    assert all("agent_public_key" not in sql for sql in footer_sql)
    first = next(m for m in data["machines"] if m["machine_id"] == str(mid(1)))
    assert first["tags"]["AgentStarted"]["agent_public_key"]["hex"] == "0102"


def test_relative_time_markers_are_filled_per_response():
    ts = NOW - timedelta(minutes=3)
    html = f"<td>{later(ts)}</td><td>{later(None)}</td>"
    assert fill(html, NOW) == "<td>3m ago</td><td></td>"
    assert fill(html, NOW + timedelta(minutes=2)) == "<td>5m ago</td><td></td>"
    assert fill(str(later(NOW + timedelta(seconds=20))), NOW) == "in 20s"
    # 'infinity' arrives as datetime.max/min: text, not an error page.
    assert fill(str(later(datetime.min.replace(tzinfo=UTC))), NOW).endswith(" ago")


def test_text_from_the_database_cannot_forge_a_marker():
    # The marker's token is random per process: data shaped like a marker stays data.
    forged = "\x1e" + "0" * 16 + f"{NOW.timestamp():.6f}" + "\x1f"
    shown = str(escape(forged))
    assert fill(shown, NOW) == shown


def _key(row_html: str) -> str:
    return re.search(r'data-key="([^"]+)"', row_html)[1]


def _without_times(row_html: str) -> str:
    """The row without its relative-time texts and its data-key."""
    row_html = re.sub(r"data-relative>[^<]*<", "data-relative><", row_html)
    return re.sub(r'data-key="[^"]+"', "", row_html)


def _seconds_ago(row_html: str) -> list[int]:
    return [int(s) for s in re.findall(r"data-relative>(\d+)s ago<", row_html)]


def test_each_table_tells_its_own_update_time_and_keeps_each_view_apart(small_fleet_dsn):
    def updated(html: str) -> str:
        return re.search(r"updated <time [^>]+>(\d\d:\d\d:\d\dZ)</time>", html)[1]

    with webug_client(small_fleet_dsn) as client:
        first = client.get("/?every=5", headers=HTMX).text
        time.sleep(1.1)
        second = client.get("/?every=5", headers=HTMX).text
        paused = client.get("/?every=5&live=0", headers=HTMX).text
        faster = client.get("/?every=2", headers=HTMX).text
    assert updated(first) != updated(second)  # the same table, its own clock
    assert 'hx-trigger="every 5s' in second and "<b>5s</b>" in second
    assert "hx-trigger" not in paused and "paused" in paused  # same data, other view
    assert 'hx-trigger="every 2s' in faster and "<b>2s</b>" in faster
