"""Small things an operator notices in Chromium: text wraps between words, runtime info
uses the room it has, Ctrl+Enter submits a paste, the live dot says when it is not live."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from e2e.conftest import VIEWPORTS
from e2e.e2e_db import Db, insert_backoff, insert_session
from e2e.test_machine_pages import idle_machine

# Words cut across two lines in an element's text, leaving out those wider than the
# element (they may break anywhere): a line that starts inside such a word is a defect.
BROKEN_WORDS_JS = """
(el) => {
  const text = el.firstChild, s = text.data, range = document.createRange();
  const box = (i) => { range.setStart(text, i); range.setEnd(text, i + 1);
                       return range.getClientRects()[0] ?? null; };
  const width = el.getBoundingClientRect().width, broken = [];
  for (let i = 1; i < s.length; i++) {
    const before = box(i - 1), here = box(i);
    if (!before || !here || here.top <= before.top) continue;
    if (/[\\s\\-\\/.,:;=]/.test(s[i - 1]) || /\\s/.test(s[i])) continue;
    const start = s.slice(0, i).search(/\\S+$/), end = s.slice(i).search(/\\s|$/);
    const word = s.slice(start, i + end);
    if (word.length * here.width < width) broken.push(word);
  }
  return broken;
}
"""

CAUSE = (
    "provisioning failed: HTTP 429 Too Many Requests from the provider API while "
    "configuring the network interfaces of the machine; retry after the rate limit resets"
)


def test_failure_signatures_wrap_between_words(page: Page, page_errors: list[str], db: Db):
    insert_backoff(db, idle_machine(db, 7), "ShepherdAccess", CAUSE)
    for width, height in VIEWPORTS.values():
        page.set_viewport_size({"width": width, "height": height})
        page.goto("/failures")
        signature = page.locator("#backoff-groups pre.sig", has_text="provisioning failed")
        expect(signature).to_be_visible()
        lines = (
            "el => { const r = document.createRange(); r.selectNodeContents(el);"
            " return new Set([...r.getClientRects()].map((b) => b.top)).size; }"
        )
        assert signature.evaluate(lines) > 1  # it does wrap
        signatures = page.locator("pre.sig")
        for i in range(signatures.count()):
            assert signatures.nth(i).evaluate(BROKEN_WORDS_JS) == [], f"at {width} px"
    assert page_errors == []


def test_runtime_info_is_whole_up_to_its_column(page: Page, page_errors: list[str], db: Db):
    whole = "host=installer-3de1ee7a pid=4711 version=v2026.12.06-rc3"
    insert_session(db, whole, interval_seconds=60, deadline="10 minutes", component="e2e-polish")
    endless = "x" * 2000
    insert_session(db, endless, interval_seconds=60, deadline="10 minutes", component="e2e-polish")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto("/sessions?component=e2e-polish")
    shown = page.locator("#session-table pre.runtime", has_text="installer-3de1ee7a")
    expect(shown).to_be_visible()
    assert shown.evaluate("el => el.scrollWidth <= el.clientWidth"), "cut though it fits"
    cut = page.locator("#session-table pre.runtime", has_text="xxxx")
    assert cut.evaluate("el => el.scrollWidth > el.clientWidth"), "too long: cut at the column"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440
    assert page_errors == []


def test_ctrl_enter_submits_the_paste_box(page: Page, page_errors: list[str], db: Db):
    machine_id = idle_machine(db, 8)
    page.goto("/search")
    box = page.locator("form.paste-form textarea")
    box.fill(f"alert: machine {machine_id} is down")
    box.press("Enter")  # a new line, as in any text area
    expect(box).to_have_value(f"alert: machine {machine_id} is down\n")
    box.press("Control+Enter")
    page.wait_for_url(f"**/machine/{machine_id}")
    page.go_back()
    page.locator("form.paste-form textarea").fill(str(machine_id))
    page.locator("form.paste-form textarea").press("Meta+Enter")  # ⌘+Enter on a Mac
    page.wait_for_url(f"**/machine/{machine_id}")
    assert page_errors == []


DOT_COLOR_JS = "el => getComputedStyle(el, '::before').color"
BAD_JS = (
    "() => { const s = document.createElement('span'); s.style.color = 'var(--bad)';"
    " document.body.append(s); const c = getComputedStyle(s).color; s.remove(); return c; }"
)


def test_the_live_dot_turns_red_while_disconnected(page: Page, db: Db):
    page.goto(f"/machine/{idle_machine(db, 9)}?every=1")
    dot = page.locator(".live-dot").first
    expect(dot).to_be_visible()
    bad = page.evaluate(BAD_JS)
    assert dot.evaluate(DOT_COLOR_JS) != bad

    page.route("**/live*", lambda route: route.abort())  # the server is out of reach
    expect(page.locator("#conn-status")).to_be_visible(timeout=6_000)
    assert dot.evaluate(DOT_COLOR_JS) == bad

    page.unroute("**/live*")
    expect(page.locator("#conn-status")).to_be_hidden(timeout=6_000)
    assert dot.evaluate(DOT_COLOR_JS) != bad
