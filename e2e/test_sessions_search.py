"""The header search box and the sessions pages, driven in a real Chromium.

Search: "/" focuses the header box; a pasted provider ID or a typed IP address lands on
its machine; an ambiguous machine ID prefix lists the machines, and a click opens one.

Sessions: a session that expires while /sessions or /session/<id> is open turns
"expired" in place (no reload), and the work it holds shows up as stale.

Rows these tests write (with asyncpg, as a BMDB component would) are removed again at
teardown, even when a test fails, so the seeded fleet stays as seeded.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from e2e.e2e_db import Db, insert_session

LIST_EXPIRY_TIMEOUT_MS = 8_000  # /sessions polls every 5 s: one poll plus slack
PAGE_EXPIRY_TIMEOUT_MS = 6_000  # /session/<id> polls every 2 s
COMPONENT = "e2e-shepherd"


def mark_document(page: Page) -> None:
    """Tag the loaded document; a reload or navigation loses the tag."""
    page.evaluate("window.__marker = 1")


def still_same_document(page: Page) -> bool:
    return page.evaluate("window.__marker === 1")


def focus_search_with_slash(page: Page) -> None:
    box = page.locator("#search-box")
    expect(box).not_to_be_focused()
    page.keyboard.press("/")
    expect(box).to_be_focused()
    expect(box).to_have_value("")  # the "/" only focused the box; it was not typed into it


# -------------------------------------------------------------------------- search


def test_pasted_provider_id_opens_its_machine(page: Page, page_errors: list[str], db: Db) -> None:
    row = db.fetchrow(
        """
        SELECT machine_id, provider_id FROM machine_provided p
        WHERE provider_id LIKE 'lumen-%'
          AND NOT EXISTS (SELECT 1 FROM machine_provided o
                          WHERE o.provider_id = p.provider_id AND o.machine_id <> p.machine_id)
        ORDER BY machine_id LIMIT 1
        """
    )
    assert row is not None, "the seeded fleet has Lumen machines"
    machine_id, provider_id = row["machine_id"], row["provider_id"]

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/")
    focus_search_with_slash(page)
    # Pasted from chat: with the stray spaces and quotes chat wraps IDs in.
    page.evaluate("text => navigator.clipboard.writeText(text)", f" '{provider_id}' ")
    page.keyboard.press("Control+V")
    expect(page.locator("#search-box")).to_have_value(f" '{provider_id}' ")
    page.keyboard.press("Enter")

    page.wait_for_url(f"**/machine/{machine_id}")
    expect(page.locator("h1")).to_contain_text(str(machine_id))
    expect(page.locator("main")).to_contain_text(provider_id)
    assert page_errors == []


def test_ip_address_opens_its_machine(page: Page, page_errors: list[str], db: Db) -> None:
    row = db.fetchrow(
        """
        SELECT min(machine_id::text)::uuid AS machine_id, provider_ip_address AS ip
        FROM machine_provided WHERE provider_ip_address IS NOT NULL
        GROUP BY provider_ip_address HAVING count(*) = 1
        ORDER BY provider_ip_address LIMIT 1
        """
    )
    assert row is not None, "the seeded fleet has provided machines with unique IPs"
    machine_id, ip = row["machine_id"], row["ip"]

    page.goto("/sessions")
    focus_search_with_slash(page)
    page.keyboard.type(ip)
    page.keyboard.press("Enter")

    page.wait_for_url(f"**/machine/{machine_id}")
    expect(page.locator("h1")).to_contain_text(str(machine_id))
    expect(page.locator("main")).to_contain_text(ip)
    assert page_errors == []


def shared_prefix_machines(db: Db) -> tuple[str, list[uuid.UUID]]:
    """A 4-hex-digit prefix that 2+ machines share, and those machines.

    200 random IDs share one only by luck (about 1 in 4 fleets), so when the fleet has
    none, two machines are added with a prefix nothing else in the BMDB starts with
    (no machine, session, provider or reservation ID): the list is exactly those two.
    """
    row = db.fetchrow(
        """
        SELECT left(machine_id::text, 4) AS prefix, array_agg(machine_id ORDER BY machine_id) AS ids
        FROM machines GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1 LIMIT 1
        """
    )
    if row is not None:
        return row["prefix"], list(row["ids"])
    prefix = db.fetchrow(
        """
        SELECT p FROM (SELECT lpad(to_hex(n), 4, '0') AS p FROM generate_series(0, 65535) n) c
        WHERE NOT EXISTS (SELECT 1 FROM machines WHERE left(machine_id::text, 4) = c.p)
          AND NOT EXISTS (SELECT 1 FROM sessions WHERE left(session_id::text, 4) = c.p)
          AND NOT EXISTS (SELECT 1 FROM machine_provided
                          WHERE lower(provider_id) LIKE c.p || '%'
                             OR lower(provider_reservation_id) LIKE c.p || '%')
        ORDER BY p DESC LIMIT 1
        """
    )["p"]
    ids = [uuid.UUID(f"{prefix}e2e0-0000-4000-8000-00000000000{i}") for i in (1, 2)]
    db.execute(
        "INSERT INTO machines (machine_id, machine_created_at)"
        " SELECT unnest($1::uuid[]), now() - interval '1 hour'",
        ids,
    )
    db.cleanup("DELETE FROM machines WHERE machine_id = ANY($1::uuid[])", ids)
    return prefix, ids


def test_ambiguous_id_prefix_lists_matches(
    page: Page, page_errors: list[str], db: Db, screenshot
) -> None:
    prefix, ids = shared_prefix_machines(db)

    page.goto("/overview")
    focus_search_with_slash(page)
    page.keyboard.type(prefix)
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(rf"/search\?q={prefix}$"))
    expect(page.locator("h1")).to_contain_text(prefix)
    group = page.locator("#kind-machine")
    expect(group.locator("h2")).to_contain_text("Machines by ID")
    links = group.locator("td.id a")
    expect(links).to_have_text([str(i) for i in ids])
    expect(page.locator("#search-box")).to_have_value(prefix)  # the header keeps the query
    screenshot(page, "search-results")

    chosen = ids[-1]
    group.locator(f'a[href="/machine/{chosen}"]').click()
    page.wait_for_url(f"**/machine/{chosen}")
    expect(page.locator("h1")).to_contain_text(str(chosen))
    assert page_errors == []


# ------------------------------------------------------------------------ sessions


@dataclass
class Held:
    session_id: uuid.UUID
    machine_id: uuid.UUID
    process: str


@pytest.fixture
def expiring_session(db: Db) -> Held:
    """A new alive session (deadline in 30 s) holding one work item, removed at teardown."""
    row = db.fetchrow(
        """
        SELECT m.machine_id, p.process::text AS process
        FROM machines m CROSS JOIN unnest(enum_range(NULL::process)) AS p(process)
        WHERE NOT EXISTS (SELECT 1 FROM work w
                          WHERE w.machine_id = m.machine_id AND w.process = p.process)
        ORDER BY p.process = 'ShepherdRecovery' DESC, m.machine_id DESC LIMIT 1
        """
    )
    assert row is not None
    session_id = insert_session(
        db,
        "e2e: expires while watched",
        component=COMPONENT,
        interval_seconds=30,
        deadline="30 seconds",
    )
    held = Held(session_id, row["machine_id"], row["process"])
    db.execute(
        "INSERT INTO work (machine_id, session_id, process) VALUES ($1, $2, $3::process)",
        held.machine_id,
        held.session_id,
        held.process,
    )
    db.cleanup("DELETE FROM work WHERE session_id = $1", held.session_id)
    return held


def expire(db: Db, session_id: uuid.UUID) -> None:
    """What happens when the owner stops renewing: the deadline passes."""
    db.execute(
        "UPDATE sessions SET session_deadline = now() - interval '1 second' WHERE session_id = $1",
        session_id,
    )


def test_session_list_shows_expiry_and_stale_work_live(
    page: Page, page_errors: list[str], db: Db, expiring_session: Held, screenshot
) -> None:
    held = expiring_session
    page.goto(f"/sessions?component={COMPONENT}")
    row = page.locator(f"#s-{held.session_id}")
    expect(row).to_have_class(re.compile(r"\balive\b"))
    expect(row.locator(".badge.ok")).to_have_text("alive")
    expect(row.locator("td.num").last).to_have_text("1")
    stale_rows = page.locator("#stale-work tr.stale", has_text=str(held.session_id))
    expect(stale_rows).to_have_count(0)
    expect(page.locator("#session-table .live-dot")).to_be_visible()
    mark_document(page)

    expire(db, held.session_id)

    expect(row).to_have_class(re.compile(r"\bexpired\b.*\bstale\b"), timeout=LIST_EXPIRY_TIMEOUT_MS)
    expect(row.locator(".badge.bad").first).to_have_text("expired")
    expect(row.locator("td.num").last).to_have_text("1 stale")
    expect(page.locator("#stale-work")).to_have_class(re.compile(r"\bhas-stale\b"))
    expect(stale_rows).to_have_count(1)
    expect(stale_rows).to_contain_text(str(held.machine_id))
    expect(stale_rows).to_contain_text(held.process)
    expect(stale_rows.locator(f'a[href="/session/{held.session_id}"]')).to_be_visible()
    assert still_same_document(page), "the page was reloaded instead of updated in place"
    screenshot(page, "expired")
    assert page_errors == []


def test_session_page_shows_expiry_and_stale_work_live(
    page: Page, page_errors: list[str], db: Db, expiring_session: Held, screenshot
) -> None:
    held = expiring_session
    page.goto(f"/session/{held.session_id}")
    expect(page.locator("h1")).to_contain_text(str(held.session_id))
    state = page.locator("#session-state")
    work_row = page.locator("#held-work tbody tr", has_text=str(held.machine_id))
    expect(state.locator(".badge")).to_have_text("alive")
    expect(work_row).to_contain_text(held.process)
    expect(work_row.locator(".badge")).to_have_text("running")
    expect(page.locator("#stale-count")).to_have_count(0)
    screenshot(page, "alive")
    mark_document(page)

    expire(db, held.session_id)

    expect(state.locator(".badge")).to_have_text("expired", timeout=PAGE_EXPIRY_TIMEOUT_MS)
    expect(state).to_have_class(re.compile(r"\bexpired\b"))
    expect(page.locator("#stale-count")).to_have_text("1 STALE")
    expect(work_row).to_have_class(re.compile(r"\bstale\b"))
    expect(work_row.locator(".badge")).to_have_text(re.compile("^STALE"))
    expect(page.locator(".stale-note")).to_be_visible()
    assert still_same_document(page), "the page was reloaded instead of updated in place"
    screenshot(page, "expired")
    assert page_errors == []


# --------------------------------------------------------------------- screenshots


def test_screenshots_of_sessions_search_overview_schema(
    page: Page, page_errors: list[str], db: Db, screenshot
) -> None:
    """Full-page screenshots for a human to look at; each page must at least render."""
    stale = db.fetchrow(
        """
        SELECT s.session_id FROM sessions s JOIN work w USING (session_id)
        WHERE s.session_deadline <= now() ORDER BY s.session_deadline LIMIT 1
        """
    )
    assert stale is not None, "the seeded fleet has work held by expired sessions"
    for name, url, heading in [
        ("sessions", "/sessions", "Sessions"),
        ("session-stale", f"/session/{stale['session_id']}", "Session"),
        ("search-empty", "/search", "Search"),
        ("search-nothing", "/search?q=no-such-thing-anywhere", "Search"),
        ("overview", "/overview", None),
        ("schema", "/schema", None),
    ]:
        response = page.goto(url)
        assert response is not None
        assert response.status == (404 if name == "search-nothing" else 200), url
        if heading:
            expect(page.locator("h1")).to_contain_text(heading)
        screenshot(page, name)
    assert page_errors == []
