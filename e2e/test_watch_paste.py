"""Watch lists and pasted alerts, driven in a real Chromium.

Watch: with the notification permission granted to the browser context, a watched
machine whose backoff ends raises a browser notification without a reload; so do work
that starts, a heartbeat that returns and a machine that is deleted. `window.Notification`
is wrapped by a Playwright init script (not the page's: CSP does not apply to it) that
records each notification the page raises.

Paste: an alert pasted into the header search box opens the watch list of exactly the
machines it names; a long log excerpt goes by POST.

Rows these tests write are removed at teardown; the seeded fleet stays as seeded.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from playwright.sync_api import Page, expect

from e2e.e2e_db import Db, insert_session

BACKOFF_SECONDS = 5  # long enough to load the page first, short enough to wait for
NOTIFY_TIMEOUT_MS = 15_000

RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  function Recorded(title, options) {
    window.__notifications.push({ title, body: (options || {}).body || "" });
    return new Real(title, options);
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  Recorded.prototype = Real.prototype;
  window.Notification = Recorded;
})();
"""


def new_machines(db: Db, n: int) -> list[uuid.UUID]:
    """`n` machines of the test's own, deleted at teardown with what refers to them."""
    ids = [uuid.uuid4() for _ in range(n)]
    db.execute(
        "INSERT INTO machines (machine_id, machine_created_at)"
        " SELECT unnest($1::uuid[]), now() - interval '1 hour'",
        ids,
    )
    db.cleanup("DELETE FROM machines WHERE machine_id = ANY($1::uuid[])", ids)
    db.cleanup("DELETE FROM machine_agent_heartbeat WHERE machine_id = ANY($1::uuid[])", ids)
    db.cleanup("DELETE FROM work WHERE machine_id = ANY($1::uuid[])", ids)
    return ids


def notifications(page: Page) -> list[dict]:
    return page.evaluate("window.__notifications")


def open_watch_list(page: Page, ids: list[uuid.UUID]) -> None:
    page.context.grant_permissions(["notifications"])
    page.add_init_script(RECORD_NOTIFICATIONS)
    page.goto(f"/watch?ids={','.join(map(str, ids))}&every=1")
    expect(page.locator("#watch-notify-state")).to_contain_text("notifications on")
    expect(page.locator("#watch-notify")).to_be_hidden()  # nothing left to ask


def wait_for_changes(page: Page, n: int) -> None:
    """Until watch.js has seen `n` changes: each is a line of #watch-events, written with
    its notification. (wait_for_function would eval its predicate: CSP forbids that.)"""
    expect(page.locator("#watch-events li")).to_have_count(n, timeout=NOTIFY_TIMEOUT_MS)


def row(page: Page, machine_id: uuid.UUID):
    return page.locator(f'tr[data-watch-machine="{machine_id}"]')


def test_a_backoff_that_ends_raises_a_notification(
    page: Page, page_errors: list[str], db: Db, screenshot
) -> None:
    backed_off, quiet = new_machines(db, 2)
    db.execute(
        "INSERT INTO work_backoff (machine_id, process, until, cause, last_interval_seconds)"
        " VALUES ($1, 'ShepherdAgentStart', now() + make_interval(secs => $2),"
        " 'e2e: provider API timeout', $2)",
        backed_off,
        BACKOFF_SECONDS,
    )

    open_watch_list(page, [backed_off, quiet])
    expect(row(page, backed_off)).to_have_attribute("data-backoffs", "ShepherdAgentStart")
    expect(row(page, backed_off)).to_contain_text("e2e: provider API timeout")
    expect(page.locator("tr[data-watch-machine]")).to_have_count(2)  # side by side
    assert notifications(page) == []
    screenshot(page, "watch-list-backoff-active")

    wait_for_changes(page, 1)
    assert notifications(page) == [
        {"title": "webug: backoff ended (ShepherdAgentStart)", "body": f"machine {backed_off}"}
    ]
    expect(row(page, backed_off)).to_have_attribute("data-backoffs", "")
    expect(row(page, backed_off)).to_contain_text("none active")
    expect(page.locator("#watch-events")).to_contain_text(f"{backed_off}: backoff ended")
    screenshot(page, "watch-list-backoff-ended")
    assert page_errors == []


def test_work_heartbeat_and_deletion_raise_notifications(
    page: Page, page_errors: list[str], db: Db
) -> None:
    working, silent, doomed = new_machines(db, 3)
    db.execute(
        "INSERT INTO machine_agent_heartbeat VALUES ($1, now() - interval '20 minutes')", silent
    )
    session = insert_session(db, "e2e", interval_seconds=30, deadline="5 minutes")

    open_watch_list(page, [working, silent, doomed])
    expect(row(page, silent)).to_have_attribute("data-heartbeat", "stale")
    db.execute("INSERT INTO work VALUES ($1, $2, 'ShepherdAccess')", working, session)
    db.execute(
        "UPDATE machine_agent_heartbeat SET agent_heartbeat_at = now() WHERE machine_id = $1",
        silent,
    )
    db.execute("DELETE FROM machines WHERE machine_id = $1", doomed)

    wait_for_changes(page, 3)
    assert sorted((n["title"], n["body"]) for n in notifications(page)) == sorted([
        ("webug: work started (ShepherdAccess)", f"machine {working}"),
        ("webug: heartbeat returned", f"machine {silent}"),
        ("webug: machine deleted", f"machine {doomed}"),
    ])  # fmt: skip
    expect(page.locator(f'li[data-watch-token="{doomed}"]')).to_contain_text("unknown")
    assert page_errors == []


# ------------------------------------------------------------------------------ paste


def alert_machines(db: Db) -> tuple[dict, dict, dict]:
    """Three machines of the seeded fleet: one to name by ID, one by its (unique,
    non-UUID) provider ID, one by its unique IP address."""
    by_provider = db.fetchrow(
        """SELECT machine_id, provider_id FROM machine_provided p
        WHERE provider <> 'Equinix' AND NOT EXISTS (SELECT 1 FROM machine_provided o
              WHERE lower(o.provider_id) = lower(p.provider_id) AND o.machine_id <> p.machine_id)
        ORDER BY machine_id LIMIT 1"""
    )
    by_ip = db.fetchrow(
        """SELECT min(machine_id::text)::uuid AS machine_id, provider_ip_address AS ip
        FROM machine_provided WHERE provider_ip_address IS NOT NULL AND machine_id <> $1
        GROUP BY provider_ip_address HAVING count(*) = 1 ORDER BY 2 LIMIT 1""",
        by_provider["machine_id"],
    )
    by_id = db.fetchrow(
        "SELECT machine_id FROM machines WHERE machine_id <> ALL($1::uuid[])"
        " ORDER BY machine_id DESC LIMIT 1",
        [by_provider["machine_id"], by_ip["machine_id"]],
    )
    return dict(by_id), dict(by_provider), dict(by_ip)


def paste_into_search_box(page: Page, text: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    box = page.locator("#search-box")
    page.keyboard.press("/")
    expect(box).to_be_focused()
    page.evaluate("text => navigator.clipboard.writeText(text)", text)
    page.keyboard.press("Control+V")
    page.keyboard.press("Enter")


def watched(page: Page) -> list[str]:
    return page.locator("tr[data-watch-machine]").evaluate_all(
        "rows => rows.map(r => r.dataset.watchMachine)"
    )


def test_a_pasted_alert_opens_a_watch_list_of_exactly_its_machines(
    page: Page, page_errors: list[str], db: Db, screenshot
) -> None:
    by_id, by_provider, by_ip = alert_machines(db)
    alert = (
        "[FIRING:3] BMaaS MachinesNotProgressing (severity=page)\n"
        f"  machine_id: {str(by_id['machine_id']).upper()}\n"
        f'  labels: {{"provider_id": "{by_provider["provider_id"].upper()}",'
        ' "build": "1.2.3.4.5"}\n'
        f"  summary: ssh {by_ip['ip']}:22 refused since 2024-05-01T12:03:11Z, retry 3/5.\n"
    )
    page.goto("/")
    paste_into_search_box(page, alert)

    page.wait_for_url(re.compile(r"/watch\?ids="))
    expected = [str(m["machine_id"]) for m in (by_id, by_provider, by_ip)]  # the alert's order
    expect(page.locator("tr[data-watch-machine]")).to_have_count(3)
    assert watched(page) == expected
    expect(page.locator("#watch-unresolved")).to_have_count(0)  # every ID named one machine
    expect(page.locator("h1")).to_contain_text("3 machines")
    screenshot(page, "watch-list-from-alert")
    assert page_errors == []


def test_a_long_log_excerpt_goes_by_post(page: Page, page_errors: list[str], db: Db) -> None:
    first, second = new_machines(db, 2)
    line = "2024-05-01T12:00:00Z INFO shepherd: heartbeat ok, latency 3ms, queue 0\n"
    log = line * 150 + f"ERROR machine {first} lost\n" + line * 20 + f"ERROR {second} lost\n"
    assert len(quote(log)) > 8 * 1024  # past what a proxy lets through in a URL
    posted = []
    page.on("request", lambda r: posted.append(r.method) if r.url.endswith("/search") else None)
    page.goto("/")
    paste_into_search_box(page, log)

    page.wait_for_url(re.compile(r"/watch\?ids="))
    assert posted == ["POST"]
    assert watched(page) == [str(first), str(second)]
    assert page_errors == []


def test_a_16_kib_paste_by_get_passes_the_server(page: Page, db: Db) -> None:
    """uvicorn and the security middleware take /search's longest query string."""
    (machine,) = new_machines(db, 1)
    text = ("é" * 8000 + f" {machine} ")[:8192]
    assert len(text.encode()) <= 16 * 1024 and str(machine) in text
    response = page.request.get("/search?q=" + quote(text), max_redirects=0)
    assert response.status == 303 and response.headers["location"] == f"/machine/{machine}"
