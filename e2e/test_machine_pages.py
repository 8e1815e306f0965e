"""Machine list and machine detail as live hypermedia, driven in a real Chromium.

The e2e server reads `e2e_db_dsn` with no fleet simulator, so the only changes are the
rows these tests write (with asyncpg, as a BMDB component would). Each test removes its
rows again (`db.cleanup`), even when it fails, so the seeded fleet stays as seeded.
Test-made backoffs use the UnitTest processes, which the seeded fleet never uses.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect

from e2e.e2e_db import Db, insert_backoff, insert_session

LIVE_TIMEOUT_MS = 6_000  # pages poll every 2 s; a change shows within a poll or two
QUIET_S = 5.0  # how long "nothing happens" is watched for: two and a half poll periods


def idle_machine(db: Db, nth: int = 0) -> uuid.UUID:
    """A provided machine with no work and no backoffs at all (so nothing else can change)."""
    machine_id = db.fetchval(
        """
        SELECT m.machine_id FROM machines m JOIN machine_provided USING (machine_id)
        WHERE NOT EXISTS (SELECT 1 FROM work w WHERE w.machine_id = m.machine_id)
          AND NOT EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = m.machine_id)
        ORDER BY m.machine_id OFFSET $1 LIMIT 1
        """,
        nth,
    )
    assert machine_id is not None, "the seeded fleet has idle provided machines"
    return machine_id


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def mark_document(page: Page) -> None:
    """Tag the loaded document: `still_same_document` is False after any full reload."""
    page.evaluate("window.__e2eMark = true")


def still_same_document(page: Page) -> bool:
    return page.evaluate("window.__e2eMark === true")


def count_requests(page: Page, path_part: str) -> Callable[[], int]:
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url) if path_part in req.url else None)
    return lambda: len(seen)


# ----------------------------------------------------------------- machine detail


def test_new_work_appears_live_and_flashes(page: Page, page_errors: list[str], db: Db) -> None:
    machine_id = idle_machine(db, 0)
    page.goto(f"/machine/{machine_id}")
    live = page.locator("#machine-live")
    expect(live.locator(".live-dot")).to_be_visible()
    expect(page.locator("#work-count")).to_have_text("0 active work")
    expect(live).to_contain_text("No work on this machine.")
    mark_document(page)

    session_id = insert_session(db, "e2e test session", interval_seconds=60, deadline="1 minute")
    db.execute(
        "INSERT INTO work (machine_id, session_id, process) VALUES ($1, $2, 'ShepherdRecovery')",
        machine_id,
        session_id,
    )
    db.cleanup("DELETE FROM work WHERE machine_id = $1 AND session_id = $2", machine_id, session_id)

    row = page.locator("#work tbody tr", has_text=str(session_id))
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    # The flash lasts 2 s from the swap: check it at once.
    expect(row).to_have_class(re.compile(r"\bchanged\b"), timeout=1_500)
    expect(row).to_contain_text("ShepherdRecovery")
    expect(row).to_contain_text("e2e-shepherd")
    expect(row.locator(".badge.ok")).to_have_text("alive")
    expect(row.locator(f'a[href="/session/{session_id}"]')).to_be_visible()
    expect(page.locator("#work-count")).to_have_text("1 active work")
    expect(live).not_to_contain_text("No work on this machine.")
    assert still_same_document(page), "the page was reloaded instead of updated in place"
    # The flash fades: it is a highlight, not a state.
    expect(row).not_to_have_class(re.compile(r"\bchanged\b"), timeout=4_000)
    assert page_errors == []


def test_pause_stops_updates_and_resume_shows_them(
    page: Page, page_errors: list[str], db: Db
) -> None:
    machine_id = idle_machine(db, 1)
    page.goto(f"/machine/{machine_id}")
    bar = page.locator("#machine-live .live-bar")
    expect(page.locator("#backoff-count")).to_have_text("0 active backoffs")
    mark_document(page)

    bar.get_by_role("link", name="pause", exact=True).click()
    page.wait_for_url(lambda url: query_of(url).get("live") == ["0"])
    assert urlsplit(page.url).path == f"/machine/{machine_id}"
    expect(bar.locator(".paused")).to_have_text("paused")
    expect(bar.locator(".live-dot")).to_have_count(0)
    resume = bar.get_by_role("link", name="resume live updates")
    expect(resume).to_be_visible()

    live_polls = count_requests(page, f"/machine/{machine_id}/live")
    insert_backoff(db, machine_id, "UnitTest1", "e2e: must stay hidden while paused")
    page.wait_for_timeout(QUIET_S * 1000)  # proving that nothing happens takes waiting
    expect(page.locator("#backoff-count")).to_have_text("0 active backoffs")
    expect(page.locator("#machine-live")).to_contain_text("No backoffs on this machine.")
    assert live_polls() == 0, "a paused page still polls"

    resume.click()
    page.wait_for_url(lambda url: "live" not in query_of(url))
    assert query_of(page.url) == {"every": ["2"]}
    expect(page.locator("#backoff-count")).to_have_text(re.compile(r"^1 active backoffs?$"))
    row = page.locator("#backoffs tbody tr", has_text="UnitTest1")
    expect(row).to_contain_text("e2e: must stay hidden while paused")
    expect(row.locator(".badge.warn")).to_have_text("active")
    expect(bar.locator(".live-dot")).to_be_visible()
    assert still_same_document(page)
    assert page_errors == []


def test_history_loads_when_revealed_and_filters_in_place(
    page: Page, page_errors: list[str], db: Db
) -> None:
    rows = db.fetch(
        """
        SELECT h.machine_id, h.process::text AS process, count(*) AS n
        FROM work_history h
        WHERE h.machine_id = (
            SELECT h2.machine_id FROM work_history h2 JOIN machines USING (machine_id)
            GROUP BY h2.machine_id HAVING count(DISTINCT h2.process) >= 2
            ORDER BY count(*) DESC, h2.machine_id LIMIT 1)
        GROUP BY h.machine_id, h.process ORDER BY n, process
        """
    )
    assert rows, "the seeded fleet has machines with history of several processes"
    machine_id, process, n = rows[0]["machine_id"], rows[0]["process"], rows[0]["n"]
    total = sum(r["n"] for r in rows)

    # A short window keeps #history below the fold: it must not load until revealed.
    page.set_viewport_size({"width": 1280, "height": 300})
    history_requests = count_requests(page, f"/machine/{machine_id}/history")
    page.goto(f"/machine/{machine_id}")
    history = page.locator("#history")
    expect(page.locator("#machine-live .live-dot")).to_be_visible()
    page.wait_for_load_state("networkidle")
    expect(history).to_contain_text("Loading…")
    assert history_requests() == 0, "#history loaded before it was scrolled into view"
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    expect(history.locator("h2 .count")).to_have_text(f"{total} events")
    assert history_requests() == 1
    expect(history.locator("svg[aria-label='work timeline']")).to_be_visible()
    expect(history.locator("svg rect.bar").first).to_be_attached()
    expect(history.locator("table.history tbody tr").first).to_be_visible()
    expect(history.locator(".history-filter b")).to_have_text("all")
    mark_document(page)

    history.locator(".history-filter").get_by_role("link", name=process, exact=True).click()
    expect(history.locator(".history-filter b")).to_have_text(process)
    process_cells = history.locator("table.history tbody tr td:nth-child(3)")
    expect(process_cells).to_have_count(min(n, 50))
    assert set(process_cells.all_inner_texts()) == {process}
    # Back to all processes, still in place.
    history.locator(".history-filter").get_by_role("link", name="all", exact=True).click()
    expect(history.locator(".history-filter b")).to_have_text("all")
    assert still_same_document(page)
    assert page.url.endswith(f"/machine/{machine_id}")
    assert page_errors == []


def test_deleted_machine_says_so_and_polling_stops(
    page: Page, page_errors: list[str], db: Db
) -> None:
    machine_id = db.fetchval(
        "INSERT INTO machines (machine_created_at) VALUES (now()) RETURNING machine_id"
    )
    db.cleanup("DELETE FROM machines WHERE machine_id = $1", machine_id)
    polls = count_requests(page, f"/machine/{machine_id}/live")
    page.goto(f"/machine/{machine_id}")
    expect(page.locator("#machine-live .live-dot")).to_be_visible()
    mark_document(page)

    db.execute("DELETE FROM machines WHERE machine_id = $1", machine_id)
    gone = page.locator("#machine-live .gone")
    expect(gone).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(gone).to_contain_text("This machine was deleted")
    expect(gone.get_by_role("link", name="work history")).to_have_attribute(
        "href", f"/machine/{machine_id}/history"
    )
    expect(page.locator("#machine-live .live-bar")).to_have_count(0)
    assert still_same_document(page)

    seen = polls()
    assert seen >= 1
    page.wait_for_timeout(QUIET_S * 1000)  # proving that nothing happens takes waiting
    assert polls() == seen, "the page keeps polling a machine that is gone"
    expect(gone).to_be_visible()
    assert page_errors == []


# ------------------------------------------------------------------- machine list


def test_facet_click_filters_and_chip_removes_filter(page: Page, page_errors: list[str]) -> None:
    page.goto("/")
    total = page.locator("h1 .count").inner_text()
    expect(page.locator(".chips")).to_have_count(0)

    page.locator(".facets").get_by_role("link", name="Lumen", exact=True).click()
    page.wait_for_url(lambda url: query_of(url).get("provider") == ["Lumen"])
    chip = page.locator(".chips a.chip", has_text="provider: Lumen")
    expect(chip).to_be_visible()
    expect(page.locator("h1 .count")).to_contain_text("matching")
    rows = page.locator("#machine-table tbody tr")
    expect(rows.first).to_be_visible()
    provided = page.locator("#machine-table tbody tr .pchip")
    expect(provided).to_have_count(rows.count())
    texts = provided.all_inner_texts()
    assert texts and all(t.split()[0] == "Lumen" for t in texts), texts

    chip.click()
    page.wait_for_url(lambda url: "provider" not in query_of(url))
    expect(page.locator(".chips")).to_have_count(0)
    expect(page.locator("h1 .count")).to_have_text(total)
    assert page_errors == []


def test_list_refreshes_in_place_keeping_scroll(page: Page, page_errors: list[str], db: Db) -> None:
    page.goto("/?every=2")
    expect(page.locator("#machine-table .live-bar b")).to_have_text("2s")
    first = page.locator("#machine-table tbody tr").first
    row_id = first.get_attribute("id")
    assert row_id and row_id.startswith("m-"), row_id
    machine_id = uuid.UUID(row_id.removeprefix("m-"))
    row = page.locator(f"#{row_id}")
    mark_document(page)
    page.mouse.wheel(0, 600)
    page.wait_for_function("window.scrollY > 0")
    scrolled = page.evaluate("window.scrollY")

    insert_backoff(db, machine_id, "UnitTest2", "e2e: list refresh")
    badge = row.locator(".badge.warn", has_text="UnitTest2")
    expect(badge).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    cell = row.locator("td.backoff")
    expect(cell).to_contain_text("e2e: list refresh")
    expect(cell).to_have_class(re.compile(r"\bchanged\b"), timeout=1_500)
    assert page.evaluate("window.scrollY") == scrolled, "the refresh moved the page"
    assert still_same_document(page)
    assert page_errors == []


# -------------------------------------------------------------------- screenshots


def rich_machine(db: Db) -> uuid.UUID:
    """A machine showing much at once: work, tags with protobuf, a long history.

    The seeded fleet never has work and a backoff on one machine (a shepherd runs one
    process at a time); the screenshot test adds backoffs itself.
    """
    machine_id = db.fetchval(
        """
        SELECT m.machine_id FROM machines m
        JOIN work w USING (machine_id)
        JOIN machine_hardware_report USING (machine_id)
        ORDER BY (SELECT count(*) FROM work_history h WHERE h.machine_id = m.machine_id) DESC,
            m.machine_id
        LIMIT 1
        """
    )
    assert machine_id is not None, "the seeded fleet has working machines with hardware reports"
    return machine_id


def test_screenshots_of_each_page(page: Page, page_errors: list[str], db: Db, screenshot) -> None:
    page.goto("/")
    expect(page.locator("#machine-table tbody tr").first).to_be_visible()
    screenshot(page, "list")

    page.goto("/?provider=Lumen")
    expect(page.locator(".chips a.chip").first).to_be_visible()
    screenshot(page, "filtered-list")

    machine_id = rich_machine(db)
    insert_backoff(db, machine_id, "UnitTest1", "e2e: provider API: 503 Service Unavailable")
    insert_backoff(db, machine_id, "UnitTest2", "e2e: an expired backoff", expired=True)
    page.goto(f"/machine/{machine_id}")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # reveal #history
    expect(page.locator("#history table.history")).to_be_visible()
    expect(page.locator("#work tbody tr").first).to_be_visible()
    expect(page.locator("#backoffs tbody tr").first).to_be_visible()
    expect(page.locator(".tag-block").first).to_be_visible()
    # Back to the top: scrolled, the sticky table headers would be drawn over rows.
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "machine")

    page.goto(f"/machine/{machine_id}/history")
    expect(page.locator("table.history")).to_be_visible()
    screenshot(page, "history")

    response = page.goto(f"/machine/{uuid.UUID(int=0x0BAD_F00D)}")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_contain_text("404")
    screenshot(page, "404")
    assert page_errors == []
