"""Hostile data in the BMDB is inert in a real Chromium, under webug's CSP.

A machine whose provider ID, location, session, backoff cause, history and protobuf
tag carry HTML and JavaScript is written to the e2e database (and removed again at the
end of the module). Every page that shows it is opened; no script from the database
may run (`window.__pwned` stays undefined, no dialog opens), no element is injected,
and the page itself breaks no rule of its Content-Security-Policy (a page that needed
inline script or eval would show up as a violation, and its polling would stop).
"""

from __future__ import annotations

import http.client
import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import asyncpg
import pytest
from playwright.sync_api import Page, expect

from tests.support import run_sync

MACHINE = uuid.UUID("0000bad1-0000-4000-8000-00000000bad1")
SESSION = uuid.UUID("0000bad2-0000-4000-8000-00000000bad2")
PWN = "window.__pwned=1"
PROVIDER_ID = f"<img src=x onerror={PWN}>"
SCRIPT = f"<script>{PWN}</script>"


def protobuf_string(field: int, text: str) -> bytes:
    """A protobuf message with one string field: the decoder shows it as text."""
    data = text.encode()
    assert len(data) < 128
    return bytes([field << 3 | 2, len(data)]) + data


HOSTILE_ROWS = [
    ("INSERT INTO machines VALUES ($1, now() - interval '1 day')", MACHINE),
    (
        "INSERT INTO sessions VALUES ($1, $2, $3, now() - interval '1 hour', 60,"
        " now() + interval '1 day')",
        SESSION,
        SCRIPT,
        f"<iframe src=javascript:{PWN}></iframe>",
    ),
    (
        "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_reservation_id,"
        " provider_ip_address, provider_location, provider_status)"
        " VALUES ($1, 'Equinix', $2, $3, $4, $5, 'Running')",
        MACHINE,
        PROVIDER_ID,
        f"</script>{SCRIPT}",
        f'"><svg onload={PWN}>',
        f"javascript:{PWN}",
    ),
    (
        "INSERT INTO machine_agent_started VALUES ($1, now(), $2)",
        MACHINE,
        SCRIPT.encode(),
    ),
    (
        "INSERT INTO machine_os_installation_request VALUES ($1, 1, $2)",
        MACHINE,
        protobuf_string(1, f"{SCRIPT}<img src=x onerror={PWN}>"),
    ),
    ("INSERT INTO work VALUES ($1, $2, 'UnitTest1')", MACHINE, SESSION),
    (
        "INSERT INTO work_backoff VALUES ($1, 'UnitTest2', now() + interval '1 hour', $2, 60)",
        MACHINE,
        f"{SCRIPT}\"'><img src=x onerror={PWN}>",
    ),
    (
        "INSERT INTO work_history VALUES ($1, 'UnitTest2', 'Failed', now(), $2)",
        MACHINE,
        f"<img src=x onerror={PWN}>",
    ),
]
CLEANUP = [
    ("DELETE FROM work_history WHERE machine_id = $1", MACHINE),
    ("DELETE FROM work WHERE machine_id = $1", MACHINE),
    ("DELETE FROM sessions WHERE session_id = $1", SESSION),
    ("DELETE FROM work_backoff WHERE machine_id = $1", MACHINE),
    ("DELETE FROM machine_provided WHERE machine_id = $1", MACHINE),
    ("DELETE FROM machine_agent_started WHERE machine_id = $1", MACHINE),
    ("DELETE FROM machine_os_installation_request WHERE machine_id = $1", MACHINE),
    ("DELETE FROM machines WHERE machine_id = $1", MACHINE),
]

PAGES = [
    f"/machine/{MACHINE}",
    f"/machine/{MACHINE}/history",
    "/?q=" + quote("<img"),  # the list, by provider-ID prefix
    "/?location=" + quote(f"javascript:{PWN}"),
    f"/session/{SESSION}",
    "/sessions",
    "/overview",
    "/search?q=" + quote(PROVIDER_ID),
    "/search?q=" + quote(SCRIPT),
    "/machine/" + quote(PROVIDER_ID, safe=""),  # a 400 page that repeats the bad ID
    f"/watch?ids={MACHINE}",
    "/failures",  # the causes, as failure signatures
]

# Registered before any page script: CSP violations and dialogs are recorded.
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) =>
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sample || '')));
"""


async def _run(dsn: str, rows: list[tuple]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for sql, *args in rows:
            await conn.execute(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def hostile(e2e_db_dsn: str) -> Iterator[None]:
    run_sync(_run(e2e_db_dsn, CLEANUP))  # left over from an interrupted run
    run_sync(_run(e2e_db_dsn, HOSTILE_ROWS))
    try:
        yield
    finally:
        run_sync(_run(e2e_db_dsn, CLEANUP))


@pytest.mark.parametrize("url", PAGES)
def test_hostile_values_are_inert(hostile, page: Page, page_errors: list[str], url: str):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.add_init_script(WATCH)
    response = page.goto(url)
    assert response is not None and response.status in (200, 400, 404), response.status
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp
    page.wait_for_load_state("networkidle")
    if url.startswith("/machine/0000bad1") and not url.endswith("history"):
        # Polling works under the CSP: htmx's filter expression is not eval'd.
        with page.expect_response(re.compile(r"/live\b"), timeout=8_000) as polled:
            pass
        assert polled.value.status in (200, 304)
        expect(page.get_by_text(PROVIDER_ID).first).to_be_visible()  # shown, as text
    page.locator("details").evaluate_all("els => els.forEach(e => e.open = true)")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []
    assert page.evaluate("window.__csp") == []
    assert page.locator("img[src='x'], svg[onload], iframe").count() == 0
    assert page.locator("script:not([src])").count() == 0
    assert page_errors == []


def test_hostile_values_show_as_text(hostile, page: Page):
    page.goto(f"/machine/{MACHINE}")
    body = page.locator("body").inner_text()
    assert PROVIDER_ID in body and f"javascript:{PWN}" in body
    assert SCRIPT in body  # the backoff cause, as typed into the database
    console = page.locator("a[href^='https://console.equinix.com/']").first
    assert console.get_attribute("href") == (
        "https://console.equinix.com/devices/" + quote(PROVIDER_ID, safe="") + "/overview"
    )  # an https link, the ID one URL-encoded path segment, its text never markup
    page.goto(f"/watch?ids={MACHINE}")
    assert PROVIDER_ID in page.locator("body").inner_text()
    page.goto("/failures")
    signature = SCRIPT.replace("=1", "=<n>")  # the backoff cause, its number a placeholder
    assert signature in page.locator("body").inner_text()


def _raw_get(base_url: str, raw_path: str) -> tuple[int, bytes]:
    """GET with the path exactly as given (urllib and browsers would normalize `..`)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "raw",
    [
        "/static/../main.py",
        "/static/../../app/main.py",
        "/static/..%2fmain.py",
        "/static/%2e%2e/main.py",
        "/static/%2e%2e%2f%2e%2e%2fapp%2fmain.py",
        "/static/..%5cmain.py",
        "/static/../../../../../../../etc/passwd",
    ],
)
def test_no_path_traversal_over_http(e2e_server: str, raw: str):
    status, body = _raw_get(e2e_server, raw)
    assert status in (400, 404), (raw, status)
    assert b"create_app" not in body and b"root:" not in body
    assert _raw_get(e2e_server, "/static/webug.js")[0] == 200
