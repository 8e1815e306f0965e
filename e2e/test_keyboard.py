"""Keyboard shortcuts (app/static/keys.js), driven in a real Chromium.

`?` opens the help, whose links are where `g m`, `g s`, `g o` (and `g f`) go; `/`
focuses the search box; `j`/`k` select list rows and `Enter` opens one, a selection that
survives the list's live polls; `p` pauses and resumes live updates as the live bar's
links do (the URL says which). Keys typed into a field stay there.

The rows a test writes (a backoff, to make a poll change the list) are removed again at
teardown, so the seeded fleet stays as seeded.
"""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Page, expect

from e2e.conftest import SCREENSHOTS
from e2e.e2e_db import Db, insert_backoff
from e2e.test_machine_pages import mark_document, query_of, still_same_document

SELECTED = re.compile(r"\bkb-selected\b")
POLL_TIMEOUT_MS = 8_000  # the list polls every 5 s by default; ?every=2 here


def shoot_window(page: Page, name: str) -> None:
    """The visible window (the help is a modal over it), not the whole long list."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png")


def chord(page: Page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def list_rows(page: Page):
    return page.locator("#machine-table tbody tr")


def machine_of(row) -> uuid.UUID:
    return uuid.UUID(row.get_attribute("id").removeprefix("m-"))


# ------------------------------------------------------------------------- navigation


def test_g_letters_go_to_machines_sessions_and_overview(page: Page, page_errors: list[str]):
    page.goto("/overview")
    chord(page, "g", "m")
    page.wait_for_url(re.compile(r"/$"))
    expect(list_rows(page).first).to_be_visible()

    chord(page, "g", "s")
    page.wait_for_url("**/sessions")
    expect(page.locator("#session-table")).to_be_visible()

    chord(page, "g", "o")
    page.wait_for_url("**/overview")
    expect(page.locator("#overview-live")).to_be_visible()

    # `g f`: the failures page where this version has one; else the help says it lacks it.
    failures = page.locator('#shortcuts a[data-go="f"]')
    if failures.count():
        href = failures.get_attribute("href")
        chord(page, "g", "f")
        page.wait_for_url(f"**{href}")
    else:
        chord(page, "g", "f")
        expect(page.locator("#shortcuts")).to_be_visible()
        expect(page.locator("#shortcuts")).to_contain_text("failures: not in this version")
        assert page.url.endswith("/overview")
    assert page_errors == []


def test_keys_typed_into_a_field_or_with_a_modifier_are_not_shortcuts(page: Page):
    page.goto("/overview")
    page.keyboard.press("/")
    box = page.locator("#search-box")
    expect(box).to_be_focused()
    expect(box).to_have_value("")  # the "/" only focused the box
    page.keyboard.type("gm?jp")
    expect(box).to_have_value("gm?jp")
    expect(page.locator("#shortcuts")).to_be_hidden()
    page.keyboard.press("Escape")  # leaves the box: keys are shortcuts again
    expect(box).not_to_be_focused()
    page.keyboard.press("Alt+?")
    expect(page.locator("#shortcuts")).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    assert page.url.endswith("/overview")


def test_question_mark_shows_the_shortcuts_and_escape_closes_them(
    page: Page, page_errors: list[str]
) -> None:
    page.goto("/")
    help_ = page.locator("#shortcuts")
    expect(help_).to_be_hidden()
    page.keyboard.press("?")
    expect(help_).to_be_visible()
    expect(help_.get_by_role("heading")).to_have_text("Keyboard shortcuts")
    # Where `g m`, `g s`, `g o` go: the server's URLs, which the help shows as links.
    for letter, href in (("m", "/"), ("s", "/sessions"), ("o", "/overview")):
        expect(help_.locator(f'a[data-go="{letter}"]')).to_have_attribute("href", href)
    for key in ("j", "k", "Enter", "p", "/"):
        kbd = help_.locator("kbd", has_text=re.compile(f"^{re.escape(key)}$"))
        expect(kbd.first).to_be_visible()
    shoot_window(page, "keyboard-help")
    page.keyboard.press("Escape")
    expect(help_).to_be_hidden()

    # The header's "?" button opens it too; "?" again closes it.
    page.locator(".keys-button").click()
    expect(help_).to_be_visible()
    page.emulate_media(color_scheme="dark")
    shoot_window(page, "keyboard-help-dark")
    page.keyboard.press("?")
    expect(help_).to_be_hidden()
    assert page_errors == []


def test_slash_focuses_the_search_box(page: Page) -> None:
    page.goto("/sessions")
    box = page.locator("#search-box")
    expect(box).not_to_be_focused()
    page.keyboard.press("/")
    expect(box).to_be_focused()
    expect(box).to_have_value("")


# ---------------------------------------------------------------------------- list rows


def test_j_k_and_enter_open_the_second_rows_machine(page: Page, page_errors: list[str]):
    page.goto("/")
    rows = list_rows(page)
    expect(rows.first).to_be_visible()
    second = machine_of(rows.nth(1))

    chord(page, "j")
    expect(rows.nth(0)).to_have_class(SELECTED)
    chord(page, "j", "j", "k")
    expect(rows.nth(1)).to_have_class(SELECTED)
    expect(page.locator("tr.kb-selected")).to_have_count(1)

    page.keyboard.press("Enter")
    page.wait_for_url(f"**/machine/{second}")
    expect(page.locator("h1")).to_contain_text(str(second))
    assert page_errors == []


def test_the_selection_survives_a_live_poll_that_changes_the_list(
    page: Page, page_errors: list[str], db: Db
) -> None:
    page.goto("/?every=2")
    rows = list_rows(page)
    expect(rows.first).to_be_visible()
    chord(page, "j", "j")
    row = page.locator(f"#m-{machine_of(rows.nth(1))}")
    expect(row).to_have_class(SELECTED)
    mark_document(page)

    # The poll answers with a changed list: htmx morphs the table, server attributes and all.
    insert_backoff(db, machine_of(row), "UnitTest2", "e2e: keyboard selection")
    expect(row).to_contain_text("UnitTest2", timeout=POLL_TIMEOUT_MS)
    expect(row).to_have_class(SELECTED)
    expect(page.locator("tr.kb-selected")).to_have_count(1)
    assert still_same_document(page)
    chord(page, "k")
    expect(rows.nth(0)).to_have_class(SELECTED)
    assert page_errors == []


# ------------------------------------------------------------------------ live updates


def test_p_pauses_and_resumes_live_updates(page: Page, page_errors: list[str]) -> None:
    page.goto("/")
    table = page.locator("#machine-table")
    bar = table.locator(".live-bar")
    expect(bar.locator(".live-dot")).to_be_visible()
    expect(table).to_have_attribute("hx-trigger", re.compile(r"^every 5s"))
    chord(page, "j", "j")
    selected = page.locator("tr.kb-selected")
    key = selected.get_attribute("id")
    mark_document(page)

    page.keyboard.press("p")
    expect(bar.locator(".paused")).to_be_visible()
    expect(bar).to_contain_text("resume live updates")
    expect(page).to_have_url(re.compile(r"[?&]live=0\b"))
    expect(table).not_to_have_attribute("hx-trigger", re.compile("."))  # no more polls
    assert query_of(page.url)["every"] == ["5"]  # the interval is kept for the resume
    expect(page.locator(f"#{key}")).to_have_class(SELECTED)  # the swap kept the selection

    page.keyboard.press("p")
    expect(bar.locator(".live-dot")).to_be_visible()
    expect(page).not_to_have_url(re.compile(r"live=0"))
    expect(table).to_have_attribute("hx-trigger", re.compile(r"^every 5s"))
    expect(page.locator(f"#{key}")).to_have_class(SELECTED)
    assert still_same_document(page), "p swapped the table instead of loading the page"

    # The URL is the state: reloading the paused URL shows the list paused.
    page.keyboard.press("p")
    expect(page).to_have_url(re.compile(r"[?&]live=0\b"))
    page.reload()
    expect(bar.locator(".paused")).to_be_visible()
    assert page_errors == []


def test_the_help_turns_single_key_shortcuts_off_and_on(page: Page, page_errors: list[str]):
    """WCAG 2.1.4: single-key shortcuts can be turned off (they may be typed by speech
    input or clash with a screen reader's keys); the choice outlives a reload."""
    page.goto("/")
    expect(list_rows(page).first).to_be_visible()
    chord(page, "?")
    switch = page.locator("#keys-enabled")
    expect(switch).to_be_checked()
    switch.uncheck()
    chord(page, "Escape")
    page.reload()
    chord(page, "j", "?")
    expect(page.locator("tr.kb-selected")).to_have_count(0)
    expect(page.locator("#shortcuts")).not_to_be_visible()

    page.locator(".keys-button").click()  # the help stays one click away
    expect(switch).not_to_be_checked()
    switch.check()
    chord(page, "Escape", "j")
    expect(list_rows(page).first).to_have_class(SELECTED)
    assert page_errors == []
