"""/failures and the overview's activity chart in a real Chromium, on the seeded e2e fleet
(its active backoffs are recent failures; its history has events in the last days)."""

from __future__ import annotations

from playwright.sync_api import Page, expect


def test_a_failure_group_links_to_exactly_its_machines(page: Page, screenshot, page_errors):
    page.goto("/failures")
    group = page.locator("#backoff-groups tr.group").first
    expect(group).to_be_visible()
    expect(page.locator("#history-groups tr.group").first).to_be_visible()
    screenshot(page, "failures")
    link = group.locator("a.machines")
    machines = int(link.inner_text())
    signature = group.locator("pre.sig").inner_text()
    link.click()
    expect(page.locator("#failure-filter")).to_contain_text(signature)
    expect(page.locator("#machine-table tbody tr[id^='m-']")).to_have_count(machines)
    assert page_errors == []


def test_the_overview_loads_the_activity_chart_once(page: Page, screenshot, page_errors):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/overview")
    chart = page.locator("#activity svg")
    expect(chart).to_be_visible()  # fetched by htmx after the page loaded
    expect(page.locator("#activity rect.bar").first).to_be_attached()
    expect(page.locator("#activity-age")).to_contain_text("read")
    screenshot(page, "overview-activity")
    assert sum("/activity" in url for url in requests) == 1
    assert page_errors == []
