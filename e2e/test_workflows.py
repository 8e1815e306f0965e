"""Workflow eligibility in a real Chromium: a watched machine's diagnosis changes in
place when its backoff ends, and the fleet's numbers lead to the machines they count.

The machine is the test's own (inserted with asyncpg, as a BMDB component would, and
removed again), so the seeded fleet stays as seeded.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from playwright.sync_api import Page, expect

from e2e.e2e_db import Db, insert_session
from e2e.test_machine_pages import mark_document, still_same_document

BACKOFF_S = 6  # long enough to see it waiting, short enough to watch it end
FLIP_TIMEOUT_MS = (BACKOFF_S + 6) * 1000  # its end, then a poll or two (every 2 s)


def provided_machine(db: Db) -> uuid.UUID:
    """A provided machine without an agent: AgentStart's to take, once nothing blocks it."""
    machine_id = uuid.uuid4()
    db.execute("INSERT INTO machines VALUES ($1, now())", machine_id)
    db.cleanup("DELETE FROM machines WHERE machine_id = $1", machine_id)
    db.execute(
        "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_location,"
        " provider_status) VALUES ($1, 'Equinix', $2, 'fr5', 'Running')",
        machine_id,
        f"e2e-{machine_id}",
    )
    db.cleanup("DELETE FROM machine_provided WHERE machine_id = $1", machine_id)
    return machine_id


def test_a_waiting_machine_turns_eligible_without_a_reload_when_its_backoff_ends(
    page: Page, page_errors: list[str], db: Db, screenshot: Callable
) -> None:
    machine_id = provided_machine(db)
    db.execute(
        "INSERT INTO work_backoff (machine_id, process, until, cause, last_interval_seconds)"
        " VALUES ($1, 'ShepherdAgentStart', now() + make_interval(secs => $2),"
        " 'e2e: IPMI timeout talking to 10.0.0.7', 120)",
        machine_id,
        BACKOFF_S,
    )
    db.cleanup("DELETE FROM work_backoff WHERE machine_id = $1", machine_id)

    page.goto(f"/machine/{machine_id}")
    row = page.locator("#workflows #wf-AgentStart")
    state = row.locator(".wf-state")
    expect(state).to_have_attribute("data-state", "waiting")
    expect(row).to_contain_text("when the ShepherdAgentStart backoff ends")
    blocker = row.locator("li[data-kind='backoff']")
    expect(blocker).to_contain_text("IPMI timeout talking to 10.0.0.7")
    expect(blocker.locator("a")).to_have_attribute(
        "href", f"/machine/{machine_id}/history?process=ShepherdAgentStart"
    )
    # The countdown ticks in the browser between polls.
    countdown = row.locator(".why time[data-relative]")
    expect(countdown).to_have_text(re.compile(r"^in \d+s$"))
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=3_000)
    screenshot(page, "waiting")
    mark_document(page)

    expect(state).to_have_attribute("data-state", "eligible", timeout=FLIP_TIMEOUT_MS)
    expect(row).to_contain_text("the shepherd initializer takes it on its next pass")
    expect(row.locator("li[data-kind='backoff']")).to_have_count(0)
    assert still_same_document(page), "the page was reloaded instead of updated in place"
    # The expired backoff stays visible below, as the BMDB keeps it.
    expect(page.locator("#backoffs tbody tr", has_text="ShepherdAgentStart")).to_contain_text(
        "expired"
    )
    screenshot(page, "eligible")
    assert page_errors == []


def test_stale_work_blocks_until_collected_and_the_numbers_link_to_their_lists(
    page: Page, page_errors: list[str], db: Db, screenshot: Callable
) -> None:
    machine_id = provided_machine(db)
    session_id = insert_session(
        db, "e2e: crashed", created="-1 hour", interval_seconds=60, deadline="-10 minutes"
    )
    db.execute(
        "INSERT INTO work VALUES ($1, $2, 'ShepherdAccess')", machine_id, session_id
    )  # removed with its session (ON DELETE CASCADE)

    page.goto(f"/machine/{machine_id}")
    row = page.locator("#workflows #wf-AgentStart")
    expect(row.locator(".wf-state")).to_have_attribute("data-state", "blocked")
    expect(row).to_contain_text("blocked until the expired session's work is garbage-collected")
    expect(row.locator("li[data-kind='stale_work'] a")).to_have_attribute(
        "href", f"/session/{session_id}"
    )
    screenshot(page, "blocked")

    page.goto("/overview")
    card = page.locator("#workflows-card")
    expect(card.locator("#wf-AgentRecovery")).to_be_visible()
    screenshot(page, "overview")
    blocked = card.locator("#wf-AgentStart a[data-state='blocked']")
    count = int(re.sub(r"\D", "", blocked.inner_text()))
    assert count >= 1
    blocked.click()
    expect(page).to_have_url(re.compile(r"workflow=AgentStart&workflow_state=blocked"))
    expect(page.locator("h1 .count")).to_have_text(f"{count} matching")
    listed = page.locator(f"#m-{machine_id}")
    expect(listed).to_be_visible()
    expect(listed.locator("td.wf-summary")).to_contain_text("stale ShepherdAccess work")
    screenshot(page, "blocked-list")
    assert page_errors == []
