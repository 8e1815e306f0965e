"""Accessibility in a real Chromium: axe-core finds no serious or critical violation on any
page of webug, in the light and in the dark colour scheme; keyboard focus is visible; the
single-key shortcuts (app/static/keys.js) leave keys alone that belong to someone else.

The machines this module writes (one in each state the list badges: in backoff, stuck on
stale work, working, heartbeat late, unmanaged) get IDs that sort first, so they are on
the list's first page; they and their rows are removed at the end of the module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from e2e.conftest import SCREENSHOTS, _safe_name
from e2e.e2e_db import Db, insert_backoff, insert_session

SCHEMES = ("light", "dark")
BLOCKING = ("serious", "critical")
TARGETS_SHOWN = 4  # selectors per rule in a failure message

AXE = Axe()


def a11y_id(n: int) -> uuid.UUID:
    """A machine ID before every seeded one (they are random)."""
    return uuid.UUID(f"00000000-0000-4000-8000-0000a11e2e{n:02x}")


@dataclass(frozen=True)
class Fleet:
    backoff: uuid.UUID  # provided, in backoff with a long cause, failed history
    stuck: uuid.UUID  # work held by an expired session
    working: uuid.UUID  # work held by a live session
    session: uuid.UUID  # the live session
    tag: str  # a tag type /tags lists


@pytest.fixture(scope="module")
def fleet(e2e_db_dsn: str) -> Iterator[Fleet]:
    db = Db(e2e_db_dsn)
    try:
        ids = [a11y_id(n) for n in range(1, 6)]
        for machine_id in ids:
            db.execute("INSERT INTO machines VALUES ($1, now() - interval '2 days')", machine_id)
            db.cleanup("DELETE FROM machines WHERE machine_id = $1", machine_id)
            for table in (
                "work_history",
                "work_backoff",
                "work",
                "machine_agent_heartbeat",
                "machine_provided",
            ):
                db.cleanup(f"DELETE FROM {table} WHERE machine_id = $1", machine_id)
        backoff, stuck, working, late, _unmanaged = ids
        for machine_id in (backoff, stuck, working, late):
            db.execute(
                "INSERT INTO machine_provided (machine_id, provider, provider_id,"
                " provider_location, provider_status) VALUES ($1, 'Equinix', $2, 'fr5', 'Running')",
                machine_id,
                f"a11y-{machine_id}",
            )
        for machine_id, ago in ((backoff, "30 seconds"), (working, "5 seconds"), (late, "2 hours")):
            db.execute(
                "INSERT INTO machine_agent_heartbeat VALUES ($1, now() - $2::text::interval)",
                machine_id,
                ago,
            )
        insert_backoff(db, backoff, "UnitTest1", "a11y: BMC did not answer while powering on")
        db.execute(
            "INSERT INTO work_history VALUES ($1, 'UnitTest1', 'Failed', now() - interval"
            " '5 minutes', 'a11y: BMC did not answer')",
            backoff,
        )
        crashed = insert_session(
            db, "a11y: crashed", created="-1 hour", interval_seconds=60, deadline="-10 minutes"
        )
        db.execute("INSERT INTO work VALUES ($1, $2, 'ShepherdAccess')", stuck, crashed)
        alive = insert_session(
            db, "a11y: alive", created="-5 minutes", interval_seconds=60, deadline="1 minute"
        )
        db.execute("INSERT INTO work VALUES ($1, $2, 'UnitTest2')", working, alive)
        yield Fleet(backoff, stuck, working, alive, tag="Provided")
    finally:
        db.run_cleanups()


def pages(f: Fleet) -> dict[str, tuple[str, int]]:
    """Every page webug serves as HTML: name -> (path, the status it answers with)."""
    unknown = uuid.UUID("00000000-0000-4000-8000-00000000dead")
    return {
        "machines": ("/", 200),
        "machines-stuck": ("/?stuck=1", 200),
        "machine": (f"/machine/{f.backoff}", 200),
        "machine-stuck": (f"/machine/{f.stuck}", 200),
        "history": (f"/machine/{f.backoff}/history", 200),
        "tags": ("/tags", 200),
        "tag": (f"/tags/{quote(f.tag)}", 200),
        "work": ("/work", 200),
        "backoffs": ("/backoffs", 200),
        "sessions": ("/sessions", 200),
        "session": (f"/session/{f.session}", 200),
        "failures": ("/failures", 200),
        "activity": ("/activity", 200),
        "overview": ("/overview", 200),
        "forecast": ("/forecast", 200),
        "schema": ("/schema", 200),
        "api": ("/api", 200),
        "search": ("/search", 200),
        "search-found": (f"/search?q={str(f.backoff)[:13]}", 200),
        "search-nothing": ("/search?q=no-such-thing", 404),
        "watch": ("/watch", 200),
        "watch-ids": (f"/watch?ids={f.backoff},{f.stuck},{f.working}", 200),
        "machine-missing": (f"/machine/{unknown}", 404),
        "not-found": ("/no-such-page", 404),
        "bad-request": ("/machine/not-a-uuid", 400),
    }


PAGE_NAMES = list(pages(Fleet(a11y_id(1), a11y_id(2), a11y_id(3), a11y_id(4), "t")))


# The schemes differ only in colours: the first runs every rule, the others only axe's
# colour rules (contrast, links told apart by colour), which halves the time per page.
EVERY_RULE = {"resultTypes": ["violations"]}
COLOUR_RULES = {
    "resultTypes": ["violations"],
    "runOnly": {"type": "rule", "values": ["color-contrast", "link-in-text-block"]},
}


def blocking_violations(page: Page, options: dict = EVERY_RULE) -> list[dict]:
    results = AXE.run(page, options=options)
    return [v for v in results.response["violations"] if v.get("impact") in BLOCKING]


def describe(violations: list[dict]) -> str:
    """What a developer needs to act: each rule with its impact, how many elements break
    it, a few of their selectors and axe's summary of the first."""
    lines = []
    for v in violations:
        nodes = v["nodes"]
        lines.append(f"{v['id']} ({v['impact']}, {len(nodes)} elements): {v['help']}")
        for node in nodes[:TARGETS_SHOWN]:
            lines.append(f"    {' '.join(map(str, node['target']))}")
        if nodes:
            summary = (nodes[0].get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    first: {summary[:300]}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def axe_page(browser, e2e_server: str) -> Iterator[Page]:
    """One tab for every page's check: a page is loaded once and checked in both schemes."""
    context = browser.new_context(base_url=e2e_server, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def violations_in_each_scheme(page: Page, what: str) -> str:
    """The serious and critical violations of the page as shown now, in each scheme; ""
    when there are none. On a failure the window is saved to artifacts/screenshots."""
    found = []
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        violations = blocking_violations(page, EVERY_RULE if scheme == SCHEMES[0] else COLOUR_RULES)
        if violations:
            found.append(f"{what} in the {scheme} scheme:\n{describe(violations)}")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / f"axe-{_safe_name(what)}-{scheme}.png")
    return "\n".join(found)


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_no_serious_or_critical_axe_violations(axe_page: Page, fleet: Fleet, name: str):
    path, status = pages(fleet)[name]
    response = axe_page.goto(path)
    assert response is not None and response.status == status, (path, response and response.status)
    found = violations_in_each_scheme(axe_page, path)
    if found:
        pytest.fail(found, pytrace=False)


def test_the_shortcuts_help_has_no_serious_or_critical_axe_violations(axe_page: Page):
    axe_page.goto("/")
    axe_page.keyboard.press("?")
    expect(axe_page.locator("#shortcuts")).to_be_visible()
    found = violations_in_each_scheme(axe_page, "the shortcuts help")
    axe_page.keyboard.press("Escape")
    if found:
        pytest.fail(found, pytrace=False)


# ------------------------------------------------------------------------------ focus


FOCUS_RING_CONTRAST = 3.0  # WCAG 1.4.11: a focus indicator against what is around it


def focus_ring(page: Page) -> dict:
    """The focused element's outline, and its contrast with the page's background."""
    return page.evaluate(
        """() => {
          const el = document.activeElement, s = getComputedStyle(el);
          const rgb = (c) => (c.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
          const lum = (c) => {
            const [r, g, b] = rgb(c).map((v) => v / 255)
              .map((v) => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
            return 0.2126 * r + 0.7152 * g + 0.0722 * b;
          };
          const page = getComputedStyle(document.body).backgroundColor;
          const [hi, lo] = [lum(s.outlineColor), lum(page)].sort((a, b) => b - a);
          return {tag: el.tagName, text: (el.textContent || el.name || '').trim().slice(0, 40),
                  style: s.outlineStyle, width: parseFloat(s.outlineWidth) || 0,
                  color: s.outlineColor, contrast: (hi + 0.05) / (lo + 0.05)};
        }"""
    )


def visible_ring(ring: dict) -> bool:
    return (
        ring["style"] not in ("none", "hidden")
        and ring["width"] >= 2
        and ring["contrast"] >= FOCUS_RING_CONTRAST
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_keyboard_focus_is_visible_on_links_and_fields(page: Page, fleet: Fleet, scheme: str):
    """Tab from the top of the list: every link, field and button it reaches shows a ring
    at least 2 px wide, in a colour that stands out from the page."""
    page.emulate_media(color_scheme=scheme)
    page.goto("/")
    expect(page.locator(f"#m-{fleet.backoff}")).to_be_visible()
    kinds = set()
    for _ in range(20):  # the header's links, its search box, the list's form, its tabs
        page.keyboard.press("Tab")
        ring = focus_ring(page)
        kinds.add(ring["tag"])
        assert visible_ring(ring), ring
    assert {"A", "INPUT", "BUTTON"} <= kinds, kinds

    # A machine's link in a row of the list.
    page.locator(f"#m-{fleet.backoff} a[href]").first.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    ring = focus_ring(page)
    assert ring["tag"] == "A" and visible_ring(ring), ring


# ------------------------------------------------------------------------- shortcuts

SHORT_LIST = "/work"  # a list whose rows j and k select, short enough to load fast
SHORT_LIST_ROWS = "#work-table tbody tr"


def test_shortcuts_do_not_fire_with_a_modifier(page: Page) -> None:
    page.goto(SHORT_LIST)
    expect(page.locator(SHORT_LIST_ROWS).first).to_be_visible()
    for key in ("Control+j", "Alt+j", "Meta+j", "Alt+Shift+?", "Control+/", "Alt+p"):
        page.keyboard.press(key)
    expect(page.locator("#shortcuts")).to_be_hidden()
    expect(page.locator("tr.kb-selected")).to_have_count(0)
    expect(page.locator("#search-box")).not_to_be_focused()
    assert page.url.endswith(SHORT_LIST)
    page.keyboard.press("j")  # the same keys alone are shortcuts
    expect(page.locator("tr.kb-selected")).to_have_count(1)


@pytest.mark.parametrize(
    "widget",
    [
        '<div tabindex="0" contenteditable="true">edit me</div>',
        '<div contenteditable="true"><p><b tabindex="0">edit me</b></p></div>',
        '<div role="application" aria-label="a widget"><button>inside</button></div>',
        '<div role="application" tabindex="0" aria-label="a widget">keys are mine</div>',
        '<div role="textbox" tabindex="0" aria-label="a text box">text</div>',
        '<select aria-label="pick"><option>one</option><option>two</option></select>',
    ],
    ids=[
        "contenteditable",
        "inside-contenteditable",
        "inside-application",
        "application",
        "role-textbox",
        "select",
    ],
)
def test_shortcuts_leave_keys_to_editors_and_applications(page: Page, widget: str) -> None:
    """Keys typed where an editor, a widget of role=application (which takes the keys a
    screen reader would otherwise use) or a form field has focus are theirs."""
    page.goto(SHORT_LIST)
    expect(page.locator(SHORT_LIST_ROWS).first).to_be_visible()
    page.evaluate(
        """(html) => {
          const box = document.createElement('div');
          box.id = 'a11y-widget';
          box.innerHTML = html;
          document.querySelector('main').prepend(box);
          window.__keys = '';
          box.addEventListener('keydown', (e) => { window.__keys += e.key; });
          const target = box.querySelector('[tabindex], button, select') || box.firstChild;
          target.focus();
        }""",
        widget,
    )
    focused = page.evaluate("document.activeElement.closest('#a11y-widget') !== null")
    assert focused
    for key in ("?", "j", "/", "g", "m", "p", "x"):
        page.keyboard.press(key)
    expect(page.locator("#shortcuts")).to_be_hidden()
    expect(page.locator("tr.kb-selected")).to_have_count(0)
    expect(page.locator("#search-box")).not_to_be_focused()
    assert page.url.endswith(SHORT_LIST)
    assert page.evaluate("window.__keys") == "?j/gmpx"  # the widget got every key
