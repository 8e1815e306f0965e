"""/forecast in a real Chromium: reached from the overview and from a machine's workflows,
the chart and the list, an imminent backoff end highlighted and linking to its machine;
screenshots at a desktop's and a phone's size."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from e2e.e2e_db import Db, insert_backoff
from e2e.test_workflows import provided_machine


def test_the_forecast_shows_what_happens_next(page: Page, db: Db, screenshot, page_errors):
    machine = provided_machine(db)
    insert_backoff(db, machine, "ShepherdRecovery", "e2e: agent unreachable")  # ends in 10 min
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"/machine/{machine}")
    page.locator("#forecast-link").click()
    expect(page).to_have_url("/forecast")
    page.goto("/forecast?hours=2")  # a horizon no other test read: counted now
    row = page.locator(f"#forecast-list tr:has(a[href='/machine/{machine}'])")
    expect(row).to_have_class("backoff_ends imminent")
    expect(row).to_contain_text("ShepherdRecovery")
    expect(row.locator(".badge")).to_have_text("imminent")
    expect(page.locator(".forecast-chart rect.bar.backoff_ends").first).to_be_visible()
    expect(page.locator("#imminent-count")).not_to_have_text("0 imminent")
    screenshot(page, "1440x900")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "390x844")
    # The page does not scroll sideways on a phone: the chart and the list do.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    row.locator("a").click()
    expect(page).to_have_url(f"/machine/{machine}")
    page.goto("/overview")
    page.locator("#forecast-link").click()
    expect(page.locator("h1")).to_have_text("What happens next")
    assert page_errors == []
