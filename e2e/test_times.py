"""Times in the browser (app/static/times.js), in a Chromium set to New York time.

The server writes every time as a <time datetime> whose text is its UTC time, and never
a relative one. The browser writes relative times ("3m ago", "in 9m 58s") and keeps them
current every second, with no request, in what live polls bring in too; without
JavaScript the UTC text stays. The header's UTC/local switch shows absolute times in the
browser's zone (EST/EDT here, so the two differ), on every page, after a reload
(localStorage), and in what live polls bring in later.

The backoff a test writes is removed again at teardown, so the seeded fleet stays as seeded.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from e2e.e2e_db import Db, insert_backoff
from e2e.test_machine_pages import LIVE_TIMEOUT_MS

ZONE = "America/New_York"


@pytest.fixture
def context_options() -> dict[str, str]:
    return {"timezone_id": ZONE}


def in_utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def in_new_york(ts: datetime) -> str:
    return ts.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S %Z")  # ... EST / EDT


def machine_with_history(db: Db) -> tuple[uuid.UUID, datetime, datetime]:
    """A machine, its creation time and the time of its newest history event."""
    row = db.fetchrow(
        """
        SELECT m.machine_id, m.machine_created_at AS created, h.newest
        FROM machines m
        JOIN (SELECT machine_id, max(timestamp) AS newest FROM work_history GROUP BY 1) h
          USING (machine_id)
        ORDER BY m.machine_id LIMIT 1
        """
    )
    assert row is not None, "the seeded fleet has machines with a work history"
    return row["machine_id"], row["created"], row["newest"]


def switch_to(page: Page, zone: str) -> None:
    button = page.locator(f'.tz-switch [data-tz="{zone}"]')
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")


def test_the_switch_shows_local_times_and_survives_a_reload(
    page: Page, page_errors: list[str], db: Db, screenshot
) -> None:
    machine_id, created, newest = machine_with_history(db)
    assert in_utc(created)[:-1] != in_new_york(created)[:-4], "New York is not UTC"
    page.goto(f"/machine/{machine_id}")
    shown = page.locator(".machine-head .facts time[data-absolute]")
    relative = page.locator(".machine-head .facts time[data-relative]")
    expect(shown).to_have_text(in_utc(created))  # UTC unless asked: as without JavaScript
    expect(page.locator('.tz-switch [data-tz="utc"]')).to_have_attribute("aria-pressed", "true")
    expect(relative).to_have_attribute("title", in_utc(created))

    switch_to(page, "local")
    expect(shown).to_have_text(in_new_york(created))
    expect(relative).to_have_attribute("title", in_new_york(created))  # the hover, too
    expect(relative).to_have_text(re.compile(r" ago$"))  # relative times stay relative
    screenshot(page, "local")

    page.reload()
    expect(shown).to_have_text(in_new_york(created))
    expect(page.locator('.tz-switch [data-tz="local"]')).to_have_attribute("aria-pressed", "true")

    # Every page: the history's newest row, its column head and the timeline's axis.
    page.goto(f"/machine/{machine_id}/history")
    history = page.locator("#history table.history")
    expect(history.locator("tbody tr").first.locator("td").first).to_have_text(
        in_new_york(newest)
    )
    expect(history.locator("th").first).to_have_text("Time (local)")
    last_tick = page.locator("#history svg text.axis [data-absolute]").last
    tick = datetime.fromisoformat(last_tick.get_attribute("data-datetime"))
    expect(last_tick).to_have_text(tick.astimezone(ZoneInfo(ZONE)).strftime("%m-%d %H:%M"))

    switch_to(page, "utc")
    expect(history.locator("tbody tr").first.locator("td").first).to_have_text(in_utc(newest))
    expect(history.locator("th").first).to_have_text("Time (UTC)")
    page.reload()
    expect(history.locator("tbody tr").first.locator("td").first).to_have_text(in_utc(newest))
    assert page_errors == []


def test_times_a_live_poll_brings_are_local_too(
    page: Page, page_errors: list[str], db: Db
) -> None:
    machine_id, _, _ = machine_with_history(db)
    page.goto(f"/machine/{machine_id}")
    switch_to(page, "local")

    insert_backoff(db, machine_id, "UnitTest1", "e2e: times")
    until = db.fetchval(
        "SELECT until FROM work_backoff WHERE machine_id = $1 AND process = 'UnitTest1'",
        machine_id,
    )
    row = page.locator("#backoffs tbody tr", has_text="UnitTest1")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(row.locator("time[data-absolute]")).to_have_text(in_new_york(until))

    # The list's "updated" clock, which webug.js moves on with every poll (304s included).
    page.goto("/?every=2")
    updated = page.locator("#machine-table [data-updated] time")
    expect(updated).to_have_text(re.compile(r"^\d\d:\d\d:\d\d E[SD]T$"))
    # What it shows through a few polls, sampled between the page's tasks.
    shown = page.evaluate(
        """() => new Promise((resolve) => {
            const seen = [];
            const sample = () => seen.push(
                document.querySelector("#machine-table [data-updated] time").textContent);
            const timer = setInterval(sample, 50);
            setTimeout(() => { clearInterval(timer); resolve(seen); }, 5000);
        })"""
    )
    assert len(set(shown)) >= 2, "no poll came back"
    assert {t for t in shown if not re.fullmatch(r"\d\d:\d\d:\d\d E[SD]T", t)} == set()
    assert page_errors == []


def relative_text(page: Page, selector: str) -> str:
    return page.locator(selector).first.text_content() or ""


def test_relative_times_tick_without_a_request_and_after_a_swap(
    page: Page, page_errors: list[str], db: Db
) -> None:
    machine_id, _, _ = machine_with_history(db)
    # A countdown that moves every second: a backoff ending in 10 minutes.
    insert_backoff(db, machine_id, "UnitTest2", "e2e: ticking")
    page.goto(f"/machine/{machine_id}?live=0")  # paused: nothing polls
    countdown = page.locator("#backoffs tr", has_text="UnitTest2").locator("time[data-relative]")
    expect(countdown).to_have_text(re.compile(r"^in \d+m \d+s$"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    before = countdown.text_content() or ""
    expect(countdown).not_to_have_text(before, timeout=3000)  # it counts down...
    assert requests == [], "a paused page sent requests"  # ...in the browser alone

    page.goto(f"/machine/{machine_id}?every=1")
    # A poll swaps new content in (another backoff): its times are relative at once.
    insert_backoff(db, machine_id, "UnitTest1", "e2e: swapped in")
    swapped = page.locator("#backoffs tr", has_text="UnitTest1").locator("time[data-relative]")
    expect(swapped).to_have_text(re.compile(r"^in \d+m \d+s$"), timeout=LIVE_TIMEOUT_MS)
    expect(swapped).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$"))
    assert page_errors == []


@pytest.mark.parametrize("context_options", [{"java_script_enabled": False}])
def test_without_javascript_every_time_is_its_utc_text(page: Page, db: Db) -> None:
    machine_id, created, _ = machine_with_history(db)
    page.goto(f"/machine/{machine_id}")
    expect(page.locator(".machine-head .facts time[data-relative]")).to_have_text(in_utc(created))
    expect(page.locator(".machine-head .facts time[data-absolute]")).to_have_text(in_utc(created))
    # The ".rel" notes, "(3m ago)" beside an absolute time, would say it twice: hidden.
    for note in page.locator(".rel").all():
        expect(note).to_be_hidden()
