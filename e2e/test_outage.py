"""The BMDB dies while a page is open in Chromium, then comes back.

webug runs in its own uvicorn on a PostgreSQL of its own (tests/outage.py), which this
test stops and starts. While the BMDB is down the live fragment keeps its last content
(a 503 from a poll is never swapped in) and the page says "disconnected — last update
at …"; once the BMDB is back the next poll succeeds and the notice goes away.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import asyncpg
import pytest
from playwright.sync_api import expect

from e2e.conftest import ARTIFACTS
from tests.outage import RestartablePostgres, serve_webug
from tests.support import run_sync


@pytest.fixture(scope="module")
def outage_pg() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def outage_webug(outage_pg: RestartablePostgres) -> Iterator[tuple[str, str]]:
    """(base URL, BMDB DSN) of a webug on outage_pg."""
    dsn = outage_pg.create_bmdb(20)
    with serve_webug(dsn, ARTIFACTS / "e2e-outage-server.log") as base_url:
        yield base_url, dsn


def a_provided_machine(dsn: str) -> tuple[str, str]:
    async def fetch() -> tuple[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                "SELECT machine_id::text, provider_id FROM machine_provided ORDER BY 1 LIMIT 1"
            )
        finally:
            await conn.close()
        return row[0], row[1]

    return run_sync(fetch())


def test_live_page_says_disconnected_keeps_its_content_and_recovers(
    browser, outage_pg, outage_webug, screenshot
):
    base_url, dsn = outage_webug
    machine, provider_id = a_provided_machine(dsn)
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/live" in r.url else None)
    banner = page.locator("#conn-status")
    live = page.locator("#machine-live")
    try:
        page.goto(f"/machine/{machine}?every=1")
        expect(live).to_contain_text("active work")
        expect(page.locator("body")).to_contain_text(provider_id)
        expect(banner).to_be_hidden()

        outage_pg.stop()
        expect(banner).to_be_visible(timeout=8_000)
        expect(banner).to_contain_text("disconnected — last update at")
        expect(banner).to_contain_text("BMDB unreachable, retrying")
        page.wait_for_timeout(2_500)  # more failed polls: still the last good content
        assert 503 in statuses
        expect(live).to_contain_text("active work")
        expect(page.locator("body")).to_contain_text(provider_id)
        assert page.locator("header.topbar").count() == 1  # no error page swapped in
        assert page.locator("#machine-live").count() == 1
        screenshot(page, "disconnected")

        outage_pg.start()
        back = time.monotonic()
        expect(banner).to_be_hidden(timeout=10_000)
        print(f"\nnotice gone {time.monotonic() - back:.1f} s after the BMDB was back (polls: 1 s)")
        expect(live).to_contain_text("active work")
        screenshot(page, "reconnected")
        assert js_errors == []
    finally:
        if not outage_pg.running:
            outage_pg.start()
        context.close()
