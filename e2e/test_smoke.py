"""Smoke: the machine list renders, a machine opens, an unknown machine is a 404 page."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid

from playwright.sync_api import Page, expect

MACHINE_LINKS = 'a[href^="/machine/"]'
UUID_RE = re.compile(r"/machine/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def test_healthz(e2e_server: str) -> None:
    with urllib.request.urlopen(e2e_server + "/healthz", timeout=5) as resp:
        assert resp.status == 200
        assert resp.read().strip() == b"ok"


def test_machine_list_shows_machines(page: Page, page_errors: list[str]) -> None:
    response = page.goto("/")
    assert response is not None and response.status == 200
    expect(page).to_have_title("machines · webug")
    expect(page.locator("h1")).to_contain_text("Machines")
    links = page.locator(MACHINE_LINKS)
    expect(links.first).to_be_visible()
    assert links.count() >= 10, "the seeded fleet has 200 machines; the page shows a handful"
    for href in links.evaluate_all("els => els.slice(0, 20).map(e => e.getAttribute('href'))"):
        assert UUID_RE.search(href), href
    assert page_errors == []


def test_click_first_machine_opens_detail(page: Page, page_errors: list[str], screenshot) -> None:
    page.goto("/")
    first = page.locator(MACHINE_LINKS).first
    href = first.get_attribute("href")
    assert href is not None
    match = UUID_RE.search(href)
    assert match, href
    machine_id = match.group(1)
    screenshot(page, "list")

    first.click()
    page.wait_for_url(f"**/machine/{machine_id}")
    expect(page.locator("h1")).to_contain_text(machine_id)
    # The tab names its subject first: tabs of two machines tell apart at a glance.
    expect(page).to_have_title(f"{machine_id[:8]}… · machine · webug")
    assert page_errors == []


def test_every_page_has_a_favicon(page: Page, page_errors: list[str]) -> None:
    page.goto("/sessions")
    expect(page).to_have_title("sessions · webug")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(icon).headers["content-type"].startswith("image/svg+xml")
    answer = page.request.get("/favicon.ico")  # asked for by tools that read no HTML
    assert answer.ok and answer.headers["content-type"].startswith("image/svg+xml")
    assert page_errors == []


def test_unknown_machine_is_404_page(page: Page, page_errors: list[str], screenshot) -> None:
    unknown = uuid.UUID(int=0x0BAD_F00D)  # a seeded fleet uses random UUIDs
    response = page.goto(f"/machine/{unknown}")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_contain_text("404")
    expect(page.locator("body")).to_contain_text(str(unknown))
    screenshot(page, "404")
    # The error page still has a way back to the list.
    page.locator("main a[href='/']").first.click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator(MACHINE_LINKS).first).to_be_visible()
    assert page_errors == []


def test_not_a_uuid_is_400(e2e_server: str) -> None:
    try:
        urllib.request.urlopen(e2e_server + "/machine/not-a-uuid", timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
        assert b"neither a machine ID nor a machine ID prefix" in exc.read()
    else:
        raise AssertionError("expected HTTP 400")
