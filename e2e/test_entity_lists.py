"""/work, /backoffs and the tag tables in a real Chromium: each polls live (a row written
underneath appears without a reload), a new backoff's row is reached with j/k, and the
three pages are screenshot at 1440x900 and 390x844, where nothing scrolls sideways.

Rows these tests write are removed at teardown, so the seeded fleet stays as seeded.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import VIEWPORTS, fits_the_window
from e2e.e2e_db import Db, insert_backoff, insert_session
from e2e.test_machine_pages import LIVE_TIMEOUT_MS, idle_machine, mark_document, still_same_document

SELECTED = re.compile(r"\bkb-selected\b")


def test_a_backoff_written_underneath_appears_live_and_j_k_reach_it(
    page: Page, page_errors: list[str], db: Db
):
    machine = idle_machine(db, 3)
    page.goto("/backoffs?every=2")
    rows = page.locator("#backoff-table tbody tr")
    expect(rows.first).to_be_visible()
    mark_document(page)
    row = page.locator(f"#b-{machine}-ShepherdRecovery")
    expect(row).to_have_count(0)

    insert_backoff(db, machine, "ShepherdRecovery", "e2e: agent unreachable (written underneath)")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text("e2e: agent unreachable")
    expect(row.locator("td").nth(2)).to_contain_text(re.compile(r"ends in \d+m"))
    assert still_same_document(page)

    position = [r.get_attribute("id") for r in rows.all()].index(f"b-{machine}-ShepherdRecovery")
    for _ in range(position + 1):
        page.keyboard.press("j")
    expect(row).to_have_class(SELECTED)
    page.keyboard.press("k")
    if position > 0:
        expect(row).not_to_have_class(SELECTED)
        page.keyboard.press("j")
        expect(row).to_have_class(SELECTED)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/machine/{machine}")
    assert page_errors == []


def test_work_written_underneath_appears_live(page: Page, page_errors: list[str], db: Db):
    machine = idle_machine(db, 4)
    session = insert_session(db, "e2e pid 1", interval_seconds=60, deadline="1 hour")
    page.goto("/work?every=2&sort=-started")
    expect(page.locator("#work-table")).to_be_visible()
    mark_document(page)
    row = page.locator(f"#w-{machine}-ShepherdAccess")
    expect(row).to_have_count(0)
    db.execute("INSERT INTO work VALUES ($1, $2, 'ShepherdAccess')", machine, session)
    db.cleanup("DELETE FROM work WHERE machine_id = $1", machine)
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text("alive")
    expect(row).to_contain_text("e2e-shepherd")
    assert still_same_document(page)
    assert page_errors == []


def test_a_tag_row_written_underneath_appears_live(page: Page, page_errors: list[str], db: Db):
    machine = db.fetchval(
        "SELECT m.machine_id FROM machines m WHERE NOT EXISTS (SELECT 1 FROM"
        " machine_agent_heartbeat h WHERE h.machine_id = m.machine_id)"
        " ORDER BY m.machine_id LIMIT 1"
    )
    page.goto("/tags/AgentHeartbeat?every=2&sort=-agent_heartbeat_at")
    expect(page.locator("#tag-table")).to_be_visible()
    mark_document(page)
    row = page.locator(f"#t-{machine}")
    expect(row).to_have_count(0)
    db.execute("INSERT INTO machine_agent_heartbeat VALUES ($1, now())", machine)
    db.cleanup("DELETE FROM machine_agent_heartbeat WHERE machine_id = $1", machine)
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#tag-table tbody tr").first).to_have_id(f"t-{machine}")  # newest first
    assert still_same_document(page)
    assert page_errors == []


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("work", "/work"),
        ("backoffs", "/backoffs?state=all"),
        ("tags", "/tags"),
        ("tag-provided", "/tags/Provided"),
        ("tag-hardware-report", "/tags/HardwareReport"),
    ],
)
def test_the_pages_fit_the_window_and_are_screenshot(
    page: Page, page_errors: list[str], name: str, path: str, viewport: str
):
    # Nothing scrolls sideways: the lists stack their cells on narrow screens.
    fits_the_window(page, path, name, viewport)
    assert page_errors == []
