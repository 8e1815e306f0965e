"""The machine list as an operator reads it in an incident, in a real Chromium: one line per
machine (how many fit at 1440x900), the countdown of a backoff in the rows of
`sort=backoff`, flashes only for what means something, the stuck list without unmanaged
machines, and the list, the sessions and the failures at 390 px wide.

The machines these tests write get IDs that sort first (00000000-...), so they are on
the first page in ID order; they and their rows are removed at teardown.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import SCREENSHOTS, VIEWPORTS, fits_the_window
from e2e.e2e_db import Db, insert_backoff, insert_session
from e2e.test_machine_pages import LIVE_TIMEOUT_MS, mark_document, still_same_document

MIN_ROWS_AT_1440x900 = 28
CHANGED = re.compile(r"\bchanged\b")
SELECTED = re.compile(r"\bkb-selected\b")
UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$")


def first_id(n: int) -> uuid.UUID:
    """A machine ID before every seeded one (they are random)."""
    return uuid.UUID(f"00000000-0000-4000-8000-0000000e2e{n:02x}")


def machine(db: Db, n: int, *, provided: bool = True, heartbeat: str | None = None) -> uuid.UUID:
    """A test machine, provided (Equinix, fr5, Running) unless not, with a heartbeat this
    long ago when given."""
    machine_id = first_id(n)
    db.execute("INSERT INTO machines VALUES ($1, now())", machine_id)
    db.cleanup("DELETE FROM machines WHERE machine_id = $1", machine_id)
    for table in ("work_backoff", "machine_agent_heartbeat", "machine_provided"):
        db.cleanup(f"DELETE FROM {table} WHERE machine_id = $1", machine_id)
    if provided:
        db.execute(
            "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_location,"
            " provider_status) VALUES ($1, 'Equinix', $2, 'fr5', 'Running')",
            machine_id,
            f"e2e-{machine_id}",
        )
    if heartbeat is not None:
        db.execute(
            "INSERT INTO machine_agent_heartbeat VALUES ($1, now() - $2::text::interval)",
            machine_id,
            heartbeat,
        )
    return machine_id


def stale_work(db: Db, machine_id: uuid.UUID) -> None:
    """ShepherdAccess work held by a session that expired 10 minutes ago."""
    session = insert_session(
        db, "e2e: crashed", created="-1 hour", interval_seconds=60, deadline="-10 minutes"
    )
    db.execute("INSERT INTO work VALUES ($1, $2, 'ShepherdAccess')", machine_id, session)


def fully_visible_rows(page: Page) -> int:
    return page.evaluate(
        """() => [...document.querySelectorAll('#machine-table tbody tr')].filter((r) => {
             const b = r.getBoundingClientRect();
             return b.top >= 0 && b.bottom <= window.innerHeight;
           }).length"""
    )


def record_flashes(page: Page) -> None:
    """From now on, every element that flashes (gets class `changed`) is recorded in
    window.__flashes as "<row id> <cell class>"."""
    page.evaluate(
        """() => {
          window.__flashes = [];
          new MutationObserver((records) => records.forEach((r) => {
            const el = r.target;
            if (el.classList && el.classList.contains('changed')) {
              window.__flashes.push((el.closest('tr')?.id || '') + ' ' + el.className);
            }
          })).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['class']});
        }"""
    )


def flashes(page: Page, row_id: str) -> list[str]:
    return [f for f in page.evaluate("window.__flashes") if f.startswith(row_id + " ")]


def test_at_least_28_machines_fit_one_screen_one_line_each(page: Page, page_errors: list[str]):
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto("/")
    rows = page.locator("#machine-table tbody tr")
    expect(rows.first).to_be_visible()
    visible = fully_visible_rows(page)
    print(f"\nrows fully visible at 1440x900: {visible}")
    assert visible >= MIN_ROWS_AT_1440x900
    heights = page.evaluate(
        "[...document.querySelectorAll('#machine-table tbody tr')].map((r) => r.offsetHeight)"
    )
    assert max(heights) <= 24, "every row is one line"
    # The state tabs and the facets are there, above and beside the rows.
    expect(page.locator("#state-tabs [data-tab='all']")).to_contain_text("all")
    expect(page.locator(".facets").get_by_role("link", name="Equinix", exact=True)).to_be_visible()
    assert page_errors == []


def test_sort_by_backoff_shows_each_rows_countdown_and_its_whole_cause_on_focus(
    page: Page, page_errors: list[str], db: Db
):
    m = machine(db, 1)
    cause = "e2e: BMC did not answer " + "while powering on the machine " * 6 + "(end)"
    insert_backoff(db, m, "UnitTest1", cause)  # ends in 10 minutes
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto("/?sort=backoff")
    expect(page.locator("#machine-table th[aria-sort='ascending']")).to_contain_text("Backoff ▲")
    row = page.locator(f"#m-{m}")
    countdown = row.locator("td.backoff .countdown time[data-relative]")
    expect(countdown).to_have_text(re.compile(r"^in (9m \d+s|10m)$"))
    assert UTC_TEXT.match(countdown.get_attribute("title") or "")  # the end, on hover
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=3_000)  # it ticks
    # Every row of this order shows its own countdown: the column sorted by is visible.
    shown = page.locator("#machine-table tbody tr td.backoff .countdown")
    keyed = page.evaluate(
        "[...document.querySelectorAll('#machine-table tbody tr')]"
        ".filter((r) => r.querySelector('td.backoff .badge')).length"
    )
    assert shown.count() >= keyed >= 1

    cut = row.locator("td.backoff .cut")
    assert cut.evaluate("(el) => el.scrollWidth > el.clientWidth"), "the cause is cut"
    assert cause in (cut.get_attribute("title") or "")  # whole, on hover
    cut.focus()  # and on keyboard focus, laid over its neighbours
    expect(cut).to_contain_text("(end)")
    assert cut.evaluate("(el) => el.scrollWidth <= el.clientWidth + 1")
    assert cut.evaluate("(el) => getComputedStyle(el).position") == "absolute"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "machines-cause-on-focus-1440x900.png")
    assert page_errors == []


def test_a_heartbeat_does_not_flash_a_new_backoff_does_and_the_row_keeps_its_place(
    page: Page, page_errors: list[str], db: Db
):
    m = machine(db, 2, heartbeat="1 minute")
    page.goto("/?every=2")
    rows = page.locator("#machine-table tbody tr")
    expect(rows.first).to_have_id(f"m-{m}")
    page.keyboard.press("j")
    row = page.locator(f"#m-{m}")
    expect(row).to_have_class(SELECTED)
    mark_document(page)
    record_flashes(page)

    beat = row.locator("td.heartbeat time")
    before = beat.get_attribute("datetime")
    db.execute(
        "UPDATE machine_agent_heartbeat SET agent_heartbeat_at = now() WHERE machine_id = $1", m
    )
    expect(beat).not_to_have_attribute("datetime", before or "", timeout=LIVE_TIMEOUT_MS)
    page.wait_for_timeout(500)
    assert flashes(page, f"m-{m}") == [], "a heartbeat only moves forward: nothing flashes"

    insert_backoff(db, m, "UnitTest2", "e2e: a new backoff")
    cell = row.locator("td.backoff")
    expect(cell).to_contain_text("UnitTest2", timeout=LIVE_TIMEOUT_MS)
    expect(cell).to_have_class(CHANGED, timeout=1_500)
    assert all(" backoff" in f for f in flashes(page, f"m-{m}")), flashes(page, f"m-{m}")
    # The changed row kept its place and the keyboard's selection, in the same document.
    expect(rows.first).to_have_id(f"m-{m}")
    expect(row).to_have_class(SELECTED)
    assert still_same_document(page)
    assert page_errors == []


def test_stuck_lists_stale_work_not_unmanaged_grouped_by_blocker(
    page: Page, page_errors: list[str], db: Db
):
    blocked = machine(db, 3)  # provided, no agent: AgentStart's, but stale work blocks it
    stale_work(db, blocked)
    unmanaged = machine(db, 4, provided=False)  # no tag at all: no workflow applies
    page.goto("/?stuck=1")
    expect(page.locator("#state-tabs [data-tab='stuck']")).to_have_attribute("aria-current", "page")
    row = page.locator(f"#m-{blocked}")
    expect(row).to_be_visible()
    expect(row.locator("td.wf-summary .badge.stuck")).to_have_text(
        "stuck: work held by an expired session"
    )
    expect(page.locator(f"#m-{unmanaged}")).to_have_count(0)
    stuck = int(page.locator("#state-tabs [data-tab='stuck'] .n").inner_text())
    expect(page.locator("h1 .count")).to_have_text(f"{stuck} matching")

    group = page.locator("#stuck-groups a[data-blocker='stale_work']")
    expect(group).to_contain_text("work held by an expired session")
    group.click()
    page.wait_for_url(re.compile(r"blocker=stale_work"))
    expect(page.locator(f"#m-{blocked}")).to_be_visible()

    page.locator("#state-tabs a[data-tab='unmanaged']").click()
    page.wait_for_url(re.compile(r"unmanaged=1"))
    expect(page.locator(f"#m-{unmanaged}")).to_be_visible()
    expect(page.locator(f"#m-{blocked}")).to_have_count(0)
    assert page_errors == []


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("machines", "/"),
        ("machines-sort-backoff", "/?sort=backoff"),
        ("machines-stuck", "/?stuck=1"),
        ("sessions", "/sessions"),
        ("failures", "/failures"),
    ],
)
def test_the_list_sessions_and_failures_fit_the_window_and_are_screenshot(
    page: Page, page_errors: list[str], db: Db, name: str, path: str, viewport: str
):
    blocked = machine(db, 5)
    stale_work(db, blocked)
    insert_backoff(db, blocked, "UnitTest1", "e2e: IPMI timeout talking to 10.0.0.7")
    fits_the_window(page, path, name, viewport)
    width = VIEWPORTS[viewport][0]
    fold = page.locator("details.facets-fold > summary")
    if viewport == "narrow" and fold.count():
        # The facets fold behind a button; open, they fit too.
        expect(page.locator(".facets h4").first).to_be_hidden()
        fold.click()
        expect(page.locator(".facets h4").first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page_errors == []
