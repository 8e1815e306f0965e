"""How pages are drawn, on a real PostgreSQL: rows and blocks follow every change of
their data, and depend on their data alone (times tick in the browser)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from tests.fleet import ALIVE, DEAD, load_small_fleet, mid
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


def cell_keys(row_html: str) -> dict[str, str]:
    """The data-key of each keyed cell of a list row, by the cell's class."""
    return dict(re.findall(r'<td class="([^"]+)"[^>]* data-key="([^"]+)"', row_html))


def test_a_row_changes_with_its_machine_and_back(fleet):
    with webug_client(fleet) as client:
        bare = row(client, 4)
        assert row(client, 4) == bare  # unchanged: the same row
        assert "<time" not in bare.split('class="ts heartbeat"')[1].split("</td>")[0]
        assert 'class="badge work"' not in bare

        run_sync(execute(fleet, f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(4)}', now())"))
        beating = row(client, 4)
        assert "<time" in beating.split('class="ts heartbeat"')[1].split("</td>")[0]
        # Its first heartbeat is news (a new data-key: the browser flashes the cell)...
        assert cell_keys(beating)["ts heartbeat"] != cell_keys(bare)["ts heartbeat"]
        run_sync(execute(fleet, "UPDATE machine_agent_heartbeat SET agent_heartbeat_at = now()"))
        # ...the next ones are not: no key changes, nothing flashes.
        assert cell_keys(row(client, 4)) == cell_keys(beating)

        run_sync(
            execute(fleet, f"INSERT INTO work VALUES ('{mid(4)}', '{ALIVE}', 'ShepherdAccess')")
        )
        working = row(client, 4)
        assert '<span class="badge work"' in working and "ShepherdAccess" in working
        assert cell_keys(working)["work"] != cell_keys(beating)["work"]
        assert {k: v for k, v in cell_keys(working).items() if k != "work"} == {
            k: v for k, v in cell_keys(beating).items() if k != "work"
        }

        run_sync(
            execute(
                fleet,
                f"DELETE FROM work WHERE machine_id = '{mid(4)}'",
                f"DELETE FROM machine_agent_heartbeat WHERE machine_id = '{mid(4)}'",
            )
        )
        assert row(client, 4) == bare


def test_a_row_is_the_same_bytes_while_its_machine_is_unchanged(fleet):
    """Times are absolute <time>s the browser makes relative: the server writes nothing
    that moves with the clock, so an unchanged machine's row is the same bytes later."""
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
    assert second == first
    # The heartbeat (tags column) and the machine's creation: absolute UTC text, with the
    # instant the browser counts from.
    times = re.findall(r'<time datetime="([^"]+)" data-relative>([^<]*)</time>', second)
    assert len(times) == 2
    for instant, text in times:
        shown = datetime.fromisoformat(instant).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        assert text == shown
    assert " ago" not in second


def test_a_machines_tag_blocks_follow_their_tags(fleet):
    """A machine page's poll shows each tag as its values are: the same bytes while only
    its work changed, the new value (and a new data-key: it flashes) once it changes."""
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
        assert tag_block(client, 4, "AgentHeartbeat") == first

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


def _key(row_html: str) -> str:
    return re.search(r'data-key="([^"]+)"', row_html)[1]


def test_each_table_keeps_its_view_and_leaves_its_update_time_to_the_browser(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as client:
        first = client.get("/?every=5", headers=HTMX).text
        time.sleep(1.1)
        second = client.get("/?every=5", headers=HTMX).text
        paused = client.get("/?every=5&live=0", headers=HTMX).text
        faster = client.get("/?every=2", headers=HTMX).text
    # "updated HH:MM:SS" is written by the browser (times.js) when an answer arrives.
    assert second == first
    assert 'data-updated hidden>· updated <time data-absolute="time"></time>' in first
    assert 'hx-trigger="every 5s' in second and "<b>5s</b>" in second
    assert "hx-trigger" not in paused and "paused" in paused  # same data, other view
    assert 'hx-trigger="every 2s' in faster and "<b>2s</b>" in faster


PAGES = [
    "/",
    f"/machine/{mid(1)}",
    f"/machine/{mid(2)}",
    f"/machine/{mid(2)}/history",
    f"/session/{ALIVE}",
    f"/session/{DEAD}",
    "/sessions",
    "/overview",
    "/failures",
    "/activity",
    "/schema",
    f"/watch?ids={mid(1)},{mid(2)},{mid(5)}",
    f"/search?q={str(mid(1))[:8]}",
]
FRAGMENTS = ["/", f"/machine/{mid(5)}/live", "/sessions", f"/session/{ALIVE}/live"]
FOOTER = re.compile(r'<footer class="page-footer">.*?</footer>', re.S)
SERVER_RELATIVE = re.compile(r">(in )?\d+[smhd]( \d+[smhd])?( ago)?</time>")  # "3m ago", "in 2s"


def test_pages_are_the_same_bytes_later_on_an_unchanged_bmdb(fleet):
    """No page writes a time relative to when it is drawn: fetched again seconds later,
    with nothing changed in the BMDB, it is byte for byte the same but for its footer's
    timings. The machine 5 has times seconds old, which "ago" texts would show moving.
    Counts and history reads are kept for the test's length, as they are between reads."""
    run_sync(execute(
        fleet,
        f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(5)}', now() - interval '3 s')",
        f"UPDATE machines SET machine_created_at = now() - interval '20 s'"
        f" WHERE machine_id = '{mid(5)}'",
    ))  # fmt: skip
    urls = [(u, {}) for u in PAGES] + [(u, HTMX) for u in FRAGMENTS]
    with webug_client(fleet, count_cache_seconds=3600, history_cache_seconds=3600) as client:
        first = [client.get(u, headers=h, follow_redirects=False) for u, h in urls]
        time.sleep(2.1)
        second = [client.get(u, headers=h, follow_redirects=False) for u, h in urls]
    for (url, headers), a, b in zip(urls, first, second, strict=True):
        assert a.status_code in (200, 303) and b.status_code == a.status_code, url
        assert FOOTER.sub("", b.text) == FOOTER.sub("", a.text), (url, headers)
        assert not SERVER_RELATIVE.search(a.text), url
