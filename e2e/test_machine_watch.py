"""The machine page and watching, driven in a real Chromium (issue 21): a history event
written while the page is open appears on it; a watch starts from the machine page, from
picked list rows and from search with several prefixes; the watch log says what changed
(work started, work ended with its result, workflow states); both pages fit 390 px.

Rows these tests write are removed at teardown; the seeded fleet stays as seeded.
"""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Page, expect

from e2e.conftest import SCREENSHOTS
from e2e.e2e_db import Db, insert_backoff, insert_session
from e2e.test_machine_pages import LIVE_TIMEOUT_MS, idle_machine, rich_machine

WIDE, NARROW = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


def own_machine(db: Db, *, provided: bool = True) -> uuid.UUID:
    """A machine of the test's own (provided, nothing else: AgentStart may take it),
    removed at teardown with its tags, work, backoffs and history."""
    machine_id = uuid.uuid4()
    db.execute("INSERT INTO machines VALUES ($1, now() - interval '1 hour')", machine_id)
    db.cleanup("DELETE FROM machines WHERE machine_id = $1", machine_id)
    for table in ("machine_provided", "work_backoff", "work", "work_history"):
        db.cleanup(f"DELETE FROM {table} WHERE machine_id = $1", machine_id)
    if provided:
        db.execute(
            "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_status)"
            " VALUES ($1, 'Equinix', $2, 'Running')",
            machine_id,
            f"e2e-{machine_id}",
        )
    return machine_id


def history_event(db: Db, machine_id: uuid.UUID, process: str, event: str, cause=None) -> None:
    db.execute(
        "INSERT INTO work_history VALUES ($1, $2, $3, now(), $4)", machine_id, process, event, cause
    )
    db.cleanup("DELETE FROM work_history WHERE machine_id = $1", machine_id)


def page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


# ------------------------------------------------------------------------ the live history


def test_a_history_event_written_while_the_page_is_open_appears_on_it(
    page: Page, page_errors: list[str], db: Db
) -> None:
    machine_id = idle_machine(db, 2)
    page.goto(f"/machine/{machine_id}")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # reveal #history
    history = page.locator("#history")
    count = history.locator("h2 .count")
    expect(count).to_contain_text("events")
    before = int(count.inner_text().split()[0])
    expect(history.locator("[data-updated] time")).to_have_text(re.compile(r"\d\d:\d\d:\d\dZ"))

    history_event(db, machine_id, "UnitTest1", "Failed", "e2e: written while you looked")
    newest = history.locator("table.history tbody tr").first
    expect(newest).to_contain_text("e2e: written while you looked", timeout=LIVE_TIMEOUT_MS)
    expect(newest).to_contain_text("Failed")
    expect(count).to_have_text(f"{before + 1} events")
    expect(history.locator("svg line.failure")).not_to_have_count(0)  # on the timeline too
    # "now" is drawn by the browser, at the right of the window.
    now_x = float(history.locator("svg line.now").get_attribute("x1"))
    assert 140 < now_x <= 900
    assert page_errors == []


def test_a_long_decoded_value_shows_its_first_lines_and_unfolds_on_enter(
    page: Page, page_errors: list[str], db: Db
) -> None:
    page.goto(f"/machine/{rich_machine(db)}")
    body = page.locator("#tag-HardwareReport .fold-body")
    folded = body.bounding_box()["height"]
    assert 200 < folded < 500  # about 20 lines, not the whole report
    summary = page.locator("#tag-HardwareReport details.fold > summary")
    expect(summary).to_contain_text("show all")
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#tag-HardwareReport details.fold")).to_have_attribute("open", "")
    assert body.bounding_box()["height"] > 2 * folded
    expect(page.locator("#tag-HardwareReport a.download")).to_be_visible()  # still there
    assert page_errors == []


# ------------------------------------------------------------------------------ watching


def test_a_watch_started_from_the_machine_page(page: Page, page_errors: list[str], db: Db):
    first, second = idle_machine(db, 3), idle_machine(db, 4)
    page.goto(f"/machine/{first}")
    page.evaluate("localStorage.removeItem('webug.watch')")
    page.reload()
    nav = page.locator("#nav-watch")
    expect(nav.locator(".watch-count")).to_be_hidden()
    button = page.locator(f'[data-watch-toggle="{first}"]')
    expect(button).to_have_text("☆ watch")
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(button).to_have_text("★ watching")
    expect(nav.locator(".watch-count")).to_have_text("1")
    assert page.url.endswith(f"/machine/{first}")  # it stays: a watch list grows

    page.goto(f"/machine/{second}")
    page.locator(f'[data-watch-toggle="{second}"]').click()
    expect(nav.locator(".watch-count")).to_have_text("2")
    nav.click()
    page.wait_for_url(re.compile(r"/watch\?ids="))
    rows = page.locator("tr[data-watch-machine]")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.watchMachine)") == [
        str(first), str(second)
    ]
    # Unwatching one is a link to the list without it, which becomes the current list.
    rows.first.get_by_role("link", name="unwatch").click()
    expect(page.locator("tr[data-watch-machine]")).to_have_count(1)
    expect(nav.locator(".watch-count")).to_have_text("1")
    assert page_errors == []


def test_watch_these_opens_the_rows_picked_in_a_list(page: Page, page_errors: list[str]):
    page.goto("/")
    rows = page.locator("#machine-table tbody tr")
    expect(rows.first).to_be_visible()
    for key in ("j", "x", "j", "j", "x"):
        page.keyboard.press(key)
    picked = page.locator("#machine-table tbody tr.picked")
    expect(picked).to_have_count(2)
    ids = [row_id.removeprefix("m-") for row_id in picked.evaluate_all("rs => rs.map(r => r.id)")]
    bar = page.locator("#pick-bar")
    expect(bar).to_contain_text("2 machines picked")
    bar.get_by_role("button", name="watch these").click()
    page.wait_for_url(re.compile(r"/watch\?ids="))
    watched = page.locator("tr[data-watch-machine]")
    expect(watched).to_have_count(2)
    assert watched.evaluate_all("rs => rs.map(r => r.dataset.watchMachine)") == ids
    assert page_errors == []


def test_several_prefixes_in_search_lead_to_their_watch_list(
    page: Page, page_errors: list[str], db: Db
) -> None:
    ids = [r["machine_id"] for r in db.fetch(
        "SELECT machine_id FROM machines ORDER BY machine_id DESC LIMIT 3"
    )]  # fmt: skip
    prefixes = [str(ids[0])[:8].upper(), str(ids[1])[:6], str(ids[2])[:13]]
    page.goto("/")
    page.locator("#search-box").fill(f"{prefixes[0]}, {prefixes[1]} {prefixes[2]}")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/watch\?ids="))
    watched = page.locator("tr[data-watch-machine]")
    expect(watched).to_have_count(3)
    assert watched.evaluate_all("rs => rs.map(r => r.dataset.watchMachine)") == [
        str(i) for i in ids
    ]
    expect(page.locator("#watch-unresolved")).to_have_count(0)
    expect(page.locator("#nav-watch .watch-count")).to_have_text("3")
    assert page_errors == []


def test_the_watch_log_says_work_started_ended_with_its_result_and_workflow_states(
    page: Page, page_errors: list[str], db: Db, screenshot
) -> None:
    machine_id = own_machine(db)
    session = insert_session(db, "e2e watch log", interval_seconds=60, deadline="10 minutes")
    page.goto(f"/watch?ids={machine_id}&every=1")
    row = page.locator(f'tr[data-watch-machine="{machine_id}"]')
    expect(row).to_contain_text("eligible")
    log = page.locator("#watch-events li")
    page.evaluate("window.dispatchEvent(new Event('blur'))")  # the user looks elsewhere

    db.execute(  # as the shepherd does: in one transaction
        f"INSERT INTO work VALUES ('{machine_id}', '{session}', 'ShepherdAgentStart');"
        f" INSERT INTO work_history VALUES ('{machine_id}', 'ShepherdAgentStart', 'Started',"
        " now(), NULL)"
    )
    expect(log).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    seen = [text.split(" ", 1) for text in log.all_inner_texts()]  # each: its time, what
    assert all(re.fullmatch(r"\d\d:\d\d:\d\dZ", at) for at, _ in seen)
    assert sorted(what for _, what in seen) == [
        f"{machine_id}: work started (ShepherdAgentStart)",
        f"{machine_id}: workflow state changed (AgentStart: eligible → running)",
    ]
    expect(page).to_have_title(re.compile(r"^\(2\) .*watch · webug$"))  # changes not yet seen

    db.execute(
        f"DELETE FROM work WHERE machine_id = '{machine_id}';"
        f" INSERT INTO work_history VALUES ('{machine_id}', 'ShepherdAgentStart', 'Failed',"
        " now(), 'e2e: ipmi timeout');"
        " INSERT INTO work_backoff (machine_id, process, until, cause, last_interval_seconds)"
        f" VALUES ('{machine_id}', 'ShepherdAgentStart', now() + interval '10 minutes',"
        " 'e2e: ipmi timeout', 600)"
    )
    expect(log).to_have_count(5, timeout=LIVE_TIMEOUT_MS)
    newest = log.all_inner_texts()[:3]  # newest first, no numbering
    assert any("work ended (ShepherdAgentStart: Failed: e2e: ipmi timeout)" in t for t in newest)
    assert any("backoff set (ShepherdAgentStart)" in t for t in newest)
    assert any("(AgentStart: running → waiting)" in t for t in newest)
    assert all("started" not in t for t in newest)
    expect(log.first.locator("time[datetime][data-absolute]")).to_have_count(1)
    expect(page.locator("#watch-events")).to_have_js_property("tagName", "UL")
    expect(page).to_have_title(re.compile(r"^\(5\) .*watch · webug$"))
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # seen
    expect(page).to_have_title(re.compile(r"^\d+ machines? · watch · webug$"))
    screenshot(page, "watch-log")
    assert page_errors == []


# ---------------------------------------------------------------------------- screenshots


def busy_machine(db: Db) -> uuid.UUID:
    """The seeded machine with the most history, a hardware report and work, with two
    backoffs and a failing test process of the test's own."""
    machine_id = rich_machine(db)
    insert_backoff(db, machine_id, "UnitTest1", "e2e: provider API: 503 Service Unavailable")
    insert_backoff(db, machine_id, "UnitTest2", "e2e: an expired backoff", expired=True)
    db.execute(
        "INSERT INTO work_history SELECT $1, 'UnitTest1', e, now() - make_interval(mins => m),"
        " CASE WHEN e = 'Failed' THEN 'e2e: ipmi: connection timed out' END"
        " FROM (VALUES ('Started'::work_history_event, 170), ('Failed', 160),"
        " ('Started', 110), ('Failed', 100), ('Started', 50), ('Failed', 41)) v(e, m)",
        machine_id,
    )
    db.cleanup(
        "DELETE FROM work_history WHERE machine_id = $1 AND process = 'UnitTest1'", machine_id
    )
    return machine_id


def test_screens(page: Page, page_errors: list[str], db: Db, screenshot) -> None:
    """The machine page, its history and a watch list fit 1440 and 390 px wide (no
    sideways scroll), and are saved in artifacts/screenshots/test_screens--*.png."""
    machine_id = busy_machine(db)
    others = [r["machine_id"] for r in db.fetch(
        "SELECT DISTINCT machine_id FROM work WHERE machine_id <> $1 ORDER BY 1 LIMIT 3",
        machine_id,
    )]  # fmt: skip
    watch = f"/watch?ids={','.join(map(str, [machine_id, *others]))},ffff"
    for size, viewport in (("1440x900", WIDE), ("390x844", NARROW)):
        page.set_viewport_size(viewport)
        page.goto(f"/machine/{machine_id}")
        expect(page.locator("#machine-summary")).to_be_visible()
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # reveal #history
        expect(page.locator("#history svg[data-timeline]")).to_be_visible()
        page.evaluate("window.scrollTo(0, 0)")
        assert page_width(page) <= viewport["width"], f"/machine at {size}"
        screenshot(page, f"machine-{size}")
        page.locator("#history").evaluate("e => e.scrollIntoView()")  # its history, on screen
        page.screenshot(path=SCREENSHOTS / f"test_screens--machine-history-{size}.png")

        page.goto(f"/machine/{machine_id}/history")
        expect(page.locator("table.history")).to_be_visible()
        assert page_width(page) <= viewport["width"], f"/history at {size}"
        screenshot(page, f"history-{size}")

        page.goto(watch)
        expect(page.locator("tr[data-watch-machine]")).to_have_count(1 + len(others))
        assert page_width(page) <= viewport["width"], f"/watch at {size}"
        screenshot(page, f"watch-{size}")
    assert page_errors == []
